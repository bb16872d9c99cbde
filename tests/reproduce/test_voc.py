"""The VOC and SBD readers (reproduce/voc.py) and their binding to the official data layers
(reproduce/datasets.py), on generated files in the real layouts: JPEGs of drawn shapes,
palette PNG labels with void borders, SBD ``cls/*.mat`` written with scipy, split files.

Expected arrays are computed here as the official layers compute them (PIL, float32, RGB->BGR,
minus ``np.array(mean)``, CHW), and the order from a transcription of the layers' setup /
forward logic run on Python's own ``random`` module. End to end: the official train net of
``fcn-port net voc-fcn32s --split train`` trains through ``fcn-port train`` from SBD files
placed where its param_str points (``../data/sbdd/dataset`` relative to the net)."""
import re

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fcn_port.cli import main
from fcn_port.port.errors import CaffeFormatError, UserInputError
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.reproduce import datasets
from fcn_port.reproduce.voc import SBDSeg, VOCSeg, read_sbd_mat
from fcn_port.solvers import data
from vocdata import (MEAN, SIZES, label_array, make_sbd, make_voc, official_image,
                     official_order)


def test_voc_arrays_are_the_official_layers(tmp_path):
    ids = make_voc(tmp_path / "VOC2011")
    r = VOCSeg(tmp_path / "VOC2011", "seg11valid", mean=MEAN, seed=1337)
    assert not r.random and len(r) == 5 and r.ids == ids
    for d in range(7):                                   # sequential, wrapping
        k = d % 5
        b = r[k]
        h, w = SIZES[k]
        want = official_image(tmp_path / "VOC2011" / "JPEGImages" / f"{ids[k]}.jpg")
        assert b["data"].dtype == np.float32 and b["data"].shape == (1, 3, h, w)
        np.testing.assert_array_equal(b["data"], want)
        assert b["label"].dtype == np.float32 and b["label"].shape == (1, 1, h, w)
        np.testing.assert_array_equal(b["label"][0, 0], label_array(h, w, k))
        assert b["label"].max() == 255
    with pytest.raises(IndexError):
        r[5]                                             # the feeder wraps (d % len)


def test_sbd_mat_labels_and_bgr_mean(tmp_path):
    ids = make_sbd(tmp_path / "dataset")
    r = SBDSeg(tmp_path / "dataset", "train", mean=(100, 110, 120.5), seed=1337)
    assert r.random and r.seed == 1337
    k = r.order(0)
    b = r[0]
    h, w = SIZES[k]
    want = label_array(h, w, k)
    want[want == 255] = 0
    np.testing.assert_array_equal(b["label"][0, 0], want)
    x = official_image(tmp_path / "dataset" / "img" / f"{ids[k]}.jpg", (100, 110, 120.5))
    np.testing.assert_array_equal(b["data"], x)
    rgb = np.array(Image.open(tmp_path / "dataset" / "img" / f"{ids[k]}.jpg"), np.float32)
    np.testing.assert_array_equal(b["data"][0, 0], rgb[:, :, 2] - 100)  # channel 0 is blue
    assert read_sbd_mat(tmp_path / "dataset" / "cls" / f"{ids[k]}.mat").dtype == np.uint8


@pytest.mark.parametrize("rng", ["py2", "py3"])
def test_train_order_is_the_official_random_sequence(tmp_path, rng):
    make_sbd(tmp_path / "dataset", n=5)
    lines = [f"id{k}" for k in range(23)]
    (tmp_path / "dataset" / "big_train.txt").write_text("\n".join(lines))
    r = SBDSeg(tmp_path / "dataset", "big_train", seed=1337, rng=rng, check=False)
    want = official_order(23, "big_train", 1337, 300, py2=rng == "py2")
    assert [r.order(d) for d in range(300)] == want
    assert len(set(want)) < 23 or len(want) > 23         # with replacement
    # out of order (a resumed run, or rank 1 of 2) replays from the seed: same draws
    assert [r.order(d) for d in (250, 3, 299, 0, 1)] == [want[d] for d in (250, 3, 299, 0, 1)]
    other = official_order(23, "big_train", 1337, 50, py2=rng != "py2")
    assert other != want[:50]                            # the two Pythons really differ


def test_sequential_unless_train_in_split_or_randomize_false(tmp_path):
    make_sbd(tmp_path / "dataset", split="val")
    r = SBDSeg(tmp_path / "dataset", "val", seed=1337)
    assert not r.random and [r.order(d) for d in range(12)] == official_order(5, "val", 1337, 12)
    make_sbd(tmp_path / "dataset", split="train")
    r = SBDSeg(tmp_path / "dataset", "train", seed=1337, randomize=False)
    assert [r.order(d) for d in range(7)] == [0, 1, 2, 3, 4, 0, 1]


