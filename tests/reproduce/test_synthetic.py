"""The generated VOC/SBD dataset and the VGG16-layout base net (reproduce/synthetic.py).

The layouts are checked by reading the files as the official layers do (scipy.io.loadmat's
``['GTcls'][0]['Segmentation'][0]``, PIL palette indices) and through reproduce's readers; the
VOC palette colours and the VGG16 layer list are typed in from the official facts; the base net
goes through ``fcn-port surgery transplant`` into the official voc-fcn32s train net and one
``fcn-port train`` iteration reads the generated data from ``--data-root``."""
import numpy as np
import pytest
import scipy.io
from PIL import Image

from fcn_port.cli import main
from fcn_port.port.errors import UserInputError
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.reproduce import synthetic
from fcn_port.reproduce.voc import SBDSeg, VOCSeg

PRESENT = {0, 1, 7, 8, 12, 15}          # background + the five drawn classes
WIDTHS, FC = (2, 4, 4, 8, 8), 8


@pytest.fixture
def tiny(tmp_path):
    ids = synthetic.make_dataset(tmp_path / "data", n_train=3, n_val=2, size=(32, 40), seed=5)
    return tmp_path / "data", ids


def test_the_official_layouts(tiny):
    root, ids = tiny
    sbd, voc = root / "sbdd" / "dataset", root / "pascal" / "VOC2011"
    assert ids == {"train": ["2008_000000", "2008_000001", "2008_000002"],
                   "val": ["2011_000000", "2011_000001"]}
    assert (sbd / "train.txt").read_text().split() == ids["train"]
    assert (voc / "ImageSets" / "Segmentation" / "seg11valid.txt").read_text().split() == ids["val"]
    for name in ids["train"]:
        assert Image.open(sbd / "img" / f"{name}.jpg").format == "JPEG"
        seg = scipy.io.loadmat(str(sbd / "cls" / f"{name}.mat"))["GTcls"][0]["Segmentation"][0]
        assert seg.shape == (32, 40) and set(np.unique(seg)) <= PRESENT   # SBD: no void
    for name in ids["val"]:
        im = Image.open(voc / "JPEGImages" / f"{name}.jpg")
        assert im.format == "JPEG" and im.size == (40, 32) and im.mode == "RGB"
        png = Image.open(voc / "SegmentationClass" / f"{name}.png")
        assert png.mode == "P"
        pal = np.array(png.getpalette()[:768]).reshape(256, 3)
        # VOC's colours: background black, aeroplane (128,0,0), person (192,128,128), void
        assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0]
        assert pal[15].tolist() == [192, 128, 128] and pal[255].tolist() == [224, 224, 192]
        lab = np.array(png)
        assert set(np.unique(lab)) <= PRESENT | {255} and 255 in lab
        # the void band: two 4-neighbours that are both labelled carry the same class
        for a, b in ((lab[1:], lab[:-1]), (lab[:, 1:], lab[:, :-1])):
            both = (a != 255) & (b != 255)
            assert np.array_equal(a[both], b[both])


def test_the_readers_serve_it(tiny):
    root, ids = tiny
    train = SBDSeg(root / "sbdd" / "dataset", "train", seed=1337)
    val = VOCSeg(root / "pascal" / "VOC2011", "seg11valid")
    assert train.random and not val.random and val.ids == ids["val"]
    for batch in (train[0], train[7], val[0], val[1]):
        assert batch["data"].shape == (1, 3, 32, 40) and batch["label"].shape == (1, 1, 32, 40)
    assert set(np.unique(val[1]["label"])) <= PRESENT | {255}


def test_deterministic_and_per_index(tmp_path):
    a = synthetic.make_dataset(tmp_path / "a", n_train=2, n_val=1, size=(24, 24), seed=3)
    synthetic.make_dataset(tmp_path / "b", n_train=3, n_val=1, size=(24, 24), seed=3)
    synthetic.make_dataset(tmp_path / "c", n_train=2, n_val=1, size=(24, 24), seed=4)
    for name in a["train"]:
        rel = f"sbdd/dataset/img/{name}.jpg"
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    rel = "pascal/VOC2011/SegmentationClass/2011_000000.png"
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a" / "sbdd/dataset/img/2008_000000.jpg").read_bytes() != \
        (tmp_path / "c" / "sbdd/dataset/img/2008_000000.jpg").read_bytes()


