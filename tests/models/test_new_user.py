"""Issue 15, what a new user hit (models side): each finding reproduced as the user met it,
through the CLI where they used it."""
import os
import subprocess
import sys

import numpy as np
import pytest

from fcn_port import models
from fcn_port.cli import main
from fcn_port.models import deploy_net
from fcn_port.port.errors import CaffeFormatError
from fcn_port.port.formats.caffemodel import read_weights, write_weights
from fcn_port.port.net import from_prototxt
from fcn_port.port.formats.text import write_text
from helpers import kill_at_hold
import vocdata as VOC



@pytest.fixture
def nan_model(tmp_path):
    """The bundled demo voc-fcn8s with one NaN in score_pool3's weights."""
    from fcn_port.port import DEFAULT_WEIGHTS

    w = read_weights(DEFAULT_WEIGHTS)
    params = {k: [a.copy() for a in v] for k, v in w.params.items()}
    params["score_pool3"][0].reshape(-1)[3] = np.nan
    path = tmp_path / "nan.caffemodel"
    write_weights(params, path, net=w.net)
    return path


def _one_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fcn-port: error:"), err
    return err


@pytest.mark.parametrize("argv", [
    ["infer", "{m}", "-o", "{d}/out"],
    ["export", "{m}", "-o", "{d}/e.caffemodel"],
    ["export", "{m}", "--onnx", "{d}/e.onnx"],
    ["bench", "{m}", "--size", "40", "40", "--runs", "1"],
    ["eval", "{m}", "--dataset", "voc", "--root", "{d}/VOC2011"],
    ["convert", "{m}", "-o", "{d}/c.pt"],
])
def test_nan_weights_are_refused_by_every_verb_that_loads_them(nan_model, tmp_path, capsys,
                                                               argv):
    VOC.make_voc(tmp_path / "VOC2011", n=1)
    argv = [a.format(m=nan_model, d=tmp_path) for a in argv]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(argv) == 2
    err = _one_line(capsys)
    assert str(nan_model) in err and "NaN/Inf" in err and "layer 'score_pool3' blob 0" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before      # nothing written


def test_nan_weights_are_refused_from_python(nan_model, tmp_path):
    with pytest.raises(CaffeFormatError, match="score_pool3"):
        models.load(nan_model)
    write_text(deploy_net("voc-fcn8s"), tmp_path / "deploy.prototxt")
    with pytest.raises(CaffeFormatError, match="score_pool3"):
        from_prototxt(tmp_path / "deploy.prototxt", weights=nan_model)