def _layer(module="voc_layers", layer="SBDDSegDataLayer", param_str="", tops=("data", "label")):
    lp = caffe_pb2.LayerParameter(name="data", type="Python", top=list(tops))
    lp.python_param.module, lp.python_param.layer = module, layer
    lp.python_param.param_str = param_str
    return lp


def test_param_str_binding_and_folders(tmp_path):
    net = tmp_path / "voc-fcn32s"
    net.mkdir()
    make_sbd(tmp_path / "data" / "sbdd" / "dataset")
    make_voc(tmp_path / "data" / "pascal" / "VOC2011")
    ps = str(dict(sbdd_dir="../data/sbdd/dataset", seed=1337, split="train", mean=MEAN))
    r = datasets.reader_for(_layer(param_str=ps), root=net)
    assert isinstance(r, SBDSeg) and r.random and r.seed == 1337
    assert r.folder.resolve() == (tmp_path / "data" / "sbdd" / "dataset").resolve()
    assert r.mean.dtype == np.float64 and tuple(r.mean) == MEAN
    vs = str(dict(voc_dir="../data/pascal/VOC2011", split="seg11valid", mean=MEAN))
    v = datasets.reader_for(_layer(layer="VOCSegDataLayer", param_str=vs, tops=("im", "gt")),
                            root="/nowhere", data_root=tmp_path / "data")
    assert isinstance(v, VOCSeg) and set(v[0]) == {"im", "gt"}
    assert datasets.reader_for(_layer(module="siftflow_layers", param_str=ps), net) is None
    assert datasets.reader_for(_layer(param_str=ps.replace("../data/s", "../data/x")), net,
                               missing_ok=True) is None
    with pytest.raises(CaffeFormatError, match="leave the data root"):
        datasets.reader_for(_layer(param_str=ps.replace("../data/sbdd", "sbdd/../../x")), net,
                            data_root=tmp_path / "data")
    absolute = ps.replace("../data/sbdd/dataset", str(tmp_path / "data" / "sbdd" / "dataset"))
    assert datasets.reader_for(_layer(param_str=absolute), net).folder.is_dir()  # no data root
    with pytest.raises(CaffeFormatError, match="absolute"):
        datasets.reader_for(_layer(param_str=absolute), net, data_root=tmp_path / "data")


@pytest.mark.parametrize("param_str, words", [
    ("__import__('os').system('touch PWNED')", "not a Python literal"),
    ("{'sbdd_dir': __import__('os').getcwd()}", "not a Python literal"),
    ("dict(split='train')", "not a Python literal"),
    ("['train']", "must be a dict"),
    ("{'split': 'train', 'mean': (1, 2, 3)}", "no 'sbdd_dir'"),
    ("{'sbdd_dir': 'd', 'mean': (1, 2, 3)}", "no 'split'"),
    ("{'sbdd_dir': 'd', 'split': 'train', 'mean': (1, 2)}", "three numbers"),
    ("{'sbdd_dir': 'd', 'split': 'train', 'mean': (1, 2, 3), 'seed': '1'}", "'seed'"),
    ("{'sbdd_dir': 'd', 'split': '../train', 'mean': (1, 2, 3)}", "plain file name"),
])
def test_param_str_is_a_literal_and_checked(tmp_path, monkeypatch, param_str, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    with pytest.raises(CaffeFormatError, match="layer 'data'") as e:
        datasets.reader_for(_layer(param_str=param_str), root=tmp_path)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "PWNED").exists()


def test_missing_files_are_one_clear_error(tmp_path):
    make_voc(tmp_path / "VOC")
    make_sbd(tmp_path / "sbd")
    with pytest.raises(UserInputError, match=r"Segmentation/seg12\.txt: no such split file"):
        VOCSeg(tmp_path / "VOC", "seg12")
    (tmp_path / "sbd" / "cls" / "2008_000003.mat").unlink()
    with pytest.raises(UserInputError, match=r"cls/2008_000003\.mat: no such file \(1 files "):
        SBDSeg(tmp_path / "sbd", "train")
    (tmp_path / "VOC" / "JPEGImages" / "2011_000002.jpg").unlink()
    r = VOCSeg(tmp_path / "VOC", "seg11valid", check=False)
    with pytest.raises(CaffeFormatError, match=r"2011_000002\.jpg: cannot open"):
        r[2]
    (tmp_path / "sbd" / "cls" / "2008_000003.mat").write_bytes(b"not a mat file")
    with pytest.raises(CaffeFormatError, match=r"2008_000003\.mat: not a MATLAB file"):
        read_sbd_mat(tmp_path / "sbd" / "cls" / "2008_000003.mat")
    scipy.io.savemat(tmp_path / "sbd" / "cls" / "2008_000003.mat", {"GTinst": {"x": 1}})
    with pytest.raises(CaffeFormatError, match="no GTcls.Segmentation"):
        read_sbd_mat(tmp_path / "sbd" / "cls" / "2008_000003.mat")
    (tmp_path / "sbd" / "train.txt").write_text("2008_000000\n../../etc/passwd\n")
    with pytest.raises(CaffeFormatError, match=r"train\.txt: line 2: id '\.\./\.\./etc/passwd'"):
        SBDSeg(tmp_path / "sbd", "train")
    (tmp_path / "sbd" / "train.txt").write_text("\n\n")
    with pytest.raises(CaffeFormatError, match="lists no ids"):
        SBDSeg(tmp_path / "sbd", "train")


