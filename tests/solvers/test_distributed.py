"""Two CPU processes (gloo) through ``fcn-port train --procs 2``: Caffe's multi-GPU semantics
(each process its own batch, gradients averaged before the update, rank 0 writes) equal one
process stepping on the mean of the two batches' gradients; a NaN in one process stops both."""
import subprocess
import sys

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
    assert len(err) == 2 and all("iteration 2" in line for line in err)
    assert any("process 1 met a non-finite loss" in line for line in err)
    assert any("layer 'data' (Input)" in line for line in err)
    assert sorted(p.name for p in (folder / "snap").iterdir() if p.suffix == ".caffemodel") == [
        "tiny_iter_1.caffemodel", "tiny_iter_2.caffemodel"]
