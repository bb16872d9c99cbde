"""Issue 11, what a new user hit (models side): each finding reproduced as a user met it.

A converted legacy (V1) checkpoint that must load; expand-score -> convert -> infer; nets with no
classes; --depth for a model without that input; infer's --max-size, progress and memory refusal.
"""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from fcn_port import models
from fcn_port.cli import main
from fcn_port.models import infer, memory
from fcn_port.models.zoo import OFFICIAL
from fcn_port.port import DEFAULT_WEIGHTS
from fcn_port.port.errors import UserInputError
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.port.formats.text import read_net
from fcn_port.port.net import CaffeNet
from helpers import ORACLE, upsample_filt

V1 = ORACLE / "formats" / "v1_legacy"


def test_converted_legacy_v1_checkpoint_loads_and_runs_as_the_interpreter(tmp_path):
    out = tmp_path / "v1.pt"
    assert main(["convert", str(V1 / "weights.caffemodel"), "--prototxt",
                 str(V1 / "net.prototxt"), "-o", str(out)]) == 0
    net = models.load(out)  # failed: "cannot copy param 1 of layer 'conv1': (1, 1, 1, 5) ..."
    interp = CaffeNet(read_net(V1 / "net.prototxt")[0], "TEST")
    interp.load_caffemodel(V1 / "weights.caffemodel", strict=True)
    x = torch.rand(1, 3, 19, 23) * 255 - 120
    with torch.no_grad():
        assert torch.equal(net(data=x)["prob"], interp(data=x)["prob"])
    # the bias was stored 4-D (1, 1, 1, 5) in the V1 file; the checkpoint holds the net's (5,)
    assert read_weights(V1 / "weights.caffemodel").params["conv1"][1].shape == (1, 1, 1, 5)
    sd = torch.load(out, weights_only=True)["state_dict"]
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "conv1.0": (5, 3, 3, 3), "conv1.1": (5,), "fc6.0": (6, 60495), "fc6.1": (6,)}
    assert main(["export", str(out), "-o", str(tmp_path / "back.caffemodel")]) == 0
    back = read_weights(tmp_path / "back.caffemodel").params
    assert np.array_equal(back["conv1"][1].reshape(-1), sd["conv1.1"].numpy())


def test_checkpoint_written_with_legacy_dims_still_loads(tmp_path):
    """Checkpoints the earlier convert wrote keep the V1 file's (1, 1, 1, 5) dims: they load."""
    out = tmp_path / "v1.pt"
    assert main(["convert", str(V1 / "weights.caffemodel"), "--prototxt",
                 str(V1 / "net.prototxt"), "-o", str(out)]) == 0
    ck = torch.load(out, weights_only=True)
    raw = read_weights(V1 / "weights.caffemodel").params
    ck["state_dict"] = {f"{k}.{i}": torch.from_numpy(a.copy()) for k, blobs in raw.items()
                        for i, a in enumerate(blobs)}
    assert ck["state_dict"]["fc6.1"].shape == (1, 1, 1, 6)
    torch.save(ck, out)
    net = models.load(out)
    assert torch.equal(net.state_dict()["layers.fc6.1"], torch.from_numpy(raw["fc6"][1].ravel()))


# --- net --classes 0, infer --depth for a model without depth ---------------------------------

@pytest.mark.parametrize("option", [["--classes", "0"], ["--widths", "8", "16", "0", "64", "64"],
                                    ["--fc", "0"], ["--classes", "33", "0"]])