def test_official_train_net_trains_from_the_sbd_reader(tmp_path, monkeypatch, one_thread,
                                                       clean_registry):
    monkeypatch.chdir(tmp_path)
    net = tmp_path / "voc-fcn32s"
    assert main(["net", "voc-fcn32s", "--split", "train", "--solver", "--widths", "4", "8", "16",
                 "32", "32", "--fc", "64", "-o", str(net)]) == 0
    folder = re.search(r"sbdd_dir\\?'?: \\?'([^'\\]+)", (net / "train.prototxt").read_text())
    assert folder and folder.group(1) == "../data/sbdd/dataset"
    make_sbd(net / folder.group(1), n=4)
    datasets.register()
    assert main(["train", "--solver", str(net / "solver.prototxt"), "--max-iter", "2",
                 "--quiet"]) == 0
    assert (tmp_path / "snapshot" / "train_iter_2.caffemodel").is_file()
    assert len(data._FACTORIES) == 1
    datasets.register()                                  # idempotent
    assert len(data._FACTORIES) == 1


def test_train_cli_reads_the_official_layers_from_data_root(tmp_path, monkeypatch, one_thread,
                                                             clean_registry, capsys):
    monkeypatch.chdir(tmp_path)
    net = tmp_path / "nets" / "voc-fcn32s"
    assert main(["net", "voc-fcn32s", "--split", "train", "--solver", "--widths", "4", "8", "16",
                 "32", "32", "--fc", "64", "-o", str(net)]) == 0
    make_sbd(tmp_path / "elsewhere" / "sbdd" / "dataset", n=4)   # not where ../data points
    args = ["train", "--solver", str(net / "solver.prototxt"), "--max-iter", "1", "--quiet"]
    assert main(args) == 2 and "--data-root" in capsys.readouterr().err  # nothing found: says how
    assert main(args + ["--data-root", str(tmp_path / "nowhere")]) == 2
    assert main(args + ["--data-root", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "snapshot" / "train_iter_1.caffemodel").is_file()


def test_overrides_for_eval(tmp_path):
    """fcn-port eval / --eval-split: another folder, split and order than the param_str's."""
    make_voc(tmp_path / "VOC", split="val")
    ps = str(dict(voc_dir="../data/pascal/VOC2011", seed=1337, split="train", mean=MEAN))
    layer = _layer(layer="VOCSegDataLayer", param_str=ps)
    assert datasets.folder_keys(layer) == ("voc_dir",)
    assert datasets.folder_keys(_layer(module="x")) == ()
    v = datasets.reader_for(layer, root="/nowhere", folders={"voc_dir": tmp_path / "VOC"},
                            split="val", randomize=False)
    assert isinstance(v, VOCSeg) and v.split == "val" and not v.random and len(v) == 5
    with pytest.raises(CaffeFormatError, match="plain file name"):
        datasets.reader_for(layer, folders={"voc_dir": tmp_path / "VOC"}, split="../val")


def test_a_mat_zlib_bomb_is_refused_before_scipy_inflates_it(tmp_path):
    """Issue 16: an SBD cls/<id>.mat whose compressed element inflates 1000:1 (7 GB in
    loadmat) is refused from a bounded count of its inflated bytes; a real file still reads."""
    import struct
    import zlib

    import scipy.io

    from fcn_port.port.errors import CaffeFormatError
    from fcn_port.reproduce.voc import MAT_INFLATE_LIMIT, load_mat, read_sbd_mat

    header = b"MATLAB 5.0 MAT-file".ljust(116, b" ") + bytes(8) + struct.pack("<H", 0x0100) + b"IM"
    packed = zlib.compress(bytes(MAT_INFLATE_LIMIT + (1 << 20)), 9)
    bomb = tmp_path / "bomb.mat"
    bomb.write_bytes(header + struct.pack("<II", 15, len(packed)) + packed)
    assert bomb.stat().st_size < MAT_INFLATE_LIMIT // 500
    with pytest.raises(CaffeFormatError, match="inflating past"):
        read_sbd_mat(bomb)
    ok = tmp_path / "ok.mat"
    scipy.io.savemat(ok, {"GTcls": {"Segmentation": np.ones((20, 30), np.uint8)}},
                     do_compression=True)
    assert "GTcls" in load_mat(ok, "a label")
