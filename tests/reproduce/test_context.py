"""The PASCAL-Context reader (reproduce/context.py) and its binding to the official
``pascalcontext_layers.PASCALContextSegDataLayer`` (reproduce/datasets.py), on generated files
in the real layout: ``{voc_dir}/VOC2010/JPEGImages`` and ``ImageSets/Main/<split>.txt``;
``{context_dir}/trainval/<id>.mat`` (uint16 ``LabelMap`` of full label ids), ``labels.txt`` and
``59_labels.txt`` (here short lists holding the three renamed names and names with spaces).
Expected labels are computed as the official layer does: ``np.genfromtxt`` of both lists,
spaces removed, the three renames, then its ``load_label`` loop. End to end: the official
pascalcontext-fcn32s train net trains through ``fcn-port train`` with ``--data-root``."""
import random

import numpy as np
import pytest
import scipy.io
from PIL import Image, ImageDraw

from fcn_port.cli import main
from fcn_port.port.errors import CaffeFormatError, UserInputError
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.reproduce import datasets
from fcn_port.reproduce.context import ContextSeg, read_label_list

MEAN = (104.007, 116.669, 122.679)
SIZES = [(22, 30), (26, 24), (22, 30), (20, 28)]
FULL = ["accordion", "aeroplane", "air conditioner", "bedclothes", "cat", "cloth", "dog",
        "potted plant", "sky", "table", "wall"]                     # ids 1-11
TASK = ["aeroplane", "diningtable", "cat", "bedcloth", "clothes", "pottedplant", "sky"]


