"""A .binaryproto mean file (one BlobProto, as Caffe's compute_image_mean writes it): inspect
describes it, infer and eval take it as --mean-file, and a file that is not one is one line."""
import json

import numpy as np
import pytest

from fcn_port import cli
from fcn_port.port.errors import CaffeFormatError
from fcn_port.port.formats import blobproto
from helpers import ORACLE

MEAN = ORACLE / "data" / "lmdb_raw_meanfile_crop" / "mean.binaryproto"


def _write_blob(path, shape, values):
    """A BlobProto by hand: shape (7, packed dims), then data (5, packed floats)."""
    from fcn_port.port.formats.wire import key, varint

    dims = b"".join(varint(d) for d in shape)
    shape_msg = key(1, 2) + varint(len(dims)) + dims
    data = np.asarray(values, "<f4").tobytes()
    path.write_bytes(key(7, 2) + varint(len(shape_msg)) + shape_msg
                     + key(5, 2) + varint(len(data)) + data)


def test_caffes_mean_file_reads_as_a_blob_and_its_channel_means(tmp_path):
    blob = blobproto.read_blob_file(MEAN)
    assert blob.data.shape == (1, 3, 12, 14) and blob.data.dtype == np.float32
    means = blobproto.channel_means(blob)
    np.testing.assert_allclose(means, blob.data[0].reshape(3, -1).mean(1), rtol=1e-6)
    mine = tmp_path / "m.binaryproto"
    _write_blob(mine, (3, 2, 2), np.arange(12))
    assert blobproto.channel_means(blobproto.read_blob_file(mine)) == [1.5, 5.5, 9.5]


def test_inspect_describes_a_binaryproto(capsys):
    assert cli.main(["inspect", str(MEAN)]) == 0
    out = capsys.readouterr().out
    assert "BlobProto" in out and "1x3x12x14" in out and "per-channel mean" in out
    assert cli.main(["inspect", "--json", str(MEAN)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == [1, 3, 12, 14] and len(report["channel_means"]) == 3


def test_a_file_that_is_no_blob_or_no_mean_image_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.binaryproto"
    bad.write_bytes(b"\x50\x01\x02")
    with pytest.raises(CaffeFormatError):
        blobproto.read_blob_file(bad)
    assert cli.main(["inspect", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    flat = tmp_path / "flat.binaryproto"
    _write_blob(flat, (4,), np.zeros(4))
    with pytest.raises(CaffeFormatError):
        blobproto.channel_means(blobproto.read_blob_file(flat), flat)


def test_infer_mean_file_replaces_the_models_mean(tmp_path, monkeypatch):
    import fcn_port.models.infer as infer

    monkeypatch.chdir(tmp_path)
    assert cli.main(["convert"]) == 0
    seen = {}
    monkeypatch.setattr(infer, "infer_files",
                        lambda model, *a, **k: seen.setdefault("mean", list(model.meta["mean"])))
    assert cli.main(["infer", "voc-fcn8s-demo.pt", "--mean-file", str(MEAN)]) == 0
    assert seen["mean"] == pytest.approx(blobproto.channel_means(blobproto.read_blob_file(MEAN)))
