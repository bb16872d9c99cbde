"""The safetensors writer and reader (port/fileio/safetensors.py): the layout transcribed from
the format's description, files the ``safetensors`` package reads and writes, copies from a
mapped caffemodel, and one CaffeFormatError for every malformed header.
"""
import json
import os
import struct

import numpy as np
import pytest

from fcn_port.port.errors import CaffeFormatError
from fcn_port.port.fileio import files
from fcn_port.port.fileio import safetensors as st
from fcn_port.port.formats.caffemodel import read_weights
from helpers import ORACLE


def _raw(path):
    """(header dict, data bytes) parsed here by hand: u64 little-endian length, JSON, data."""
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:], n


def _file(tmp_path, header, data=b"", name="x.safetensors", length=None):
    """A safetensors file from a header given as a dict (or raw bytes) and data bytes."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / name
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def test_layout_by_hand(tmp_path):
    path = tmp_path / "a.safetensors"
    size = st.write(path, {"w": np.array([[1.0, -2.0, 0.5]], np.float32),
                           "n": np.array([7, -1], np.int64)}, {"who": "fcn-port"})
    header, data, n = _raw(path)
    assert (8 + n) % 8 == 0 and size == os.path.getsize(path)  # data 8-byte aligned
    assert header["__metadata__"] == {"who": "fcn-port"}
    assert header["w"] == {"dtype": "F32", "shape": [1, 3], "data_offsets": [0, 12]}
    assert header["n"] == {"dtype": "I64", "shape": [2], "data_offsets": [12, 28]}
    assert data == struct.pack("<3f", 1.0, -2.0, 0.5) + struct.pack("<2q", 7, -1)
    raw = open(path, "rb").read()[8:8 + n]
    assert raw.rstrip(b" ").endswith(b"}") and len(raw) - len(raw.rstrip(b" ")) < 8  # padding


def test_round_trip_keeps_order_values_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"z": rng.standard_normal((3, 2, 5)).astype(np.float32), "empty": np.zeros((0, 4),
               np.float32), "scalar": np.array(3.5), "b": np.arange(5, dtype=np.uint8),
               "be": np.arange(4, dtype=">f4"), "h": np.ones(3, np.float16)}
    st.write(tmp_path / "r.safetensors", tensors, {"k": "v", "json": "[1, 2]"})
    got, meta = st.read(tmp_path / "r.safetensors")
    assert list(got) == list(tensors) and meta == {"k": "v", "json": "[1, 2]"}
    for k, a in tensors.items():
        assert got[k].shape == a.shape and np.array_equal(got[k], a)
    assert got["be"].dtype == np.dtype("<f4")  # big-endian input written little-endian
    got["z"][0, 0, 0] = 99.0  # copy-on-write views: the file stays as it is
    assert st.read(tmp_path / "r.safetensors")[0]["z"][0, 0, 0] == tensors["z"][0, 0, 0]


def test_the_safetensors_package_reads_ours_and_we_read_its(tmp_path):
    sn = pytest.importorskip("safetensors.numpy")
    a = {"conv.0": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2), "conv.1": np.ones(2, np.float32),
         "i": np.array([1, 2, 3], np.int32)}
    st.write(tmp_path / "ours.safetensors", a, {"format": "x"})
    theirs = sn.load_file(str(tmp_path / "ours.safetensors"))
    assert set(theirs) == set(a) and all(np.array_equal(theirs[k], v) for k, v in a.items())
    sn.save_file(a, str(tmp_path / "theirs.safetensors"), metadata={"m": "1"})
    got, meta = st.read(tmp_path / "theirs.safetensors")
    assert meta == {"m": "1"} and all(np.array_equal(got[k], v) for k, v in a.items())
    stt = pytest.importorskip("safetensors.torch")
    t = stt.load_file(str(tmp_path / "ours.safetensors"))
    assert np.array_equal(t["conv.0"].numpy(), a["conv.0"])


def test_blobs_of_a_mapped_caffemodel_copy_from_the_file(tmp_path):
    src = ORACLE / "fcn/voc-fcn8s/weights.caffemodel"
    weights = read_weights(src)
    arrays = {f"{k}.{i}": a for k, blobs in weights.params.items() for i, a in enumerate(blobs)}
    assert all(files.file_span(a.ctypes.data, a.nbytes) for a in arrays.values())  # untouched
    first = next(iter(arrays))
    arrays[first][...] = 0.25  # written to: only its memory has the right bytes now
    assert files.file_span(arrays[first].ctypes.data, arrays[first].nbytes) is None
    st.write(tmp_path / "w.safetensors", arrays)
    got, _ = st.read(tmp_path / "w.safetensors")
    assert all(np.array_equal(got[k], a) for k, a in arrays.items())
    assert (got[first] == 0.25).all()
    fresh = read_weights(src)  # the other blobs hold the file's values
    assert np.array_equal(got["score_fr.0"], fresh.params["score_fr"][0])


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing(fd, view, at):
        calls.append(at)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", failing)
    with pytest.raises(OSError):
        st.write(tmp_path / "f.safetensors", {"a": np.ones(10, np.float32)})
    assert calls and list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError):  # a dtype safetensors has no name for
        st.write(tmp_path / "g.safetensors", {"a": np.ones(2, np.complex64)})
    assert list(tmp_path.iterdir()) == []


def test_looks_like():
    assert st.looks_like(struct.pack("<Q", 20) + b'{"a":1}')
    assert not st.looks_like(b"PK\x03\x04" + b"\0" * 8)
    assert not st.looks_like(struct.pack("<Q", 10 ** 12) + b"{")


_F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BAD = {
    "header length past the end": (dict(header={"a": _F32}, data=b"\0" * 8, length=4000), "header"),
    "header length absurd": (dict(header={"a": _F32}, data=b"\0" * 8, length=1 << 40), "header"),
    "not JSON": (dict(header=b"{nope", data=b""), "JSON"),
    "not UTF-8": (dict(header=b'{"\xff":1}', data=b""), "JSON"),
    "a JSON list": (dict(header=[1, 2], data=b""), "object"),
    "unknown dtype": (dict(header={"a": {**_F32, "dtype": "F7"}}, data=b"\0" * 8), "dtype"),
    "negative size": (dict(header={"a": {**_F32, "shape": [-2]}}, data=b"\0" * 8), "shape"),
    "offsets not a pair": (dict(header={"a": {**_F32, "data_offsets": [0]}}, data=b"\0" * 8),
                           "data_offsets"),
    "size and shape disagree": (dict(header={"a": {**_F32, "shape": [3]}}, data=b"\0" * 8),
                                "bytes"),
    "a gap": (dict(header={"a": {**_F32, "data_offsets": [4, 12]}}, data=b"\0" * 12), "gap"),
    "an overlap": (dict(header={"a": _F32, "b": _F32}, data=b"\0" * 8), "overlap"),
    "data truncated": (dict(header={"a": _F32}, data=b"\0" * 5), "truncated"),
    "bytes appended": (dict(header={"a": _F32}, data=b"\0" * 9), "appended"),
    "metadata not strings": (dict(header={"__metadata__": {"k": 1}}, data=b""), "strings"),
    "extra field": (dict(header={"a": {**_F32, "code": "x"}}, data=b"\0" * 8), "dtype, shape"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_files_are_one_error_naming_the_file(tmp_path, case):
    spec, word = BAD[case]
    path = _file(tmp_path, **spec)
    with pytest.raises(CaffeFormatError) as e:
        st.read(path)
    assert str(path) in str(e.value) and word in str(e.value) and "\n" not in str(e.value)


def test_duplicate_names_empty_and_short_files(tmp_path):
    dup = _file(tmp_path, b'{"a":' + json.dumps(_F32).encode() + b',"a":'
                + json.dumps(_F32).encode() + b"}", b"\0" * 8)
    with pytest.raises(CaffeFormatError, match="twice"):
        st.read(dup)
    (tmp_path / "e.safetensors").write_bytes(b"")
    with pytest.raises(CaffeFormatError, match="empty"):
        st.read(tmp_path / "e.safetensors")
    (tmp_path / "s.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CaffeFormatError, match="shorter"):
        st.read(tmp_path / "s.safetensors")
    with pytest.raises(CaffeFormatError, match="folder"):
        st.read(tmp_path)
