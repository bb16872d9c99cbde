"""A corpus of broken files: each gives one clear CaffeFormatError, never a hang or a partial file."""
import os

import h5py
import numpy as np
import pytest

from fcn_port.port.formats import caffemodel, solverstate, text, wire
from fcn_port.port.errors import CaffeFormatError
from fcn_port.port.formats.proto import caffe_pb2
from helpers import ORACLE


GOOD = ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel"


GOOD_STATE = ORACLE / "solver" / "sgd_step_itersize" / "snapshots" / "snap_iter_5.solverstate"


def _blob_layer(name, blob_bytes):
    """A V2 caffemodel holding one layer whose only blob is ``blob_bytes`` (a raw BlobProto)."""
    layer = caffe_pb2.LayerParameter(name=name, type="Convolution").SerializeToString()
    layer += wire.length_delimited(7, len(blob_bytes)) + blob_bytes
    return wire.length_delimited(100, len(layer)) + layer


def _shape(*dims):
    packed = b"".join(wire.varint(d) for d in dims)
    dim = wire.length_delimited(1, len(packed)) + packed
    return wire.length_delimited(7, len(dim)) + dim


def _floats(values, field=5):
    raw = np.asarray(values, "<f4").tobytes()
    return wire.length_delimited(field, len(raw)) + raw


