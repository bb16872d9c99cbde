"""Two CPU processes (gloo) through ``fcn-port train --procs 2``: Caffe's multi-GPU semantics
(each process its own batch, gradients averaged before the update, rank 0 writes) equal one
process stepping on the mean of the two batches' gradients; a NaN in one process stops both,
and only that one says so; what every process would refuse is refused once, before any starts."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from fcn_port.port.formats.caffemodel import read_weights


def _train(folder, *extra):
    return subprocess.run([sys.executable, "-m", "fcn_port.cli", "train", "--solver",
                           "solver.prototxt", "--batches", "b.npz", "--procs", "2", *extra],
                          cwd=folder, capture_output=True, text=True, timeout=120)


def test_two_processes_step_on_the_averaged_gradient(tmp_path, kit):
    folder = kit.make_folder(tmp_path, 'weights: "init.caffemodel"\nmax_iter: 4\ndisplay: 1\n')
    run = _train(folder)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("Iteration 3, lr = 0.005") == 1  # rank 0 alone logs
    assert sorted(p.name for p in (folder / "snap").iterdir()) == [
        "tiny_iter_4.caffemodel", "tiny_iter_4.solverstate", "tiny_log.csv", "tiny_loss.png"]
    # process r reads batches r, r+2, ...: step k's averaged gradient is that of batches 2k, 2k+1
    solver, net, _ = kit.manual_run(folder, 4, world=2)
    ours = read_weights(folder / "snap" / "tiny_iter_4.caffemodel").params
    moved = 0.0
    for name, i, p, _ in net.param_specs:
        want = p.detach().numpy()
        got = ours[name][i].reshape(want.shape)
        init = read_weights(folder / "init.caffemodel").params[name][i].reshape(want.shape)
        moved = max(moved, float(abs(want - init).max()))
        # float32 rounding: the all-reduce sums in another order than autograd's accumulation
        assert abs(got - want).max() <= 1e-6 * max(1.0, float(abs(want).max())), (name, i)
    assert moved > 1e-3  # the comparison is not vacuous
    one, _, _ = kit.manual_run(folder, 4, world=1)  # and it differs from a single process's run
    assert not all(torch.equal(a.param, b.param) for a, b in zip(one.params, solver.params))


def test_a_nan_in_one_process_stops_both(tmp_path, kit):
    folder = kit.make_folder(tmp_path, 'weights: "init.caffemodel"\nmax_iter: 6\nsnapshot: 1\n')
    kit.make_batches(folder / "b.npz", 16, nan_at=5)  # iteration 2 of process 1
    run = _train(folder, "--quiet")
    assert run.returncode == 2, (run.stdout, run.stderr)
    err = [line for line in run.stderr.splitlines() if line.startswith("fcn-port: error:")]
    # one line, from the process that met it (rank 0 stops too, silently: issue 16)
    assert len(err) == 1 and "iteration 2" in err[0] and "layer 'data' (Input)" in err[0]
    assert sorted(p.name for p in (folder / "snap").iterdir() if p.suffix == ".caffemodel") == [
        "tiny_iter_1.caffemodel", "tiny_iter_2.caffemodel"]


def test_what_every_process_would_refuse_is_one_line_before_any_starts(tmp_path, kit,
                                                                      monkeypatch, capsys):
    """``--procs N`` printed each setup error N times, after starting N processes (issue 16):
    the parent now builds the run on the meta device first, and bounds N by the CPUs."""
    from fcn_port.cli import main
    from fcn_port.solvers import distributed

    folder = kit.make_folder(tmp_path, 'weights: "init.caffemodel"\nmax_iter: 4\n')
    monkeypatch.chdir(folder)
    monkeypatch.setattr(distributed, "launch", lambda *a: pytest.fail("processes started"))
    np.savez(folder / "nolabel.npz", **{"it/0/data": np.zeros((1, 3, 8, 8), np.float32)})
    (folder / "broken.caffemodel").write_bytes(b"\x0a\xff")
    for argv, words in [(["--batches", "nolabel.npz"], "'label'"),
                        (["--batches", "b.npz", "--weights", "broken.caffemodel"], "broken"),
                        (["--batches", "b.npz", "--procs", "100000"], "--procs 100000")]:
        capsys.readouterr()
        assert main(["train", "--solver", "solver.prototxt", "--procs", "2", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    assert not (folder / "snap").exists() or not any((folder / "snap").iterdir())
