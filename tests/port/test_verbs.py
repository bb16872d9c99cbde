"""port's verbs as a user runs them: ``inspect`` on every kind of file, ``parity`` on oracle
cases, and ``layers`` (the table the README carries). ``offsets`` and ``surgery`` are tested
with coord_map and surgery.
"""
import json
import subprocess
import sys

import pytest

from fcn_port.cli import main
from fcn_port.port.parity import run_case
from helpers import ORACLE, REPO


def test_inspect_default_runs_on_the_bundled_model(capsys):
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert "voc-fcn8s-tiny.caffemodel: binary caffemodel, format V2" in out
    assert "score_fr" in out and "total: " in out


@pytest.mark.parametrize("rel,kind,fmt", [
    ("fcn/voc-fcn8s/weights.caffemodel", "caffemodel", "binary"),
    ("fcn/voc-fcn8s/weights.caffemodel.h5", "caffemodel", "HDF5"),
    ("fcn/voc-fcn8s/net.prototxt", "net", "prototxt"),
    ("formats/v1_legacy/weights.caffemodel", "caffemodel", "binary"),
    ("solver/lr_poly/solver.prototxt", "solver", "prototxt"),
    ("solver/sgd_step_itersize/snapshots/snap_iter_5.solverstate", "solverstate", "binary"),
    ("solver/sgd_fcn8s_atonce_hdf5/snapshots/snap_iter_4.solverstate.h5", "solverstate", "HDF5"),
])
def test_inspect_json_on_every_kind_of_file(rel, kind, fmt, capsys):
    assert main(["inspect", "--json", str(ORACLE / rel)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["kind"], report["format"]) == (kind, fmt)
    if kind == "caffemodel":
        shapes = {l["name"]: l["params"] for l in report["layers"]}
        assert report["total_params"] == sum(l["count"] for l in report["layers"]) > 0
        if "v1_legacy" in rel:
            assert report["version"] == "V1" and report["upgrades"]
            assert shapes["fc6"] and len(shapes["fc6"][0]) == 4  # legacy 4-D dims as stored
        else:
            assert shapes["score_fr"] == [[21, 64, 1, 1], [21]]
    if kind == "solverstate":
        assert report["iter"] in (4, 5) and report["history"]


def test_parity_cli_table_json_and_exit_status(tmp_path):
    cases = [str(ORACLE / "layers" / "crop"), str(ORACLE / "solver" / "lr_poly")]
    run = subprocess.run([sys.executable, "-m", "fcn_port.cli", "parity", *cases],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines()[1:]}
    assert rows["crop"][1] == "forward" and rows["crop"][-1] == "pass"
    assert rows["lr_poly"][1] == "solver" and rows["lr_poly"][-1] == "pass"  # Caffe's trajectory
    run = subprocess.run([sys.executable, "-m", "fcn_port.cli", "parity", "--json", cases[0]],
                         capture_output=True, text=True)
    r = json.loads(run.stdout)
    assert {"case", "kind", "compared", "worst", "where", "pass"} <= set(r) and r["pass"]
    run = subprocess.run([sys.executable, "-m", "fcn_port.cli", "parity", "--rtol", "0", cases[0]],
                         capture_output=True, text=True)
    worst = run_case(cases[0])["worst"]
    assert run.returncode == (1 if worst > 0 else 0)


def test_readme_lists_exactly_the_registered_layers():
    from fcn_port.port.verbs import layer_table

    assert layer_table() in (REPO / "README.md").read_text()


BVLC_MASTER = """AbsVal Accuracy ArgMax BNLL BatchNorm BatchReindex Bias Clip Concat ContrastiveLoss
Convolution Crop Data Deconvolution Dropout DummyData ELU Eltwise Embed EuclideanLoss Exp Filter
Flatten HDF5Data HDF5Output HingeLoss Im2col ImageData InfogainLoss InnerProduct Input LRN LSTM
LSTMUnit Log MVN MemoryData MultinomialLogisticLoss PReLU Parameter Pooling Power Python RNN ReLU
Reduction Reshape SPP Scale Sigmoid SigmoidCrossEntropyLoss Silence Slice Softmax SoftmaxWithLoss
Split Swish TanH Threshold Tile WindowData""".split()  # every REGISTER_LAYER_CLASS/CREATOR


def test_every_layer_type_of_bvlc_master_is_registered():
    from fcn_port.port.layers import registry

    assert len(BVLC_MASTER) == 61 and not set(BVLC_MASTER) - set(registry.names())


def test_inspect_escapes_what_a_file_names_and_errors_too(tmp_path, capsys):
    """A layer name holding ESC/OSC, CR and a newline could rewrite the user's terminal or
    forge an output line; a file name likewise in an error (issue 16)."""
    import numpy as np

    from fcn_port.cli import main
    from fcn_port.port.formats.caffemodel import write_weights

    evil = "evil\x1b]0;pwned\x07\rname\nfake: line"
    write_weights({evil: [np.ones((2, 2), np.float32)]}, tmp_path / "esc.caffemodel")
    assert main(["inspect", str(tmp_path / "esc.caffemodel")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert not any(line.startswith("fake: line") for line in out.splitlines())
    bad = tmp_path / "x\x1b[2Jy\rz.caffemodel"
    bad.write_bytes(b"\x08" + b"\xff" * 16)
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\r" not in err
