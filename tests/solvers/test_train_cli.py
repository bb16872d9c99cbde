"""``fcn-port train`` end to end on the official voc-fcn32s solver (reduced width) and its errors;
``fcn-port parity`` on solver cases (--json rows, --rtol, --plot)."""
import json

import numpy as np
import pytest

from helpers import ORACLE
from fcn_port.cli import main
from fcn_port.port.formats.caffemodel import read_weights


def _batches(path, n=3, size=64, classes=5):
    rng = np.random.default_rng(0)
    d = {}
    for k in range(n):
        d[f"it/{k}/data"] = rng.normal(0, 60, (1, 3, size, size)).astype(np.float32)
        label = rng.integers(0, classes, (1, 1, size, size))
        label[..., :5, :] = 255  # void rows, ignored by the loss
        d[f"it/{k}/label"] = label.astype(np.uint8)
    np.savez(path, **d)
    return path


@pytest.fixture(scope="module")
def fcn32s(tmp_path_factory):
    out = tmp_path_factory.mktemp("voc-fcn32s")
    assert main(["net", "voc-fcn32s", "--split", "train", "--solver", "--widths", "4", "8", "16",
                 "32", "32", "--fc", "64", "--classes", "5", "-o", str(out)]) == 0
    return out


def test_train_runs_the_official_fcn32s_solver_on_an_npz(fcn32s, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    batches = _batches(tmp_path / "b.npz")
    assert main(["train", "--solver", str(fcn32s / "solver.prototxt"), "--batches", str(batches),
                 "--max-iter", "6", "--json"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    result = json.loads(lines[-1])
    # the official solver: test_net val.prototxt (not written), never tested; display 20
    assert lines[0].startswith("data layer 'data' (Python voc_layers.SBDDSegDataLayer; tops "
                               "data, label) <- NpzBatches ")
    assert lines[1].startswith("Test net(s) not built: test_interval 999999999")
    assert "Iteration 0, lr = 1e-10" in lines and "Learning Rate Policy: fixed" in lines
    assert result["iter"] == 6 and len(result["losses"]) == 6
    assert all(np.isfinite(result["losses"])) and result["losses"][0] > 1000  # summed loss
    assert "cycles back to batch 0" in err  # 3 batches for 6 iterations
    model = tmp_path / "snapshot" / "train_iter_6.caffemodel"  # snapshot_prefix snapshot/train
    assert (tmp_path / "snapshot" / "train_iter_6.solverstate").exists()
    assert set(read_weights(model).params) >= {"conv1_1", "fc6", "score_fr", "upscore"}
    rows = (tmp_path / "snapshot" / "train_log.csv").read_text().splitlines()
    assert len(rows) == 7 and result["plot"] == "snapshot/train_loss.png"
    # resume to 8 from the snapshot: continues the log
    assert main(["train", "--solver", str(fcn32s / "solver.prototxt"), "--batches", str(batches),
                 "--snapshot", "snapshot/train_iter_6.solverstate", "--max-iter", "8",
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert len((tmp_path / "snapshot" / "train_log.csv").read_text().splitlines()) == 9


def _fails(capsys, argv, *words):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("fcn-port: error: ")
    for w in words:
        assert w in err, err


def test_train_bad_input_is_one_line_and_exit_2(fcn32s, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    solver = str(fcn32s / "solver.prototxt")
    _fails(capsys, ["train", "--solver", str(tmp_path / "none.prototxt")], "no such file")
    _fails(capsys, ["train", "--solver", solver], "data layer 'data'",
           "voc_layers.SBDDSegDataLayer", "--batches")
    np.savez(tmp_path / "nolabel.npz", **{"it/0/data": np.zeros((1, 3, 64, 64), np.float32)})
    _fails(capsys, ["train", "--solver", solver, "--batches", "nolabel.npz"], "'label'")
    (tmp_path / "w.caffemodel").write_bytes(b"")
    (tmp_path / "s.solverstate").write_bytes(b"")
    _fails(capsys, ["train", "--solver", solver, "--weights", "w.caffemodel", "--snapshot",
                    "s.solverstate"], "not both")
    np.savez(tmp_path / "gap.npz", **{"it/1/data": np.zeros(1)})
    _fails(capsys, ["train", "--solver", solver, "--batches", "gap.npz"], "it/0")


def test_parity_runs_solver_cases_with_their_own_tolerance(tmp_path, capsys):
    cases = [str(ORACLE / "solver" / "lr_poly"), str(ORACLE / "layers" / "crop")]
    assert main(["parity", "--json", "--plot", str(tmp_path), *cases]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    solver, forward = rows
    steps = json.loads((ORACLE / "solver" / "lr_poly" / "case.json").read_text())["steps"]
    assert solver["kind"] == "solver" and solver["pass"] and len(solver["losses"]) == steps
    assert np.allclose(solver["losses"], solver["caffe_losses"], rtol=1e-5)
    assert forward["kind"] == "forward" and forward["pass"] and "losses" not in forward
    png = (tmp_path / "lr_poly_loss.png").read_bytes()
    assert png[:4] == b"\x89PNG" and not (tmp_path / "crop_loss.png").exists()
    # --rtol applies to solver cases too: nothing passes a zero tolerance after rounding
    assert solver["worst"] > 0
    assert main(["parity", "--rtol", "0", cases[0]]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_snapshot_latest_resumes_the_newest_or_starts_afresh(fcn32s, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.chdir(tmp_path)
    batches = str(_batches(tmp_path / "b.npz"))
    solver = str(fcn32s / "solver.prototxt")
    base = ["train", "--solver", solver, "--batches", batches, "--snapshot", "latest"]
    assert main(base + ["--max-iter", "2", "--quiet"]) == 0  # nothing yet: from the fillers
    assert "no snapshot yet" not in capsys.readouterr().err  # --quiet: no line
    assert main(base + ["--max-iter", "4"]) == 0
    assert "resuming from snapshot/train_iter_2.solverstate" in capsys.readouterr().err
    log = (tmp_path / "snapshot" / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == ["0", "1", "2", "3"]
    # a newest state whose weights file is gone is skipped for the one before it
    (tmp_path / "snapshot" / "train_iter_4.caffemodel").unlink()
    assert main(base + ["--max-iter", "5"]) == 0
    assert "resuming from snapshot/train_iter_2.solverstate" in capsys.readouterr().err


@pytest.mark.parametrize("argv, names", [
    (["--snapshot", "{d}/w.caffemodel"], "--weights"),   # advised a --lenient that is not
    (["--batches", "{d}/photo.jpg"], "photo.jpg"),        # numpy's allow_pickle advice
    (["--data-root", "{d}/photo.jpg"], "--data-root"),
])
def test_train_messages_say_what_is_wrong(fcn32s, tmp_path, monkeypatch, capsys, argv, names):
    from fcn_port.port import DEFAULT_WEIGHTS

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.caffemodel").write_bytes(DEFAULT_WEIGHTS.read_bytes())
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    _batches(tmp_path / "b.npz", n=1)
    argv = [a.format(d=tmp_path) for a in argv]
    base = ["train", "--solver", str(fcn32s / "solver.prototxt"), "--quiet"]
    base += [] if "--batches" in argv else ["--batches", str(tmp_path / "b.npz")]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names in err, err
    assert "lenient" not in err and "allow_pickle" not in err
    assert not (tmp_path / "snapshot").exists()


def test_a_folder_given_as_solver_is_called_a_folder(tmp_path, capsys):
    assert main(["train", "--solver", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("change, words", [
    ('lr_policy: "step"\nstepsize: 0', ("stepsize", "> 0")),
    ("base_lr: nan", ("base_lr", "nan")),
    ("gamma: 1e300", ("gamma", "inf")),  # float32: inf
    ("momentum: nan", ("momentum", "nan")),
    ("clip_gradients: nan", ("clip_gradients",)),
])
def test_solver_values_caffe_checks_late_are_refused_before_any_file(tmp_path, monkeypatch,
                                                                    capsys, change, words):
    """Caffe checks the lr policy's fields at the first update, and trains on with NaN rates:
    they left ``<prefix>_log.csv`` behind (issue 16). Now nothing is written."""
    case = ORACLE / "solver" / "lr_exp"
    monkeypatch.chdir(tmp_path)
    keys = {line.split(":")[0] for line in change.splitlines()}
    kept = [line for line in (case / "solver.prototxt").read_text().splitlines()
            if line.split(":")[0] not in keys | {"snapshot_prefix"}]
    (tmp_path / "s.prototxt").write_text("\n".join(kept + change.splitlines() +
                                                   ['snapshot_prefix: "out/s"']) + "\n")
    (tmp_path / "train.prototxt").write_bytes((case / "train.prototxt").read_bytes())
    _fails(capsys, ["train", "--solver", "s.prototxt", "--weights",
                    str(case / "init.caffemodel"), "--batches", str(case / "batches.npz")],
           *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.prototxt", "train.prototxt"]