def test_each_class_has_its_colour():
    rng = np.random.default_rng(11)
    seen = {}
    for _ in range(30):
        rgb, lab = synthetic.make_scene(rng, 96, 128)
        for c in set(np.unique(lab)) - {0}:
            seen.setdefault(c, []).append(rgb[lab == c].astype(float).mean(0))
    assert set(seen) == PRESENT - {0}                 # every class drawn in 30 scenes
    colours = {1: (236, 236, 240), 7: (40, 80, 225), 8: (205, 60, 205), 12: (235, 150, 30),
               15: (215, 30, 40)}
    for c, means in seen.items():
        assert np.abs(np.median(means, 0) - colours[c]).max() < 40, c


def test_base_net_is_vgg16_shaped(tmp_path):
    synthetic.make_base_net(tmp_path / "base.caffemodel", WIDTHS, FC, seed=2)
    w = read_weights(tmp_path / "base.caffemodel")
    convs = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
             "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
    assert list(w.params) == convs + ["fc6", "fc7", "fc8"]
    types = {lp.name: lp.type for lp in w.net.layer}
    assert types["fc6"] == types["fc7"] == types["fc8"] == "InnerProduct"
    assert types["pool5"] == "Pooling" and types["conv5_3"] == "Convolution"
    assert w.params["conv1_1"][0].shape == (2, 3, 3, 3)
    assert w.params["conv5_3"][0].shape == (8, 8, 3, 3)
    assert w.params["fc6"][0].shape == (FC, 8 * 7 * 7)
    assert w.params["fc7"][0].shape == (FC, FC) and w.params["fc8"][0].shape == (1000, FC)
    std = w.params["conv4_1"][0].std()                 # msra: sqrt(2 / (4 * 3 * 3)) = 0.2357
    assert 0.15 < std < 0.32 and not w.params["conv4_1"][1].any()


def test_base_net_transplants_into_voc_fcn32s(tmp_path, capsys):
    base = tmp_path / "base.caffemodel"
    synthetic.make_base_net(base, WIDTHS, FC, seed=2)
    assert main(["net", "voc-fcn32s", "--split", "train", "--widths", *map(str, WIDTHS),
                 "--fc", str(FC), "-o", str(tmp_path / "net")]) == 0
    assert main(["surgery", "transplant", str(base), "--net", str(tmp_path / "net" /
                 "train.prototxt"), "-o", str(tmp_path / "init.caffemodel")]) == 0
    out = capsys.readouterr().out
    assert "coerced" in out and "dropped" in out
    src, dst = read_weights(base).params, read_weights(tmp_path / "init.caffemodel").params
    assert "fc8" not in dst                             # dropped, as VGG16's fc8
    assert dst["fc6"][0].shape == (FC, 8, 7, 7)          # InnerProduct -> 7x7 convolution
    np.testing.assert_array_equal(dst["fc6"][0].reshape(-1), src["fc6"][0].reshape(-1))
    np.testing.assert_array_equal(dst["fc7"][0].reshape(-1), src["fc7"][0].reshape(-1))
    np.testing.assert_array_equal(dst["conv3_2"][0], src["conv3_2"][0])
    assert not dst["score_fr"][0].any()