def test_a_convert_killed_mid_write_leaves_no_part_after_the_next_run(tmp_path):
    """SIGKILL runs no cleanup: the hidden ``.NAME.pt.<pid>-XXXX.part`` a killed convert left is
    removed by the next run writing that output (a live writer's part is kept)."""
    kill_at_hold([sys.executable, "-m", "fcn_port.cli", "convert", "-o", "demo.pt"], "demo.pt",
                 cwd=tmp_path)
    parts = [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert parts and not (tmp_path / "demo.pt").exists()
    live = tmp_path / f".demo.pt.{os.getpid()}-live.part"
    live.write_bytes(b"")
    run = subprocess.run([sys.executable, "-m", "fcn_port.cli", "convert", "-o", "demo.pt"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["demo.pt", live.name]), left


BAD = [  # argv, what the one line must name; each exited 1 with an internal error, was
    # accepted, or misled (the findings)
    (["export", "{ckpt}", "--onnx", "{d}/x.onnx", "--size", "0", "0"], "--size 0 0"),
    (["export", "{ckpt}", "--onnx", "{d}/x.onnx", "--size", "100000", "100000"], "--size"),
    (["bench", "--size", "50000", "50000"], "--size 50000 50000"),
    (["bench", "--threads", "-3"], "--threads"),
    (["bench", "--threads", "0"], "--threads"),
    (["parity", "{oracle}", "--rtol", "-1"], "--rtol"),
    (["parity", "{oracle}", "--model", "{d}/trunc.pt"], "trunc.pt"),
    (["export", "{ckpt}", "--h5", "--onnx", "{d}/x.onnx"], "--h5"),
    (["export", "{ckpt}", "-o", "{d}/e.jpg"], "e.jpg"),
    (["convert", "{demo}", "-o", "{d}/x.txt"], "x.txt"),
    (["convert", "{demo}", "--prototxt", "{d}/p.prototxt", "-o", "{d}/c.pt"], "--prototxt"),
    (["convert", "{d}/readme.caffemodel", "-o", "{d}/r.pt"], "readme.caffemodel"),
    (["inspect", "{d}/readme.caffemodel"], "readme.caffemodel"),
    (["infer", "{d}/trunc.pt", "-o", "{d}/out"], "trunc.pt"),
]


@pytest.mark.parametrize("argv, names", BAD, ids=[" ".join(a[:2]) + " " + n for a, n in BAD])
def test_bad_numbers_names_and_ignored_options_are_one_line(tmp_path, capsys, argv, names):
    from fcn_port.port import DEFAULT_WEIGHTS
    from helpers import ORACLE

    ckpt = tmp_path / "c0.pt"
    assert main(["convert", str(DEFAULT_WEIGHTS), "-o", str(ckpt)]) == 0
    (tmp_path / "trunc.pt").write_bytes(ckpt.read_bytes()[:100000])
    write_text(deploy_net("voc-fcn8s"), tmp_path / "p.prototxt")
    readme = "# fcn-port\n\nCaffe's Fully Convolutional Networks in PyTorch.\n"
    (tmp_path / "readme.caffemodel").write_text(readme)
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = [a.format(ckpt=ckpt, d=tmp_path, demo=DEFAULT_WEIGHTS,
                     oracle=ORACLE / "fcn" / "voc-fcn8s") for a in argv]
    assert main(argv) == 2
    err = _one_line(capsys)
    assert names in err and "internal error" not in err, err
    assert "prototxt (text)" not in err and "lenient" not in err and "allow_pickle" not in err
    if "trunc.pt" in names:  # torch's own message was cut mid-sentence
        assert "is)" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_inspect_a_checkpoint_names_every_layer_type(tmp_path, capsys, ext):
    from helpers import ORACLE

    import json

    fcn, caffenet = tmp_path / f"fcn{ext}", tmp_path / f"v1{ext}"
    assert main(["convert", "-o", str(fcn)]) == 0
    v1 = ORACLE / "formats" / "v1_legacy"
    assert main(["convert", str(v1 / "weights.caffemodel"), "--prototxt",
                 str(v1 / "net.prototxt"), "-o", str(caffenet)]) == 0
    capsys.readouterr()
    assert main(["inspect", "--json", str(fcn), str(caffenet)]) == 0
    a, b = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    types = {r["name"]: r["type"] for r in a["layers"]}
    assert types["conv1_1"] == "Convolution" and types["upscore8"] == "Deconvolution"
    assert all(types.values()) and all(r["tops"] for r in a["layers"])
    assert all(r["type"] for r in b["layers"])


def test_infer_takes_folders_and_patterns_and_names_the_classes(tmp_path, capsys):
    from PIL import Image

    from fcn_port.models import vis
    from fcn_port.port import DEFAULT_WEIGHTS

    demo = models.verbs.DEMO_IMAGE
    ckpt = tmp_path / "demo.pt"
    assert main(["convert", "-o", str(ckpt)]) == 0
    (tmp_path / "photos").mkdir()
    for name in ("a.jpg", "b.JPG", "notes.txt"):
        (tmp_path / "photos" / name).write_bytes(demo.read_bytes())
    assert main(["infer", str(ckpt), str(tmp_path / "photos"), "-o", str(tmp_path / "f"),
                 "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == \
        ["a.png", "a_overlay.png", "b.png", "b_overlay.png"]
    assert main(["infer", str(ckpt), str(tmp_path / "photos" / "*.jpg"), "-o",
                 str(tmp_path / "g"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["a.png", "a_overlay.png"]
    capsys.readouterr()  # the progress bars
    for pattern in (tmp_path / "none" / "*.jpg", tmp_path / "f" / "*.jpeg"):
        assert main(["infer", str(ckpt), str(pattern), "-o", str(tmp_path / "h")]) == 2
        assert str(pattern) in _one_line(capsys)
    # the overlay: vis_seg's image, exactly (--no-legend), with a legend strip below it
    assert main(["infer", str(ckpt), str(demo), "-o", str(tmp_path / "n"), "--no-legend",
                 "-q"]) == 0
    labels = np.asarray(Image.open(tmp_path / "f" / "a.png"))
    plain = np.asarray(Image.open(tmp_path / "n" / "demo_overlay.png"))
    with_key = np.asarray(Image.open(tmp_path / "f" / "a_overlay.png").convert("RGB"))
    rgb = np.asarray(Image.open(demo).convert("RGB"))
    assert np.array_equal(plain, vis.overlay(rgb, labels))
    assert with_key.shape[0] > plain.shape[0] and np.array_equal(with_key[:plain.shape[0]], plain)
    strip = with_key[plain.shape[0]:].reshape(-1, 3)
    for c in vis.present(labels):  # each class's colour is in the key
        assert (strip == vis.VOC_PALETTE[c]).all(axis=1).any(), c
    assert DEFAULT_WEIGHTS.exists()
