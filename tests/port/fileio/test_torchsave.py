"""fcn_port.port.fileio.torchsave.save against torch.save: same file, byte for byte, and loadable."""
import os
import pickle
import zipfile
import zlib

import numpy as np
import pytest
import torch

from fcn_port.port.formats import caffemodel
from fcn_port.port.fileio import crc32, torchsave, torchzip
from fcn_port.port import fileio
from fcn_port.port.formats.blobproto import blob_pieces
from fcn_port.port.formats.wire import length_delimited
from helpers import ORACLE

CAFFEMODELS = sorted(ORACLE.glob("**/weights.caffemodel"))


def save_both(obj, tmp_path, name="model.pt"):
    """(fcn-port's file, torch.save's file): same name in two folders, as torch records it."""
    (tmp_path / "torch").mkdir(exist_ok=True)
    ours, theirs = tmp_path / name, tmp_path / "torch" / name
    torchsave.save(obj, ours)
    torch.save(obj, theirs)
    return ours, theirs


def assert_same_file(ours, theirs):
    assert ours.read_bytes() == theirs.read_bytes()
    with zipfile.ZipFile(ours) as z:
        assert z.testzip() is None  # every CRC-32 right


def copied_from_files(monkeypatch):
    """Record the (source file, bytes) of every storage save writes from a file."""
    copies, real = [], torchsave._source

    def spy(storage, fds):
        source = real(storage, fds)
        if source.span is not None:
            copies.append((source.span.path, source.nbytes))
        return source

    monkeypatch.setattr(torchsave, "_source", spy)
    return copies


@pytest.mark.parametrize("path", CAFFEMODELS, ids=lambda p: str(p.parent.relative_to(ORACLE)))
def test_oracle_caffemodels_round_trip(path, tmp_path, monkeypatch):
    weights = caffemodel.read_weights(path)
    copies = copied_from_files(monkeypatch)
    ours, theirs = save_both(weights.state_dict(), tmp_path)
    assert_same_file(ours, theirs)
    loaded = torch.load(ours, weights_only=True)
    want = {f"{name}.{i}": a for name, blobs in weights.params.items() for i, a in enumerate(blobs)}
    assert list(loaded) == list(want)
    for key, array in want.items():
        assert loaded[key].dtype == torch.float32 and tuple(loaded[key].shape) == array.shape, key
        assert np.array_equal(loaded[key].numpy(), array), key
    # every blob came from the caffemodel itself, none through the process
    nbytes = sum(a.nbytes for a in want.values())
    assert {p for p, _ in copies} == ({os.path.abspath(path)} if nbytes else set())
    assert sum(n for _, n in copies) == nbytes


