"""The NYUDv2 reader (reproduce/nyud.py) and its binding to the official
``nyud_layers.NYUDSegDataLayer`` (reproduce/datasets.py), on generated files in the real layout:
``data/images`` RGB PNGs, ``data/depth`` 16-bit PNGs (millimetres), ``data/hha`` RGB PNGs,
``segmentation/img_<id>.mat`` (uint8 ``segmentation``, 0 void, 1-40), split files. Expected
arrays are computed here as the official layer's ``load_image`` / ``load_depth`` / ``load_hha``
/ ``load_label`` compute them. End to end: the official nyud-fcn32s-color-d trainval net
(colour and depth concatenated) trains through ``fcn-port train`` from train.txt + val.txt."""
import random

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fcn_port.cli import main
from fcn_port.port.errors import CaffeFormatError, UserInputError
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.reproduce import datasets
from fcn_port.reproduce.nyud import NYUDSeg

SIZES = [(20, 26), (22, 24), (20, 26), (18, 28), (24, 20)]  # (H, W); the real ones 425 x 560
MEAN_BGR = (116.190, 97.203, 92.318)
MEAN_HHA = (132.431, 94.076, 118.477)
MEAN_LOGD = (7.844,)


def make_nyud(nyud_dir, splits=(("train", 3), ("val", 2))):
    """A NYUD tree for the ids of ``splits`` ((name, count), ids numbered on)."""
    for sub in ("data/images", "data/depth", "data/hha", "segmentation"):
        (nyud_dir / sub).mkdir(parents=True, exist_ok=True)
    k, out = 0, {}
    for split, n in splits:
        ids = []
        for _ in range(n):
            name = str(5001 + k)
            h, w = SIZES[k % len(SIZES)]
            yy, xx = np.mgrid[0:h, 0:w]
            rgb = np.stack([(xx * 9 + 17 * k) % 256, (yy * 11) % 256, (xx + yy + 40 * k) % 256], -1)
            Image.fromarray(rgb.astype(np.uint8)).save(nyud_dir / "data/images" / f"img_{name}.png")
            Image.fromarray(rgb[:, :, ::-1].astype(np.uint8) // 2 + 60).save(
                nyud_dir / "data/hha" / f"img_{name}.png")
            depth = (700 + 37 * xx + 23 * yy + 100 * k).astype(np.uint16)  # mm, no zeros
            Image.fromarray(depth).save(nyud_dir / "data/depth" / f"img_{name}.png")
            seg = ((xx // 4 + yy // 5 + k) % 41).astype(np.uint8)          # 0 (void) - 40
            seg[0, :4], seg[-1, -1] = 0, 40
            scipy.io.savemat(nyud_dir / "segmentation" / f"img_{name}.mat", {"segmentation": seg})
            ids.append(name)
            k += 1
        (nyud_dir / f"{split}.txt").write_text("\n".join(ids) + "\n")
        out[split] = ids
    return out


def official(nyud_dir, kind, name):
    """The official layer's load(kind, idx), transcribed, with the batch axis added."""
    if kind == "label":
        label = scipy.io.loadmat(nyud_dir / "segmentation" / f"img_{name}.mat")["segmentation"]
        label = label.astype(np.uint8)
        label -= 1
        return label[np.newaxis, np.newaxis].astype(np.float32)
    sub = {"color": "images", "depth": "depth", "hha": "hha"}[kind]
    x = np.array(Image.open(nyud_dir / "data" / sub / f"img_{name}.png"), dtype=np.float32)
    if kind == "depth":
        x = np.log(x)
        x -= np.array(MEAN_LOGD, dtype=np.float32)
        return x[np.newaxis, np.newaxis]
    if kind == "color":
        x = x[:, :, ::-1]
        x -= np.array(MEAN_BGR, dtype=np.float32)
    else:
        x -= np.array(MEAN_HHA, dtype=np.float32)
    return x.transpose((2, 0, 1))[None]


def _layer(param_str, tops):
    lp = caffe_pb2.LayerParameter(name=tops[0], type="Python", top=list(tops))
    lp.python_param.module, lp.python_param.layer = "nyud_layers", "NYUDSegDataLayer"
    lp.python_param.param_str = param_str
    return lp


def test_every_kind_is_the_official_layers(tmp_path):
    ids = make_nyud(tmp_path / "nyud", (("test", 3),))["test"]
    r = NYUDSeg(tmp_path / "nyud", "test", kinds=("color", "depth", "hha", "label"), seed=1337)
    assert not r.random and r.tops == ("color", "depth", "hha", "label") and len(r) == 3
    for k, name in enumerate(ids):
        b = r[k]
        h, w = SIZES[k]
        for kind in r.kinds:
            want = official(tmp_path / "nyud", kind, name)
            assert b[kind].dtype == np.float32 and b[kind].shape == want.shape
            assert b[kind].shape[2:] == (h, w)
            np.testing.assert_array_equal(b[kind], want)
        png = np.array(Image.open(tmp_path / "nyud/data/hha" / f"img_{name}.png"), np.float32)
        np.testing.assert_array_equal(b["hha"][0, 0], png[:, :, 0] - np.float32(132.431))  # no flip
        assert set(np.unique(b["label"])) <= set(range(40)) | {255}
        assert b["label"][0, 0, 0, 0] == 255 and b["label"][0, 0, -1, -1] == 39


def test_trainval_is_train_then_val_when_missing(tmp_path):
    split = make_nyud(tmp_path / "nyud")
    r = NYUDSeg(tmp_path / "nyud", "trainval", seed=1337, kinds=("hha", "label"),
                tops=("data", "label"))
    assert r.ids == split["train"] + split["val"] and r.random and "no trainval.txt" in r.path
    gen = random.Random(1337)                     # setup's draw, then one per forward (Py 2.7)
    want = [int(gen.random() * 5) for _ in range(30)]
    assert [r.order(d) for d in range(30)] == want
    np.testing.assert_array_equal(r[4]["data"], official(tmp_path / "nyud", "hha", r.ids[want[4]]))
    (tmp_path / "nyud" / "trainval.txt").write_text("5002\n5001\n")   # a real one wins
    assert NYUDSeg(tmp_path / "nyud", "trainval").ids == ["5002", "5001"]
    (tmp_path / "nyud" / "trainval.txt").unlink()
    (tmp_path / "nyud" / "val.txt").unlink()
    with pytest.raises(UserInputError, match=r"trainval\.txt: no such split file"):
        NYUDSeg(tmp_path / "nyud", "trainval")


def test_param_str_binding(tmp_path):
    net = tmp_path / "nyud-fcn32s-color-hha"
    net.mkdir()
    make_nyud(tmp_path / "data" / "nyud", (("test", 2),))
    ps = ("{'tops': ['color', 'hha', 'label'], 'seed': 1337, 'nyud_dir': '../data/nyud', "
          "'split': 'test'}")
    layer = _layer(ps, ("color", "hha", "label"))
    assert datasets.folder_keys(layer) == ("nyud_dir",)
    r = datasets.reader_for(layer, root=net)
    assert isinstance(r, NYUDSeg) and r.kinds == ("color", "hha", "label") and not r.random
    assert r.folder.resolve() == (tmp_path / "data" / "nyud").resolve()
    one = datasets.reader_for(_layer(ps.replace("'color', ", ""), ("data", "label")), root=net)
    np.testing.assert_array_equal(one[1]["data"], official(r.folder, "hha", "5002"))
    with pytest.raises(CaffeFormatError, match="has 2 tops") as e:
        datasets.reader_for(_layer(ps, ("data", "label")), root=net)
    assert "'tops'" in str(e.value)
    for bad, words in [(ps.replace("'hha'", "'rgb'"), "kinds from color, depth, hha, label"),
                       (ps.replace("['color', 'hha', 'label']", "'color'"), "'tops'"),
                       ("{'nyud_dir': '../data/nyud', 'split': 'test'}", "no 'tops'")]:
        with pytest.raises(CaffeFormatError, match="layer 'color'") as e:
            datasets.reader_for(_layer(bad, ("color", "hha", "label")), root=net)
        assert words in str(e.value)


def test_errors_name_the_file(tmp_path):
    make_nyud(tmp_path / "nyud", (("test", 3),))
    (tmp_path / "nyud/data/hha/img_5002.png").unlink()
    with pytest.raises(UserInputError, match=r"data/hha/img_5002\.png: no such file"):
        NYUDSeg(tmp_path / "nyud", "test", kinds=("color", "hha", "label"))
    NYUDSeg(tmp_path / "nyud", "test", kinds=("color", "depth", "label"))  # hha not read
    depth = np.array(Image.open(tmp_path / "nyud/data/depth/img_5001.png"), np.uint16)
    depth[2, 3] = 0                                          # log(0) = -inf in the official
    Image.fromarray(depth).save(tmp_path / "nyud/data/depth/img_5001.png")
    r = NYUDSeg(tmp_path / "nyud", "test", kinds=("depth",))
    with pytest.raises(CaffeFormatError, match=r"img_5001\.png.*<= 0"):
        r[0]
    with pytest.raises(UserInputError, match="'rgb' is none"):
        NYUDSeg(tmp_path / "nyud", "test", kinds=("rgb", "label"))
    scipy.io.savemat(tmp_path / "nyud/segmentation/img_5003.mat", {"seg": np.ones((2, 2))})
    with pytest.raises(CaffeFormatError, match="no variable 'segmentation'"):
        NYUDSeg(tmp_path / "nyud", "test", kinds=("label",))[2]


def test_official_color_d_trainval_net_trains(tmp_path, monkeypatch, one_thread, clean_registry):
    monkeypatch.chdir(tmp_path)
    net = tmp_path / "nets" / "nyud-fcn32s-color-d"
    assert main(["net", "nyud-fcn32s-color-d", "--split", "trainval", "--widths", "2", "4", "4",
                 "8", "8", "--fc", "8", "--solver", "-o", str(net)]) == 0
    make_nyud(tmp_path / "data" / "nyud", (("train", 2), ("val", 1)))
    assert main(["train", "--solver", str(net / "solver.prototxt"), "--data-root",
                 str(tmp_path / "data"), "--max-iter", "2", "--quiet"]) == 0
    assert (tmp_path / "snapshot" / "train_iter_2.caffemodel").is_file()  # the solver's prefix
    rows = (tmp_path / "snapshot" / "train_log.csv").read_text().split()[1:]
    losses = [float(row.split(",")[1]) for row in rows]
    assert len(losses) == 2 and all(np.isfinite(x) and x > 0 for x in losses)
