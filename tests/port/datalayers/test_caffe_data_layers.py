"""Caffe's own data layers against the real Caffe (the oracle's data/ cases: LMDB raw and
encoded, force_gray, a mean file and a centre crop, seeded TRAIN crops and mirrors, HDF5 over
two files, ImageData), pass by pass, and OpenCV's decoding and resizing rules transcribed."""
import importlib.util

import numpy as np
import pytest

from fcn_port import cli
from fcn_port.port import parity
from fcn_port.port.datalayers import decode
from fcn_port.port.errors import CaffeFormatError, UnsupportedError
from helpers import DATA as DATA_DIR, ORACLE

DATA = sorted(p for p in (ORACLE / "data").iterdir() if p.is_dir())
RESIZE = "imagedata_resize_gray"


@pytest.mark.parametrize("case", DATA, ids=lambda p: p.name)
def test_data_case_passes_every_pass(case):
    row = parity.run_case(case)
    assert row["compared"] >= 4, row
    assert row["pass"] and row["worst"] == 0, row  # every value equal to Caffe's


def test_png_gray_is_libpngs_truncated_fixed_point_and_keeps_grey_pixels(tmp_path):
    from PIL import Image

    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [7, 7, 7], [10, 200, 30]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    got = decode.decode(tmp_path / "x.png", "gray")[0, :, 0]
    want = [(9797 * r + 19234 * g + 3737 * b) >> 15 for r, g, b in rgb[0].astype(int)]
    want[3] = 7  # R == G == B: kept as it is
    assert got.tolist() == want
    assert decode.decode(tmp_path / "x.png", "color")[0, 0].tolist() == [0, 0, 255]  # BGR


def test_resize_is_opencvs_on_the_oracles_images():
    case = ORACLE / "data" / RESIZE
    blobs = np.load(case / "blobs.npz")
    for key, k, name in (("top/data/0", 0, "a.png"), ("top/data/0", 1, "b.jpg"),
                         ("pass2/top/data/0", 0, "c.png")):
        img = decode.resize_linear(decode.decode(case / "images" / name, "gray"), 10, 8)
        np.testing.assert_array_equal(img[:, :, 0], np.rint(blobs[key][k, 0] / np.float32(0.02)
                                                            + 127))


def test_resize_equals_opencvs_on_random_images_up_and_down():
    cases = np.load(DATA_DIR / "opencv_resize.npz")  # tests/make_resize_cases.py, real OpenCV
    n = len(cases.files) // 2
    for k in range(n):
        img, want = cases[f"{k}/image"], cases[f"{k}/resized"]
        got = decode.resize_linear(img, *want.shape[:2])
        np.testing.assert_array_equal(got, want, err_msg=f"case {k}: {img.shape} -> {want.shape}")
    assert n >= 48


def test_bad_sources_are_one_line(tmp_path, monkeypatch, capsys):
    from fcn_port.port.datalayers import source_for
    from fcn_port.port.formats.proto import caffe_pb2
    from fcn_port.port.formats.text import parse_text

    def layer(text):
        return parse_text(text, caffe_pb2.LayerParameter)[0]

    with pytest.raises(CaffeFormatError):
        source_for(layer('name: "d" type: "Data" top: "data" data_param { source: "nope" '
                         'batch_size: 2 backend: LMDB }'), root=str(tmp_path))
    plyvel = importlib.util.find_spec("plyvel") is not None  # optional: [leveldb]
    with pytest.raises(CaffeFormatError if plyvel else UnsupportedError):  # no LevelDB there
        source_for(layer('name: "d" type: "Data" top: "data" data_param { source: "x" '
                         'batch_size: 2 backend: LEVELDB }'), root=str(tmp_path))
    (tmp_path / "list.txt").write_text("a.png not-a-label\n")
    with pytest.raises(CaffeFormatError):
        source_for(layer('name: "i" type: "ImageData" top: "data" top: "label" '
                         'image_data_param { source: "list.txt" batch_size: 1 }'),
                   root=str(tmp_path))
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "d" type: "Data" top: "data" top: "label" data_param { '
                   'source: "missing_lmdb" batch_size: 2 backend: LMDB } }\n')
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "net.prototxt"\nbase_lr: 0.1\nmax_iter: 1\nlr_policy: "fixed"\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--solver", "solver.prototxt"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


