"""The SIFT Flow reader (reproduce/siftflow.py) and its binding to the official
``siftflow_layers.SIFTFlowSegDataLayer`` (reproduce/datasets.py), on generated files in the real
layout: JPEGs under ``Images/spatial_envelope_256x256_static_8outdoorcategories``, ``S`` label
mats (semantic 0 = void as doubles; geometric -1 = void as int16) written with scipy, split
files. Expected arrays are computed here as the official layer's ``load_image`` / ``load_label``
compute them; the order from a transcription of its setup / forward logic. End to end: the
official siftflow-fcn32s trainval net trains through ``fcn-port train``."""
import random

import numpy as np
import pytest
import scipy.io
from PIL import Image, ImageDraw

from fcn_port.cli import main
from fcn_port.port.errors import CaffeFormatError, UserInputError
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.reproduce import datasets
from fcn_port.reproduce.siftflow import SIFTFlowSeg, read_siftflow_label

SUB = "spatial_envelope_256x256_static_8outdoorcategories"
SIZES = [(24, 32), (28, 30), (24, 32), (30, 26)]  # (H, W); the real images are 256 x 256
MEAN = (114.578, 115.294, 108.353)                 # the layer's own, float32


def make_siftflow(folder, split="trainval", n=4, names=None):
    """A SIFT Flow tree: Images/<sub>/*.jpg, SemanticLabels/<sub>/*.mat, GeoLabels/<sub>/*.mat,
    <split>.txt. Semantic S: 0 void, 1-33; geometric S: -1 void, 1-3."""
    for top in ("Images", "SemanticLabels", "GeoLabels"):
        (folder / top / SUB).mkdir(parents=True, exist_ok=True)
    names = names or [f"coast_natu{k:03d}" for k in range(n)]
    for k, name in enumerate(names):
        h, w = SIZES[k % len(SIZES)]
        im = Image.new("RGB", (w, h), (30 + 40 * k, 120, 200 - 30 * k))
        ImageDraw.Draw(im).rectangle((3, 2, w // 2, h - 4), fill=(220, 30 + 20 * k, 15))
        im.save(folder / "Images" / SUB / f"{name}.jpg", quality=90)
        sem = np.full((h, w), 28.0)                      # sky
        sem[h // 2:, :] = 1 + (k * 7) % 33
        sem[:, :2] = 0                                   # void
        geo = np.ones((h, w), np.int16)
        geo[h // 2:, :] = 2 + k % 2
        geo[:2, :] = -1                                  # void
        scipy.io.savemat(folder / "SemanticLabels" / SUB / f"{name}.mat", {"S": sem})
        scipy.io.savemat(folder / "GeoLabels" / SUB / f"{name}.mat", {"S": geo})
    (folder / f"{split}.txt").write_text("\n".join(names) + "\n")
    return names


def official_arrays(folder, name):
    """load_image and load_label as the official layer writes them (transcribed)."""
    im = np.array(Image.open(folder / "Images" / SUB / f"{name}.jpg"), dtype=np.float32)
    im = im[:, :, ::-1]
    im -= np.array(MEAN, dtype=np.float32)
    out = [im.transpose((2, 0, 1))[None]]
    for top in ("SemanticLabels", "GeoLabels"):
        label = scipy.io.loadmat(folder / top / SUB / f"{name}.mat")["S"]
        if top == "GeoLabels":
            label[label == -1] = 0
        label = label.astype(np.uint8)
        label -= 1
        out.append(label[np.newaxis, np.newaxis].astype(np.float32))
    return out


def official_order(n, split, seed, steps):
    """setup seeds and draws idx; each forward serves idx then draws the next (Python 2.7)."""
    gen, served = random.Random(), []
    rand = "train" in split
    gen.seed(seed)
    idx = int(gen.random() * n) if rand else 0
    for _ in range(steps):
        served.append(idx)
        idx = int(gen.random() * n) if rand else (idx + 1) % n
    return served


def _layer(param_str, tops=("data", "sem", "geo")):
    lp = caffe_pb2.LayerParameter(name="data", type="Python", top=list(tops))
    lp.python_param.module, lp.python_param.layer = "siftflow_layers", "SIFTFlowSegDataLayer"
    lp.python_param.param_str = param_str
    return lp


def test_three_tops_are_the_official_layers(tmp_path):
    names = make_siftflow(tmp_path / "sift-flow", split="test")
    r = SIFTFlowSeg(tmp_path / "sift-flow", "test", seed=1337)
    assert not r.random and r.tops == ("data", "sem", "geo") and len(r) == 4
    assert r.mean.dtype == np.float32
    for k, name in enumerate(names):
        b = r[k]
        want = official_arrays(tmp_path / "sift-flow", name)
        h, w = SIZES[k]
        for top, arr in zip(("data", "sem", "geo"), want):
            assert b[top].dtype == np.float32 and b[top].shape[2:] == (h, w)
            np.testing.assert_array_equal(b[top], arr)
        assert b["sem"][0, 0, 0, 0] == 255 and b["sem"][0, 0, 0, 5] == 27   # void; sky 28 -> 27
        assert b["geo"][0, 0, 0, 5] == 255 and b["geo"][0, 0, -1, 5] == 1 + k % 2
        assert set(np.unique(b["geo"])) <= {0, 1, 2, 255}


def test_trainval_order_and_split_files_decide_what_is_read(tmp_path):
    folder = tmp_path / "sift-flow"
    names = make_siftflow(folder, n=4)
    # the unannotated images: files present, but the official split files leave them out
    make_siftflow(folder, split="all", names=names + ["highway_bost181", "street_urb506"])
    (folder / "trainval.txt").write_text("\n".join(names) + "\n")
    r = SIFTFlowSeg(folder, "trainval", seed=1337)
    assert r.random and r.ids == names and "highway_bost181" not in r.ids
    assert [r.order(d) for d in range(40)] == official_order(4, "trainval", 1337, 40)
    d = 7
    np.testing.assert_array_equal(r[d]["sem"], official_arrays(folder, names[r.order(d)])[1])
    assert len(SIFTFlowSeg(folder, "all", check=False).ids) == 6


def test_param_str_binding(tmp_path):
    net = tmp_path / "siftflow-fcn32s"
    net.mkdir()
    make_siftflow(tmp_path / "data" / "sift-flow")
    ps = "{'siftflow_dir': '../data/sift-flow', 'seed': 1337, 'split': 'trainval'}"
    layer = _layer(ps)
    assert datasets.folder_keys(layer) == ("siftflow_dir",)
    r = datasets.reader_for(layer, root=net)
    assert isinstance(r, SIFTFlowSeg) and r.random and r.seed == 1337
    assert r.folder.resolve() == (tmp_path / "data" / "sift-flow").resolve()
    v = datasets.reader_for(_layer(ps, ("im", "s", "g")), root="/nowhere",
                            folders={"siftflow_dir": tmp_path / "data" / "sift-flow"},
                            split="trainval", randomize=False)
    assert not v.random and set(v[0]) == {"im", "s", "g"}
    with pytest.raises(CaffeFormatError, match="3 tops|2 tops") as e:
        datasets.reader_for(_layer(ps, ("data", "sem")), root=net)
    assert "three" in str(e.value)
    with pytest.raises(CaffeFormatError, match="no 'siftflow_dir'"):
        datasets.reader_for(_layer("{'split': 'trainval'}"), root=net)
    with pytest.raises(CaffeFormatError, match="not a Python literal"):
        datasets.reader_for(_layer("dict(siftflow_dir='x', split='test')"), root=net)


def test_errors_name_the_file(tmp_path):
    folder = tmp_path / "sift-flow"
    names = make_siftflow(folder)
    with pytest.raises(UserInputError, match=r"sift-flow/test\.txt: no such split file"):
        SIFTFlowSeg(folder, "test")
    (folder / "GeoLabels" / SUB / f"{names[2]}.mat").unlink()
    with pytest.raises(UserInputError, match=rf"GeoLabels/{SUB}/{names[2]}\.mat: no such file"):
        SIFTFlowSeg(folder, "trainval")
    bad = folder / "SemanticLabels" / SUB / f"{names[1]}.mat"
    scipy.io.savemat(bad, {"S": np.full((3, 4), 300.0)})
    with pytest.raises(CaffeFormatError, match="outside the whole numbers 0-255"):
        read_siftflow_label(bad)
    scipy.io.savemat(bad, {"L": np.ones((3, 4))})
    with pytest.raises(CaffeFormatError, match="no variable 'S'"):
        read_siftflow_label(bad)
    scipy.io.savemat(bad, {"S": np.ones((5, 5))})                 # not the image's size
    r = SIFTFlowSeg(folder, "trainval", randomize=False, check=False)
    with pytest.raises(CaffeFormatError, match="top 'sem'"):
        r[1]


def test_official_trainval_net_trains(tmp_path, monkeypatch, one_thread, clean_registry):
    monkeypatch.chdir(tmp_path)
    net = tmp_path / "nets" / "siftflow-fcn32s"
    assert main(["net", "siftflow-fcn32s", "--split", "trainval", "--widths", "2", "4", "4", "8",
                 "8", "--fc", "8", "--solver", "-o", str(net)]) == 0
    make_siftflow(tmp_path / "data" / "sift-flow", n=3)
    assert main(["train", "--solver", str(net / "solver.prototxt"), "--data-root",
                 str(tmp_path / "data"), "--max-iter", "2", "--quiet"]) == 0
    assert (net / "solver_iter_2.caffemodel").is_file()
    rows = (net / "solver_log.csv").read_text().split()[1:]
    losses = [float(row.split(",")[1]) for row in rows]
    assert len(losses) == 2 and all(np.isfinite(x) and x > 0 for x in losses)


def test_eval_every_scores_both_heads(tmp_path, monkeypatch, one_thread, clean_registry):
    """solve.py's seg_tests for SIFT Flow: score_sem against sem and score_geo against geo,
    each a row of the eval CSV at the evaluated iteration."""
    monkeypatch.chdir(tmp_path)
    net = tmp_path / "nets" / "siftflow-fcn32s"
    small = ["--widths", "2", "4", "4", "8", "8", "--fc", "8", "-o", str(net)]
    assert main(["net", "siftflow-fcn32s", "--split", "trainval", "--solver"] + small) == 0
    assert main(["net", "siftflow-fcn32s", "--split", "test"] + small) == 0
    make_siftflow(tmp_path / "data" / "sift-flow", n=3)
    make_siftflow(tmp_path / "data" / "sift-flow", split="test", n=2)
    assert main(["train", "--solver", str(net / "solver.prototxt"), "--data-root",
                 str(tmp_path / "data"), "--max-iter", "2", "--eval-every", "2", "--quiet"]) == 0
    rows = [r.split(",") for r in (net / "solver_eval.csv").read_text().split()]
    col = {name: k for k, name in enumerate(rows[0])}
    heads = [(r[col["iter"]], r[col["score"]], r[col["label"]], r[col["images"]]) for r in rows[1:]]
    assert heads == [("2", "score_sem", "sem", "2"), ("2", "score_geo", "geo", "2")]