def corpus():
    good = GOOD.read_bytes()
    yield "truncated-half", good[: len(good) // 2], "remain"
    yield "truncated-one-byte", good[:-1], "truncated"
    yield "length-prefix-beyond-file", wire.key(100, wire.LEN) + wire.varint(1 << 40) + b"\0" * 16, "claims"
    yield "varint-never-ends", b"\x08" + b"\xff" * 20, "varint"
    yield "field-number-zero", b"\x00\x01", "field number 0"
    yield "group-wire-type", wire.key(100, wire.SGROUP) + b"\0", "wire type 3"
    yield "wrong-wire-type-for-layer-name", wire.length_delimited(100, 2) + wire.key(1, wire.VARINT) + b"\x05", "LayerParameter.name"
    yield "unknown-top-level-field", good + wire.key(900, wire.VARINT) + b"\x01", "field 900"
    odd = b"\x0a\x04conv" + wire.key(250, wire.VARINT) + b"\x07"
    yield "unknown-layer-field", wire.length_delimited(100, len(odd)) + odd, "layer[0] 'conv': field 250"
    yield "blob-count-disagrees-with-shape", _blob_layer("conv", _shape(2, 3) + _floats([1, 2, 3])), "conv"
    yield "blob-bytes-not-whole-floats", _blob_layer("conv", _shape(1) + wire.length_delimited(5, 3) + b"abc"), "whole number"
    yield "blob-negative-dim", _blob_layer("conv", _shape(-1 & (2**64 - 1)) + _floats([1])), "negative"
    yield "blob-unknown-field", _blob_layer("conv", _shape(1) + _floats([1]) + wire.key(40, wire.VARINT) + b"\x01"), "BlobProto has no field 40"
    yield "legacy-dims-disagree", _blob_layer("conv", b"\x08\x01\x10\x02\x18\x01\x20\x01" + _floats([1])), "holds 2 values"
    yield "text-file-as-caffemodel", b"layer { name: 'x' }\n", ""
    yield "random-bytes", np.random.default_rng(0).bytes(4096), ""
    yield "empty", b"", "empty"


CORPUS = list(corpus())


@pytest.mark.parametrize("name,data,needle", CORPUS, ids=[c[0] for c in CORPUS])
def test_corrupt_caffemodels_give_one_clear_error(name, data, needle, tmp_path):
    path = tmp_path / f"{name}.caffemodel"
    path.write_bytes(data)
    with pytest.raises(CaffeFormatError) as err:
        caffemodel.read_weights(path)
    message = str(err.value)
    assert str(path) in message and needle in message
    assert "\n" not in message


def test_corrupt_files_never_allocate_beyond_the_file():
    # a blob whose shape claims 2**40 floats but holds one: refused before any allocation
    with pytest.raises(wire.WireError, match="holds"):
        from fcn_port.port.formats.blobproto import parse_blob
        raw = _shape(1 << 20, 1 << 20) + _floats([1.0])
        parse_blob(raw, 0, len(raw))


def test_every_truncation_of_a_real_file_fails_cleanly(tmp_path):
    data = GOOD.read_bytes()
    path = tmp_path / "cut.caffemodel"
    for cut in sorted(set(np.linspace(1, len(data) - 1, 97).astype(int))):
        path.write_bytes(data[:cut])
        with pytest.raises(CaffeFormatError):
            caffemodel.read_weights(path)


def test_lenient_reading_keeps_unknown_fields(tmp_path):
    path = tmp_path / "extra.caffemodel"
    path.write_bytes(GOOD.read_bytes() + wire.key(900, wire.VARINT) + b"\x01")
    w = caffemodel.read_weights(path, strict=False)
    assert w.num_params == caffemodel.read_weights(GOOD).num_params


@pytest.mark.parametrize("cut", [3, 100, -7])
def test_truncated_solverstate(cut, tmp_path):
    path = tmp_path / "s.solverstate"
    path.write_bytes(GOOD_STATE.read_bytes()[:cut])
    with pytest.raises(CaffeFormatError, match="s.solverstate"):
        solverstate.read_solverstate(path)


def test_hdf5_problems(tmp_path):
    broken = tmp_path / "cut.caffemodel.h5"
    broken.write_bytes((ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel.h5").read_bytes()[:5000])
    with pytest.raises(CaffeFormatError, match="cut.caffemodel.h5"):
        caffemodel.read_weights(broken)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CaffeFormatError, match="/data"):
        caffemodel.read_weights(other)
    odd = tmp_path / "odd.h5"  # a gap is a shared param (test_hdf5_shared.py); "01" is no index
    with h5py.File(odd, "w") as f:
        f["data/conv/0"] = np.zeros(3, np.float32)
        f["data/conv/01"] = np.zeros(3, np.float32)
    with pytest.raises(CaffeFormatError, match="/data/conv"):
        caffemodel.read_weights(odd)


@pytest.mark.parametrize("body,where,needle", [
    ('name: "x"\nlayer {\n  nme: "conv"\n}\n', ":3:3", 'no field named "nme"'),
    ('layer {\n  name: "conv"\n', ":2:", 'Expected "}"'),
    ('layer { name: "p" type: "Pooling" pooling_param { pool: MAXX } }\n', ":1:", "MAXX"),
    ('layer { convolution_param { num_output: -3 } }\n', ":1:", "num_output"),
])
def test_prototxt_errors_name_file_line_column_and_field(body, where, needle, tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(body)
    with pytest.raises(CaffeFormatError) as err:
        text.read_net(path)
    assert f"{path}{where}" in str(err.value) and needle in str(err.value)


def test_failed_writes_leave_no_partial_file_and_keep_the_old_one(tmp_path):
    w = caffemodel.read_weights(GOOD)
    out = tmp_path / "out.caffemodel"
    out.write_bytes(b"precious")
    bad = dict(w.params)
    bad["conv1_1"] = [np.zeros((2, 2), np.float32), object()]  # the second blob cannot be encoded
    with pytest.raises(Exception):
        caffemodel.write_weights(bad, out, net=w.net)
    assert out.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["out.caffemodel"]


def test_missing_file_or_directory_is_a_format_error(tmp_path):
    from fcn_port.port.formats.caffemodel import read_weights

    with pytest.raises(CaffeFormatError, match=r"missing.caffemodel: cannot open \(No such file"):
        read_weights(tmp_path / "missing.caffemodel")
    with pytest.raises(CaffeFormatError, match=r"is a folder, not a file"):
        read_weights(tmp_path)