def test_cli_then_train_reads_it(tmp_path, monkeypatch, one_thread, clean_registry, capsys):
    monkeypatch.chdir(tmp_path)
    w = [str(v) for v in WIDTHS]
    assert main(["synthetic", "d", "--train", "2", "--val", "1", "--size", "24", "32", "--seed",
                           "1", "--base", "base.caffemodel", "--widths", *w, "--fc",
                           str(FC)]) == 0
    assert "2 train images" in capsys.readouterr().out
    assert main(["net", "voc-fcn32s", "--split", "train", "--solver", "--widths", *w, "--fc",
                 str(FC), "-o", "net"]) == 0
    assert main(["surgery", "transplant", "base.caffemodel", "--net", "net/train.prototxt",
                 "-o", "init.caffemodel"]) == 0
    assert main(["train", "--solver", "net/solver.prototxt", "--weights", "init.caffemodel",
                 "--data-root", "d", "--max-iter", "1"]) == 0
    assert (tmp_path / "snapshot" / "train_iter_1.caffemodel").is_file()
    out = capsys.readouterr().out
    assert "Solving train.prototxt" in out  # the official nets have no name: the file
    assert "data layer 'data' (Python voc_layers.SBDDSegDataLayer; tops data, label) <- " \
        "SBDSeg" in out
    # --batches names the source, and it wins over the reader of the data folder
    img = np.full((1, 3, 24, 32), 50.0, np.float32)
    np.savez("b.npz", **{"it/0/data": img, "it/0/label": np.ones((1, 1, 24, 32), np.float32)})
    assert main(["train", "--solver", "net/solver.prototxt", "--weights", "init.caffemodel",
                 "--data-root", "d", "--max-iter", "1", "--batches", "b.npz"]) == 0
    out = capsys.readouterr().out
    assert "<- NpzBatches b.npz (the given default source)" in out and "SBDSeg" not in out


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert main(["synthetic", str(tmp_path / "d"), "--size", "8", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcn-port: error:") and "--size" in err and err.count("\n") == 1
    with pytest.raises(UserInputError, match="widths"):
        synthetic.make_base_net(tmp_path / "b.caffemodel", (2, 4, 4), 8)
    assert not (tmp_path / "b.caffemodel").exists()
    # a --base in a missing folder is refused before any image is written
    assert main(["synthetic", str(tmp_path / "d2"), "--base",
                 str(tmp_path / "no" / "b.caffemodel"),
                 "--train", "1", "--val", "1"]) == 2
    err = capsys.readouterr().err
    assert "--base" in err and err.count("\n") == 1 and not (tmp_path / "d2").exists()


def test_demo_solver_keeps_the_official_fields():
    from pathlib import Path

    from fcn_port.port.formats.text import read_solver
    from fcn_port.reproduce.demo import recipe

    s, _ = read_solver(Path(recipe.HERE) / "solver.prototxt")
    # official (FCN_FACTS §1): the nets, weight decay, test never run by the solver, batch 1
    assert (s.train_net, list(s.test_net)) == ("train.prototxt", ["val.prototxt"])
    assert abs(s.weight_decay - 0.0005) < 1e-9
    assert (s.test_interval, s.test_initialization, s.iter_size) == (999999999, False, 1)
    assert s.snapshot_prefix == "snapshot/train" and s.average_loss == 20
    # changed for the demo, as the file's comment says
    assert s.type == "Adam" and abs(s.base_lr - 1e-3) < 1e-9 and s.max_iter == 3000


def test_recipe_steps_at_tiny_size(tmp_path, monkeypatch, one_thread, clean_registry):
    """The recipe's commands, run in this process instead of as child processes."""
    import os

    from fcn_port.reproduce.demo import recipe

    def run(argv, cwd=None, log=None):
        argv = [str(a) for a in argv]
        old = os.getcwd()
        os.chdir(cwd or old)
        try:
            assert argv[:2] == ["-m", "fcn_port.cli"] and main(argv[2:]) == 0, argv
        finally:
            os.chdir(old)

    monkeypatch.setattr(recipe, "run", run)
    out = tmp_path / "run"
    nets = recipe.prepare(out, n_train=2, n_val=2, size=(24, 32), widths=WIDTHS, fc=FC, iters=1,
                          log=lambda line: None)
    assert "max_iter: 1\n" in (nets / "solver.prototxt").read_text()
    snapshot, seconds, cpu = recipe.train(out, nets, log=lambda line: None)
    assert snapshot.name == "train_iter_1.caffemodel" and seconds > 0
    assert cpu > -1                   # children's CPU time: ~0 here, in-process
    voc = out / "data" / "pascal" / "VOC2011"
    metrics, shown = recipe.evaluate(snapshot, voc, n_show=2)
    assert metrics["images"] == 2 and len(shown) == 2 and 0 <= metrics["overall_acc"] <= 1
    recipe.heldout_png(shown, voc, out / "heldout.png")
    assert Image.open(out / "heldout.png").size == (3 * 32, 2 * 24)
    demo = recipe.pick_demo(voc)
    recipe.install(out, snapshot, demo, {"demo_id": demo}, tmp_path / "inst")
    assert sorted(p.name for p in (tmp_path / "inst").iterdir()) == \
        ["demo.jpg", "demo.json", "demo_gt.png", "heldout.png", "voc-fcn8s-demo.caffemodel"]