def make_context(root, split="val", n=4, task=TASK):
    """``root/pascal/VOC2010`` and ``root/pascal-context``; LabelMaps use every full id 0-11."""
    voc, ctx = root / "pascal" / "VOC2010", root / "pascal-context"
    for sub in (voc / "JPEGImages", voc / "ImageSets" / "Main", ctx / "trainval"):
        sub.mkdir(parents=True, exist_ok=True)
    (ctx / "labels.txt").write_text("".join(f"{k}: {n}\n" for k, n in enumerate(FULL, 1)))
    (ctx / "59_labels.txt").write_text("".join(f"{k}: {n}\n" for k, n in enumerate(task, 1)))
    ids = [f"2008_{k:06d}" for k in range(n)]
    for k, name in enumerate(ids):
        h, w = SIZES[k % len(SIZES)]
        im = Image.new("RGB", (w, h), (10 + 50 * k, 140, 230 - 40 * k))
        ImageDraw.Draw(im).ellipse((2, 3, w - 5, h // 2), fill=(240, 20 * k, 90))
        im.save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
        yy, xx = np.mgrid[0:h, 0:w]
        scipy.io.savemat(ctx / "trainval" / f"{name}.mat",
                         {"LabelMap": ((xx // 3 + yy // 4 + k) % 12).astype(np.uint16)})
    (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return ids


def official_label(ctx, name):
    """The layer's setup (label lists) and load_label, transcribed."""
    labels_400 = [label.replace(" ", "") for idx, label in
                  np.genfromtxt(ctx / "labels.txt", delimiter=":", dtype=None, encoding="utf-8")]
    labels_59 = [label.replace(" ", "") for idx, label in
                 np.genfromtxt(ctx / "59_labels.txt", delimiter=":", dtype=None, encoding="utf-8")]
    for main_label, task_label in zip(("table", "bedclothes", "cloth"),
                                      ("diningtable", "bedcloth", "clothes")):
        labels_59[labels_59.index(task_label)] = main_label
    label_400 = scipy.io.loadmat(ctx / "trainval" / f"{name}.mat")["LabelMap"]
    label = np.zeros_like(label_400, dtype=np.uint8)
    for idx, lab in enumerate(labels_59):
        label[label_400 == labels_400.index(lab) + 1] = idx + 1
    return label[np.newaxis, np.newaxis].astype(np.float32)


def official_image(voc, name):
    x = np.array(Image.open(voc / "JPEGImages" / f"{name}.jpg"), dtype=np.float32)[:, :, ::-1]
    x -= np.array(MEAN, dtype=np.float32)
    return x.transpose((2, 0, 1))[None]


def _layer(param_str, tops=("data", "label")):
    lp = caffe_pb2.LayerParameter(name="data", type="Python", top=list(tops))
    lp.python_param.module = "pascalcontext_layers"
    lp.python_param.layer = "PASCALContextSegDataLayer"
    lp.python_param.param_str = param_str
    return lp


def test_arrays_and_the_59_class_mapping_are_the_official_layers(tmp_path):
    ids = make_context(tmp_path)
    r = ContextSeg(tmp_path / "pascal-context", "val", voc_dir=tmp_path / "pascal")
    assert not r.random and len(r) == 4 and r.mean.dtype == np.float32
    # by hand: task k+1 <- full id; aeroplane 2, table 10, cat 5, bedclothes 4, cloth 6,
    # potted plant 8, sky 9
    assert r.label_ids == [2, 10, 5, 4, 6, 8, 9]
    for k, name in enumerate(ids):
        b = r[k]
        np.testing.assert_array_equal(b["data"], official_image(tmp_path / "pascal/VOC2010", name))
        want = official_label(tmp_path / "pascal-context", name)
        np.testing.assert_array_equal(b["label"], want)
        assert b["label"].shape[2:] == SIZES[k] and b["label"].dtype == np.float32
        assert b["label"].max() <= 7 and 255 not in b["label"]
        lm = scipy.io.loadmat(tmp_path / "pascal-context/trainval" / f"{name}.mat")["LabelMap"]
        assert np.all(b["label"][0, 0][lm == 10] == 2)           # table -> diningtable, class 2
        assert np.all(b["label"][0, 0][np.isin(lm, [0, 1, 3, 7, 11])] == 0)  # the rest: 0


def test_train_order_and_binding(tmp_path):
    net = tmp_path / "nets" / "pascalcontext-fcn32s"
    net.mkdir(parents=True)
    ids = make_context(tmp_path / "data", split="train", n=3)
    ps = ("{'context_dir': '../../data/pascal-context', 'seed': 1337, 'split': 'train', "
          "'voc_dir': '../../data/pascal'}")
    layer = _layer(ps)
    assert datasets.folder_keys(layer) == ("context_dir", "voc_dir")
    r = datasets.reader_for(layer, root=net)
    assert isinstance(r, ContextSeg) and r.random and r.ids == ids
    assert r.voc2010.resolve() == (tmp_path / "data/pascal/VOC2010").resolve()
    gen = random.Random(1337)
    assert [r.order(d) for d in range(25)] == [int(gen.random() * 3) for _ in range(25)]
    d = datasets.reader_for(layer, root="/nowhere", data_root=tmp_path / "data")
    assert d.context_dir == tmp_path / "data" / "pascal-context"
    v = datasets.reader_for(layer, folders={"voc_dir": tmp_path / "data/pascal",
                                            "context_dir": tmp_path / "data/pascal-context"},
                            split="train", randomize=False)
    assert not v.random and [v.order(i) for i in range(4)] == [0, 1, 2, 0]
    assert datasets.reader_for(layer, root=net, folders={"context_dir": tmp_path / "x"},
                               missing_ok=True) is None
    with pytest.raises(CaffeFormatError, match="3 tops"):
        datasets.reader_for(_layer(ps, ("data", "label", "x")), root=net)
    with pytest.raises(CaffeFormatError, match="no 'context_dir'"):
        datasets.reader_for(_layer("{'voc_dir': 'p', 'split': 'train'}"), root=net)


def test_errors_name_the_file(tmp_path):
    make_context(tmp_path)
    voc, ctx = tmp_path / "pascal", tmp_path / "pascal-context"
    with pytest.raises(UserInputError, match="VOC2010: no such folder"):
        ContextSeg(ctx, "val", voc_dir=ctx)
    with pytest.raises(UserInputError, match=r"nowhere: no such PASCAL-Context \(context_dir\)"):
        ContextSeg(tmp_path / "nowhere", "val", voc_dir=voc)
    (ctx / "trainval" / "2008_000002.mat").unlink()
    with pytest.raises(UserInputError, match=r"trainval/2008_000002\.mat: no such file"):
        ContextSeg(ctx, "val", voc_dir=voc)
    make_context(tmp_path, task=TASK[:3] + TASK[4:])              # no 'bedcloth'
    with pytest.raises(CaffeFormatError, match=r"59_labels\.txt.*'bedcloth'"):
        ContextSeg(ctx, "val", voc_dir=voc)
    make_context(tmp_path, task=TASK + ["moon"])
    with pytest.raises(CaffeFormatError, match=r"labels\.txt.*'moon'"):
        ContextSeg(ctx, "val", voc_dir=voc)
    (ctx / "labels.txt").write_text("1: accordion\n3: aeroplane\n")
    with pytest.raises(CaffeFormatError, match="line 2") as e:
        read_label_list(ctx / "labels.txt")
    assert "position" in str(e.value)
    (ctx / "labels.txt").write_text("1 accordion\n")
    with pytest.raises(CaffeFormatError, match="'id: name'"):
        read_label_list(ctx / "labels.txt")
    make_context(tmp_path)
    (ctx / "59_labels.txt").unlink()
    with pytest.raises(UserInputError, match=r"59_labels\.txt: no such label list"):
        ContextSeg(ctx, "val", voc_dir=voc)


def test_official_train_net_trains(tmp_path, monkeypatch, one_thread, clean_registry):
    monkeypatch.chdir(tmp_path)
    net = tmp_path / "nets" / "pascalcontext-fcn32s"
    assert main(["net", "pascalcontext-fcn32s", "--split", "trainval", "--widths", "2", "4", "4",
                 "8", "8", "--fc", "8", "--solver", "-o", str(net)]) == 0
    assert (net / "train.prototxt").is_file()                    # the solver's train split
    make_context(tmp_path / "d", split="train", n=3)
    assert main(["train", "--solver", str(net / "solver.prototxt"), "--data-root",
                 str(tmp_path / "d"), "--max-iter", "2", "--quiet"]) == 0
    logs = list(tmp_path.glob("**/*_log.csv"))
    assert len(logs) == 1 and list(logs[0].parent.glob("*_iter_2.caffemodel"))
    losses = [float(row.split(",")[1]) for row in logs[0].read_text().split()[1:]]
    assert len(losses) == 2 and all(np.isfinite(x) and x > 0 for x in losses)