def test_net_refuses_geometry_that_cannot_run(tmp_path, capsys, option):
    name = "siftflow-fcn8s" if option[1:] == ["33", "0"] else "voc-fcn8s"
    assert main(["net", name, "-o", str(tmp_path / "n"), *option]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and option[0] in err and ">= 1" in err
    assert not (tmp_path / "n").exists()


def test_infer_depth_for_a_model_without_depth_names_its_inputs(tmp_path, capsys):
    img = _png(tmp_path / "a.png", np.zeros((8, 10, 3), np.uint8))
    depth = tmp_path / "d.png"
    Image.fromarray(np.full((8, 10), 1000, np.uint16)).save(depth)
    assert main(["infer", str(DEFAULT_WEIGHTS), img, "--depth", str(depth),
                 "-o", str(tmp_path / "o")]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "--depth" in err and "data (color)" in err
    assert "color-d" in err and "'color'" not in err  # the model has no input named color
    assert not (tmp_path / "o").exists()
    with pytest.raises(UserInputError, match="--hha"):
        infer.infer_files(models.load(DEFAULT_WEIGHTS), [img], tmp_path / "o", hha=[img])


# --- infer: --max-size, progress, memory ------------------------------------------------------

def _png(path, array):
    Image.fromarray(np.asarray(array)).save(path)
    return str(path)


class PatternNet(torch.nn.Module):
    """Scores whose argmax at (r, c) is (3 r + c) % 5 of the size it is given; records it."""

    meta = {"model": "pattern", "inputs": ["data"], "outputs": ["score"], "dataset": "voc",
            "mean": [0.0, 0.0, 0.0]}

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        n, _, h, w = x.shape
        lab = (3 * torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 5
        return torch.nn.functional.one_hot(lab, 5).permute(2, 0, 1)[None].float().expand(n, -1,
                                                                                       -1, -1)


def test_max_size_runs_small_and_scales_labels_back_by_nearest(tmp_path):
    img = _png(tmp_path / "a.png", np.full((30, 47, 3), 200, np.uint8))
    net = PatternNet()
    infer.infer_files(net, [img], tmp_path / "o", max_size=20)
    # longer side 47 -> 20: 30 * 20 / 47 = 12.77 -> 13 rows
    assert tuple(net.seen[0].shape) == (1, 3, 13, 20)
    # a constant image stays that constant (its meta's mean is 0) however it is resampled
    np.testing.assert_allclose(net.seen[0].numpy(), 200, rtol=0, atol=1e-4)
    small = (3 * np.arange(13)[:, None] + np.arange(20)[None, :]) % 5
    rows = np.floor((np.arange(30) + 0.5) * 13 / 30).astype(int)
    cols = np.floor((np.arange(47) + 0.5) * 20 / 47).astype(int)
    got = np.array(Image.open(tmp_path / "o" / "a.png"))
    assert got.shape == (30, 47) and np.array_equal(got, small[rows][:, cols])
    # not downscaled when it already fits: labels as the net made them
    net = PatternNet()
    infer.infer_files(net, [img], tmp_path / "p", max_size=47)
    assert tuple(net.seen[0].shape[2:]) == (30, 47)
    assert np.array_equal(np.array(Image.open(tmp_path / "p" / "a.png")),
                          (3 * np.arange(30)[:, None] + np.arange(47)[None, :]) % 5)


def test_cli_max_size_with_the_real_model_keeps_the_image_size(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = _png(tmp_path / "s.png", rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    assert main(["infer", str(DEFAULT_WEIGHTS), img, "--max-size", "32", "-o",
                 str(tmp_path / "o")]) == 0
    assert Image.open(tmp_path / "o" / "s.png").size == (80, 48)
    over = Image.open(tmp_path / "o" / "s_overlay.png").size  # + the legend strip below
    assert over[0] == 80 and over[1] >= 48
    assert main(["infer", str(DEFAULT_WEIGHTS), img, "--max-size", "8"]) == 2
    assert "--max-size" in capsys.readouterr().err


def test_progress_bar_over_several_images(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "load", lambda path, map_location="cpu": PatternNet(),
                        raising=False)
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    imgs = [_png(tmp_path / f"{k}.png", np.zeros((6, 7, 3), np.uint8)) for k in "ab"]
    assert main(["infer", str(ckpt), *imgs, "-o", str(tmp_path / "o"), "-q"]) == 0
    assert "2/2" in capsys.readouterr().err
    assert main(["infer", str(ckpt), imgs[0], "-o", str(tmp_path / "o"), "-q"]) == 0
    assert capsys.readouterr().err == ""  # one image, stderr no terminal: no bar


def test_memory_estimate_formula_and_fitting_size():
    meta = OFFICIAL["voc-fcn8s"].meta()
    # hand-computed: 4 bytes x (500 + 198)^2 x (3 x 64 + 1.5 x 21 + 25)
    assert memory.peak_bytes(meta, 500, 500) == 4 * 698 * 698 * 248.5
    siftflow = OFFICIAL["siftflow-fcn8s"].meta()  # classes 33 + 3 over both heads
    assert memory.peak_bytes(siftflow, 100, 100) == int(4 * 298 * 298 * (192 + 54 + 25))
    assert memory.peak_bytes({"model": "caffenet"}, 100, 100) is None
    budget = 2e9
    n = memory.fitting_size(meta, 3024, 4032, budget)
    assert memory.peak_bytes(meta, *memory.scaled_size(3024, 4032, n)) <= budget
    assert memory.peak_bytes(meta, *memory.scaled_size(3024, 4032, n + 1)) > budget
    assert memory.scaled_size(3024, 4032, 500) == (375, 500)


def test_infer_refuses_what_memory_cannot_hold_and_says_what_fits(tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 60 * 10**6)
    img = _png(tmp_path / "big.png", np.zeros((600, 800, 3), np.uint8))
    out = tmp_path / "o"
    assert main(["infer", str(DEFAULT_WEIGHTS), img, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "big.png" in err and "800 x 600" in err
    assert "0.1 GB is available" in err and "--force" in err
    assert not out.exists()
    n = int(re.search(r"--max-size (\d+)", err).group(1))
    meta = models.load(DEFAULT_WEIGHTS).meta
    # the suggestion leaves headroom (issue 15: it used all of the memory): a quarter free
    assert memory.peak_bytes(meta, *memory.scaled_size(600, 800, n)) <= 0.75 * 60 * 10**6
    assert memory.peak_bytes(meta, *memory.scaled_size(600, 800, n + 1)) > 0.75 * 60 * 10**6
    assert main(["infer", str(DEFAULT_WEIGHTS), img, "-o", str(out), "--max-size", str(n),
                 "-q"]) == 0
    assert Image.open(out / "big.png").size == (800, 600)


# --- surgery expand-score -> convert -> infer -------------------------------------------------

def test_expand_score_recipe_converts_and_infers_keeping_the_old_classes(tmp_path, capsys):
    wide, ckpt = tmp_path / "wide.caffemodel", tmp_path / "wide.pt"
    assert main(["surgery", "expand-score", str(DEFAULT_WEIGHTS), "--classes", "25",
                 "-o", str(wide)]) == 0
    assert main(["convert", str(wide), "-o", str(ckpt)]) == 0  # was: upscore2.0 (21, 21, 4, 4)
    img = _png(tmp_path / "a.png", np.random.default_rng(1).integers(0, 256, (20, 30, 3),
                                                                      dtype=np.uint8))
    assert main(["infer", str(ckpt), img, "-o", str(tmp_path / "o"), "-q"]) == 0
    assert Image.open(tmp_path / "o" / "a.png").size == (30, 20)
    old, new = models.load(DEFAULT_WEIGHTS), models.load(ckpt)
    assert new.meta["classes"] == 25
    x = torch.rand(1, 3, 20, 30) * 255 - 120
    with torch.no_grad():
        a, b = old(x), new(x)
    # the new classes' score rows are 0 and the upsamplers map class i only to i for them:
    # the first 21 score maps are the old net's, the 4 new ones are 0
    assert torch.allclose(b[:, :21], a, atol=1e-5, rtol=0) and b[:, 21:].abs().max() == 0
    # the upsampler's new diagonal is the official bilinear kernel, the old block is kept
    src, dst = read_weights(DEFAULT_WEIGHTS).params, read_weights(wide).params
    up = dst["upscore8"][0]
    assert np.array_equal(up[:21, :21], src["upscore8"][0])
    for i in range(21, 25):
        assert np.array_equal(up[i, i], upsample_filt(16))
    assert not up[21:, :21].any() and not up[:21, 21:].any() and not up[21, 22].any()


def test_expand_score_one_layer_of_an_8s_says_what_else_is_needed(tmp_path, capsys):
    out = tmp_path / "w.caffemodel"
    assert main(["surgery", "expand-score", str(DEFAULT_WEIGHTS), "--layer", "score_fr",
                 "--classes", "25", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "score_pool4" in err and "score_pool3" in err and "--layer" in err
    assert not out.exists()


def test_infer_checks_memory_from_the_header_before_decoding_any_pixel(tmp_path, capsys,
                                                                       monkeypatch):
    """A small PNG that declares a large image (a 12000 x 12000 one is 140 KB) is refused from
    its header: no pixel is decoded before the memory check."""
    from PIL import ImageFile

    from fcn_port.models import preprocess

    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 60 * 10**6)
    img = _png(tmp_path / "big.png", np.zeros((1500, 2000, 3), np.uint8))
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda im: decoded.append(im) or real_load(im))
    assert preprocess.image_size(img) == (1500, 2000) and not decoded
    assert main(["infer", str(DEFAULT_WEIGHTS), img, "-o", str(tmp_path / "o")]) == 2
    assert "--max-size" in capsys.readouterr().err
    assert not [im for im in decoded if im.size == (2000, 1500)]


@pytest.mark.parametrize("case", ["lrn", "crop"])
def test_infer_and_bench_refuse_an_interpreter_checkpoint_in_one_line(tmp_path, capsys, case):
    """An interpreter checkpoint (any Caffe net) has no image preprocessing and returns blobs by
    name: infer ended in an internal error, or a net error about an unfed blob (issue 16)."""
    from fcn_port.port.errors import NetError

    layer = ORACLE / "layers" / case
    ckpt = tmp_path / "net.pt"
    assert main(["convert", str(layer / "weights.caffemodel"), "--prototxt",
                 str(layer / "net.prototxt"), "-o", str(ckpt)]) == 0
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(image)
    capsys.readouterr()
    for argv in (["infer", str(ckpt), str(image), "-o", str(tmp_path / "out")],
                 ["bench", str(ckpt)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "interpreter checkpoint" in err and "inputs: data" in err
        assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "net.pt"]
    with pytest.raises(NetError):  # from Python, predict says why, before any argmax
        infer.predict(models.load(ckpt), torch.zeros(1, 7, 6, 5))