WINDOWS = "# 0\nimg.png\n3 4 4\n2\n1 0.9 0 0 3 3\n0 0.1 0 0 2 2\n"


@pytest.mark.parametrize("windows,extra", [
    ("# 0\nimg.png\n3 4 4\n1\n1 0.9 0 0 3\n", ""),       # the file ends inside a window
    ("0\nimg.png\n3 4 4\n0\n", ""),                        # no '#'
    ("# 0\nimg.png\n3 4 4\n1\n0 0.9 0 0 3 3\n", ""),      # foreground with label 0
    ("# 0\nimg.png\n3 4 4\n1\n1 0.9 0 0 3 3\n", ""),      # no background window
    (WINDOWS, "context_pad: 2"),                             # nothing of the crop is left
])
def test_bad_window_files_and_settings_are_one_line(tmp_path, windows, extra):
    from fcn_port.port.datalayers import source_for
    from fcn_port.port.formats.proto import caffe_pb2
    from fcn_port.port.formats.text import parse_text

    (tmp_path / "w.txt").write_text(windows)
    lp = parse_text('name: "w" type: "WindowData" top: "data" top: "label" '
                    'transform_param { crop_size: 4 } '
                    f'window_data_param {{ source: "w.txt" batch_size: 2 {extra} }}',
                    caffe_pb2.LayerParameter)[0]
    with pytest.raises(CaffeFormatError):
        source_for(lp, root=str(tmp_path))


def _as_leveldb(case, tmp_path):
    """A copy of the LMDB case ``case`` whose records (same keys, same Datums) sit in a
    LevelDB, the net reading it with ``backend: LEVELDB``."""
    import shutil

    import lmdb
    import plyvel

    copy = shutil.copytree(case, tmp_path / case.name)
    env = lmdb.open(str(case / "raw_lmdb"), readonly=True, lock=False)
    db = plyvel.DB(str(copy / "raw_leveldb"), create_if_missing=True)
    with env.begin() as txn:
        for key, value in txn.cursor():
            db.put(key, value)
    db.close()
    net = (copy / "net.prototxt").read_text()
    (copy / "net.prototxt").write_text(net.replace('"raw_lmdb"', '"raw_leveldb"')
                                       .replace("backend: LMDB", "backend: LEVELDB"))
    return copy


def test_leveldb_reads_as_caffe_does(tmp_path):
    """Caffe's LevelDB and LMDB cursors both read in byte-wise key order: the same records in a
    LevelDB give Caffe's batches of the LMDB case, value for value."""
    pytest.importorskip("plyvel")
    copy = _as_leveldb(ORACLE / "data" / "lmdb_raw_meanfile_crop", tmp_path)
    row = parity.run_case(copy)
    assert row["pass"] and row["worst"] == 0 and row["compared"] >= 4, row


def test_leveldb_without_plyvel_is_one_line(tmp_path, monkeypatch, capsys):
    import sys

    from fcn_port.port.datalayers import source_for
    from fcn_port.port.formats.proto import caffe_pb2
    from fcn_port.port.formats.text import parse_text

    monkeypatch.setitem(sys.modules, "plyvel", None)  # as if not installed
    lp = parse_text('name: "d" type: "Data" top: "data" data_param { source: "db" '
                    'batch_size: 2 }', caffe_pb2.LayerParameter)[0]  # LEVELDB: the default
    with pytest.raises(UnsupportedError):
        source_for(lp, root=str(tmp_path))