def test_nested_objects_metadata_and_tensors_not_from_a_file(tmp_path, monkeypatch):
    weights = caffemodel.read_weights(ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel")
    sd = weights.state_dict()
    conv = sd["conv1_1.0"]
    obj = {
        "format": "fcn-port/1",
        "meta": {"model": "voc-fcn8s", "classes": list(range(21)), "mean": (104.0, 116.7, 122.7),
                 "note": None, "nested": {"deep": [{"a": 1}, b"bytes", 2.5]}},
        "state_dict": sd,
        "random": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
        "ints": torch.arange(10, dtype=torch.int64),
        "half": torch.ones(5, dtype=torch.float16),
        "empty": torch.empty(0),
        "view": conv[:, 1],  # a non-contiguous view: its whole storage is saved, shared
        "same": conv,
    }
    copies = copied_from_files(monkeypatch)
    ours, theirs = save_both(obj, tmp_path)
    assert_same_file(ours, theirs)
    loaded = torch.load(ours, weights_only=True)
    assert loaded["meta"] == obj["meta"] and loaded["format"] == obj["format"]
    for key in ("random", "ints", "half", "empty", "view", "same"):
        assert loaded[key].dtype == obj[key].dtype and torch.equal(loaded[key], obj[key]), key
    assert loaded["view"].untyped_storage().data_ptr() == loaded["same"].untyped_storage().data_ptr()
    for key, tensor in sd.items():
        assert torch.equal(loaded["state_dict"][key], tensor), key
    assert len(copies) == len(sd)  # the file's tensors only; the others came from memory


def test_a_tensor_written_to_after_reading_is_saved_from_memory(tmp_path):
    path = ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel"
    weights = caffemodel.read_weights(path)
    sd = weights.state_dict()
    sd["fc6.0"][0, 0, 0, 0] = 42.0  # copy-on-write: the file keeps its value, memory has 42
    assert fileio.file_span(sd["fc6.0"].data_ptr(), sd["fc6.0"].nbytes) is None
    assert fileio.file_span(sd["fc7.0"].data_ptr(), sd["fc7.0"].nbytes) is not None
    ours, theirs = save_both(sd, tmp_path)
    assert_same_file(ours, theirs)
    assert torch.load(ours, weights_only=True)["fc6.0"][0, 0, 0, 0] == 42.0
    assert caffemodel.read_weights(path).params["fc6"][0][0, 0, 0, 0] != 42.0


def test_a_caffemodel_replaced_after_reading_is_saved_from_memory(tmp_path, monkeypatch):
    src = tmp_path / "w.caffemodel"
    src.write_bytes((ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel").read_bytes())
    weights = caffemodel.read_weights(src)
    before = {k: v.clone() for k, v in weights.state_dict().items()}
    other = {name: [np.zeros_like(a) for a in blobs] for name, blobs in weights.params.items()}
    caffemodel.write_weights(other, tmp_path / "new.caffemodel", net=weights.net)
    os.replace(tmp_path / "new.caffemodel", src)  # same name, another file
    copies = copied_from_files(monkeypatch)
    torchsave.save(weights.state_dict(), tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    assert copies == [] and all(torch.equal(loaded[k], v) for k, v in before.items())


def test_double_data_blobs(tmp_path):
    rng = np.random.default_rng(0)
    params = {"ip": [rng.standard_normal((3, 5)), rng.standard_normal(3).astype(np.float32)]}
    caffemodel.write_weights(params, tmp_path / "double.caffemodel")
    weights = caffemodel.read_weights(tmp_path / "double.caffemodel")
    assert [a.dtype for a in weights.params["ip"]] == [np.float64, np.float32]
    ours, theirs = save_both(weights.state_dict(), tmp_path)
    assert_same_file(ours, theirs)
    loaded = torch.load(ours, weights_only=True)
    assert loaded["ip.0"].dtype == torch.float64
    assert np.array_equal(loaded["ip.0"].numpy(), params["ip"][0])
    assert np.array_equal(loaded["ip.1"].numpy(), params["ip"][1])


def test_an_error_mid_write_leaves_no_file_and_the_old_one_intact(tmp_path, monkeypatch):
    weights = caffemodel.read_weights(ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel")
    out = tmp_path / "model.pt"
    out.write_bytes(b"old")
    calls = []

    def failing(fd, view, at):
        calls.append(at)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(fd, view, at)

    real = torchsave._pwrite_all
    monkeypatch.setattr(torchsave, "_pwrite_all", failing)
    with pytest.raises(OSError, match="No space"):
        torchsave.save(weights.state_dict(), out)
    assert out.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]  # no temporary file or folder left
    monkeypatch.setattr(torchsave, "_pwrite_all", real)
    (tmp_path / "model.pt").unlink()
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        torchsave.save({"bad": lambda: 0}, out)  # fails while torch.save pickles
    assert os.listdir(tmp_path) == []


def test_a_write_that_fails_half_way_reports_the_error_itself(tmp_path, monkeypatch):
    weights = caffemodel.read_weights(ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel")
    real, calls = os.pwrite, []

    def half_then_full(fd, data, at):
        calls.append(at)
        if len(calls) == 5:
            return real(fd, memoryview(data)[:len(data) // 2], at)
        if len(calls) > 5:
            raise OSError(28, "No space left on device")
        return real(fd, data, at)

    monkeypatch.setattr(os, "pwrite", half_then_full)
    with pytest.raises(OSError, match="No space"):
        torchsave.save(weights.state_dict(), tmp_path / "model.pt")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_a_layout_torch_no_longer_uses_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(torchsave, "_recording_pickle_module", lambda seen: pickle)
    with pytest.raises(torchzip.LayoutError, match=r"model\.pt: .*records data/\['0'\]"):
        torchsave.save({"t": torch.ones(3)}, tmp_path / "model.pt")
    assert os.listdir(tmp_path) == []


def sparse_caffemodel(path, count):
    """A caffemodel with one float blob of ``count`` zeros, which stay a hole in the file."""
    zeros = np.zeros(count, np.float32)  # never touched, so never in memory
    pieces, size = blob_pieces(zeros)
    name = length_delimited(1, 3) + b"big"
    blob = length_delimited(7, size)
    with open(path, "wb") as f:
        f.write(length_delimited(100, len(name) + len(blob) + size) + name + blob)
        for piece in pieces:
            if isinstance(piece, bytes):
                f.write(piece)
            else:
                f.seek(piece.nbytes, os.SEEK_CUR)


def test_a_sparse_caffemodel_past_4_gib_saves_as_a_sparse_zip64_file(tmp_path):
    count = (4 << 30) // 4 + 1000  # a record past 4 GiB: torch writes zip64
    src = tmp_path / "big.caffemodel"
    sparse_caffemodel(src, count)
    if os.stat(src).st_blocks * 512 > 1 << 20:
        pytest.skip("this file system does not keep holes")
    weights = caffemodel.read_weights(src, upgrade=False)
    assert weights.params["big"][0].shape == (count,)
    out = tmp_path / "big.pt"
    torchsave.save(weights.state_dict(), out)
    assert os.stat(out).st_blocks * 512 < 1 << 20  # the hole was not copied
    with zipfile.ZipFile(out) as z:
        info = z.getinfo("big/data/0")
        assert info.file_size == count * 4 and info.CRC == crc32.zeros(count * 4)
    tensor = torch.load(out, weights_only=True, mmap=True)["big.0"]
    assert tensor.shape == (count,) and not tensor[:4096].any() and not tensor[-4096:].any()


def test_crc32_combine_and_zeros_agree_with_zlib():
    rng = np.random.default_rng(1)
    for n1, n2 in [(0, 0), (0, 5), (5, 0), (1, 1), (100, 3000), (70000, 123457)]:
        a, b = rng.bytes(n1), rng.bytes(n2)
        assert crc32.combine(zlib.crc32(a), zlib.crc32(b), n2) == zlib.crc32(a + b)
    for n in (0, 1, 2, 3, 4095, 65536, 1000003):
        assert crc32.zeros(n) == zlib.crc32(bytes(n))


def test_a_name_torch_writes_through_python_too(tmp_path):
    weights = caffemodel.read_weights(ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel")
    ours, theirs = save_both(weights.state_dict(), tmp_path, name="modèle.pt")  # not ASCII
    assert_same_file(ours, theirs)


def test_a_file_object_goes_to_torch_save_unchanged(tmp_path):
    obj = {"t": torch.arange(4.0)}
    with open(tmp_path / "a.pt", "wb") as f:
        torchsave.save(obj, f)
    with open(tmp_path / "b.pt", "wb") as f:
        torch.save(obj, f)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_without_crc32_the_file_is_torch_saves_too(tmp_path):
    weights = caffemodel.read_weights(ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel")
    torch.serialization.set_crc32_options(False)
    try:
        ours, theirs = save_both(weights.state_dict(), tmp_path)
    finally:
        torch.serialization.set_crc32_options(True)
    assert ours.read_bytes() == theirs.read_bytes()
    assert torch.equal(torch.load(ours, weights_only=True)["fc6.0"], weights.state_dict()["fc6.0"])
