"""The Solve loop (solvers/train.py): same arithmetic as stepping the Solver by hand, Caffe's log
lines, test nets, snapshots, bit-exact resume in both formats, the CSV log and PNG, signals,
and non-finite values stopping training."""
import os
import re
import signal

import numpy as np
import pytest
import torch

from fcn_port.port.errors import UserInputError
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.solvers.data import NpzBatches
from fcn_port.solvers.train import NonFiniteError, Trainer


def _train(folder, lines=None, **kw):
    kw.setdefault("sources", NpzBatches(folder / "b.npz"))
    t = Trainer(folder / "solver.prototxt", echo=(lines.append if lines is not None else
                                                  (lambda line: None)), progress=False, **kw)
    return t, t.solve()


@pytest.fixture
def folder(tmp_path, kit, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snapshot names are relative to the current directory
    return kit.make_folder(tmp_path / "net", 'weights: "init.caffemodel"\niter_size: 2\n'
                                             "max_iter: 5\ndisplay: 2\naverage_loss: 3\n")


def test_loop_equals_the_solver_stepped_by_hand_and_logs_as_caffe(folder, kit):
    lines = []
    t, result = _train(folder, lines)
    solver, net, losses = kit.manual_run(folder, 5)
    assert result["losses"] == losses and result["iter"] == 5
    ours, ref = kit.params_of(t.net), kit.params_of(net)
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    assert lines[0].startswith("data layer 'data' (Input; tops data) <- NpzBatches ")
    assert lines[1].startswith("data layer 'label' (Input; tops label) <- NpzBatches ")
    assert lines[2] == "Solving " + (t.net.name or "train.prototxt")  # unnamed: its file
    assert lines[3] == "Learning Rate Policy: step"
    assert "Iteration 0, lr = 0.01" in lines and "Iteration 4, lr = 0.005" in lines
    shown = [float(m.group(1)) for m in (re.fullmatch(r"Iteration 4, loss = (\S+)", x)
                                         for x in lines) if m]
    # smoothed over average_loss 3: iterations 2, 3, 4
    assert shown and shown[0] == pytest.approx(np.mean(losses[2:5]), rel=1e-5)
    out = [x for x in lines if "Train net output #0: loss = " in x]
    assert len(out) == 3 and out[0].endswith("loss)")  # iterations 0, 2, 4, with "(* 1 = ...)"
    assert lines[-1] == "Optimization Done."
    # snapshot_after_train (no 'snapshot' set): one pair at the end, named as Caffe names them
    assert result["snapshots"] == [("snap/tiny_iter_5.caffemodel", "snap/tiny_iter_5.solverstate")]
    assert "Snapshotting to binary proto file snap/tiny_iter_5.caffemodel" in lines
    rows = (folder.parent / "snap/tiny_log.csv").read_text().splitlines()
    assert rows[0] == "iter,loss,smoothed_loss,lr" and len(rows) == 6
    assert float(rows[1].split(",")[1]) == pytest.approx(losses[0])
    png = (folder.parent / "snap/tiny_loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_resume_from_a_snapshot_is_bit_exact(folder, kit, fmt):
    with open(folder / "solver.prototxt", "a") as f:
        f.write(f"snapshot: 2\nsnapshot_format: {fmt}\n")
    full, _ = _train(folder, max_iter=5)
    ext = ".solverstate.h5" if fmt == "HDF5" else ".solverstate"
    assert os.path.exists("snap/tiny_iter_4" + ext)
    lines = []
    resumed, result = _train(folder, lines, snapshot="snap/tiny_iter_2" + ext)
    assert lines[2].startswith("Restoring previous solver status from snap/tiny_iter_2")
    assert result["iter"] == 5 and result["losses"] == full.losses[2:]
    a, b = kit.params_of(full.net), kit.params_of(resumed.net)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(x, y) for x, y in zip(full.solver.history, resumed.solver.history))
    rows = (folder.parent / "snap/tiny_log.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 1, 2, 3, 4]  # earlier rows kept


@pytest.mark.filterwarnings("ignore::fcn_port.solvers.data.DataWarning")  # its 3 test batches cycle on purpose
def test_test_nets_share_the_weights_and_average_their_outputs(folder, kit):
    kit.make_batches(folder / "val.npz", 3, seed=7)
    with open(folder / "solver.prototxt", "a") as f:
        f.write('test_net: "train.prototxt"\ntest_iter: 2\ntest_interval: 4\n')
    lines = []
    t, result = _train(folder, lines, test_sources=NpzBatches(folder / "val.npz"))
    assert "Iteration 0, Testing net (#0)" in lines  # test_initialization defaults to true
    assert "Iteration 4, Testing net (#0)" in lines
    assert t.tests[0].net.layers["conv1"].blob(0) is t.net.layers["conv1"].blob(0)
    # the test at iteration 4 read val batches 2 and 0 (2 per test, cycling over 3)
    val = NpzBatches(folder / "val.npz")
    _, net, _ = kit.manual_run(folder, 4)
    with torch.no_grad():
        want = np.mean([float(net(**{k: torch.from_numpy(v) for k, v in val[i].items()})["loss"])
                        for i in (2, 0)], dtype=np.float32)
    at4 = [r for r in result["tests"] if r["iter"] == 4][0]["outputs"]
    assert at4[0][0] == "loss" and at4[0][1] == pytest.approx(float(want), rel=1e-5)
    assert any(x.startswith("    Test net output #0: loss = ") for x in lines)


def test_test_nets_are_built_only_when_a_test_is_due(folder):
    with open(folder / "solver.prototxt", "a") as f:
        f.write('test_net: "missing_val.prototxt"\ntest_iter: 736\ntest_interval: 999999999\n'
                "test_initialization: false\n")
    lines = []
    t, result = _train(folder, lines)  # FCN's official solvers: never tests, val not needed
    assert t.tests == [] and result["iter"] == 5
    assert any(x.startswith("Test net(s) not built: test_interval 999999999") for x in lines)
    text = (folder / "solver.prototxt").read_text()
    (folder / "solver.prototxt").write_text(text.replace("test_initialization: false", ""))
    with pytest.raises(Exception) as e:  # due at iteration 0: the file must exist
        _train(folder)
    assert "missing_val.prototxt" in str(e.value)


def test_a_due_test_net_without_batches_is_a_user_error(folder):
    with open(folder / "solver.prototxt", "a") as f:
        f.write('test_net: "train.prototxt"\ntest_iter: 1\ntest_interval: 2\n')
    with pytest.raises(UserInputError, match="test net #0: data layer 'data'"):
        _train(folder)


def test_a_nan_loss_stops_before_the_update_naming_iteration_and_layer(folder, kit):
    kit.make_batches(folder / "b.npz", 16, nan_at=6)  # iteration 3, pass 0 (iter_size 2)
    with open(folder / "solver.prototxt", "a") as f:
        f.write("snapshot: 2\n")
    with pytest.raises(NonFiniteError, match=r"iteration 3: the loss is nan; first non-finite top: layer 'data' \(Input\)"):
        _train(folder)
    snaps = sorted(os.listdir("snap"))
    assert "tiny_iter_2.caffemodel" in snaps and not any("iter_3" in s or "iter_4" in s
                                                         for s in snaps)
    assert len((folder.parent / "snap/tiny_log.csv").read_text().splitlines()) == 4  # 0, 1, 2


def test_a_non_finite_weight_after_an_update_stops_naming_the_param(folder):
    with open(folder / "solver.prototxt", "a") as f:
        f.write("snapshot: 1\n")
    t = Trainer(folder / "solver.prototxt", sources=NpzBatches(folder / "b.npz"),
                echo=lambda line: None, progress=False)
    update = t.solver.apply_update

    def overflowing():  # an update that overflows one weight at iteration 2
        rate = update()
        if t.solver.iter == 3:
            with torch.no_grad():
                t.net.layers["score_fr"].blob(0)[1, 2] = float("inf")
        return rate

    t.solver.apply_update = overflowing
    with pytest.raises(NonFiniteError, match=r"iteration 2: the update \(lr 0.01\) made layer "
                                             "'score_fr' param 0 non-finite"):
        t.solve()
    assert os.path.exists("snap/tiny_iter_2.caffemodel")  # the last good one stays the newest
    assert not os.path.exists("snap/tiny_iter_3.caffemodel")
    weights = read_weights("snap/tiny_iter_2.caffemodel")
    assert all(np.isfinite(a).all() for blobs in weights.params.values() for a in blobs)


class _Signalling:
    """A callable source that sends ``sig`` to this process when asked for draw ``at``."""

    def __init__(self, batches, sig, at):
        self.batches, self.sig, self.at, self.n = batches, sig, at, 0

    def __call__(self):
        if self.n == self.at:
            os.kill(os.getpid(), self.sig)
        b = self.batches[self.n % len(self.batches)]
        self.n += 1
        return b


@pytest.mark.parametrize("sig, stops", [(signal.SIGINT, True), (signal.SIGTERM, True),
                                        (signal.SIGHUP, False)])
def test_signals_act_as_caffe_trains_sigint_stops_sighup_snapshots(folder, sig, stops):
    src = _Signalling(NpzBatches(folder / "b.npz"), sig, at=5)  # the peek is draw 0
    lines = []
    before = signal.getsignal(sig)
    t, result = _train(folder, lines, sources=src)
    assert signal.getsignal(sig) == before  # handlers restored
    # draw 5 is iteration 2's second pass: the action comes after that iteration's update
    assert ("snap/tiny_iter_3.caffemodel", "snap/tiny_iter_3.solverstate") in result["snapshots"]
    assert result["stopped_early"] is stops and result["iter"] == (3 if stops else 5)
    assert ("Optimization stopped early." in lines) is stops


def test_random_seed_seeds_torch(folder):
    with open(folder / "solver.prototxt", "a") as f:
        f.write("random_seed: 1234\n")
    Trainer(folder / "solver.prototxt", sources=NpzBatches(folder / "b.npz"), echo=lambda x: None)
    assert torch.initial_seed() == 1234
