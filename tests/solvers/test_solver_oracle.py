"""The solver against real Caffe: every oracle solver case's trajectory, Caffe's snapshots
restored (binary and HDF5) and written back, and bit-exact resume."""
import h5py
import numpy as np
import pytest
import torch

from conftest import case_params, oracle_cases
from fcn_port.port.formats.solverstate import read_solverstate
from fcn_port.solvers import rules, solver as solver_mod
from fcn_port.solvers.build import forward_backward, from_solver_prototxt
from fcn_port.solvers.parity import _Case, run_solver_case

CASES = {c.name: c for c in oracle_cases("solver")}
OFFICIAL = {"sgd_fcn32s_official", "sgd_fcn8s_atonce_hdf5"}  # lr 1e-10: updates of a few 100 ulps


@pytest.mark.parametrize("case", case_params("solver"))
def test_every_solver_case_follows_caffes_trajectory(case):
    r = run_solver_case(case)
    assert r["pass"], r
    # far inside the 1e-2 tolerance: ~1.5e-3 on the official-lr cases, ~1e-5 elsewhere
    assert r["worst"] <= (5e-3 if case.name in OFFICIAL else 1e-3), r
    assert np.allclose(r["losses"], r["caffe_losses"], rtol=1e-5, atol=0)
    traj = [k for k in np.load(case / "trajectory.npz").files if k.startswith("it/")]
    if any(case.glob("snapshots/*.solverstate*")):  # rows after restoring Caffe's snapshots too
        assert r["compared"] > len(traj), r
    else:
        assert r["compared"] == len(traj), r


def _solver(name):
    case = _Case(CASES[name])
    solver, net = case.build()
    solver.load_weights(case.path / "init.caffemodel")
    return case, solver, net


def _run(case, solver, net, stop):
    while solver.iter < stop:
        solver.step(forward_backward(net, case.feed(net, solver.iter)))


@pytest.mark.parametrize("name, snap", [("sgd_step_itersize", "snap_iter_5.solverstate"),
                                        ("sgd_fcn8s_atonce_hdf5", "snap_iter_4.solverstate.h5")])
def test_restore_loads_caffes_snapshot_and_our_run_reaches_the_same_state(name, snap):
    case, ours, net = _solver(name)
    path = case.path / "snapshots" / snap
    caffe = read_solverstate(path)
    _run(case, ours, net, caffe.iter)
    for k, (h, c) in enumerate(zip(ours.history, caffe.history)):  # momentum, uninterrupted run
        scale = max(float(np.abs(c).max()), 1e-30)
        assert float(np.abs(h.numpy() - c.reshape(h.shape)).max()) / scale <= 1e-2, k
    restored, net2 = case.build()
    loaded = restored.restore(path, root=case.path)
    assert loaded.endswith(caffe.learned_net) and restored.iter == caffe.iter
    assert restored.current_step == caffe.current_step
    for h, c in zip(restored.history, caffe.history):
        assert np.array_equal(h.numpy(), c.reshape(h.shape))
    weights = restored.load_weights(loaded)  # what restore loaded is the snapshot, bit for bit
    for layer, i, p, _ in net2.param_specs:
        assert np.array_equal(p.detach().numpy(), weights.params[layer][i])


@pytest.mark.parametrize("name, n", [("sgd_fcn32s_official", 6), ("sgd_fcn32s_official", 12),
                                     ("sgd_step_itersize", 5)])
def test_writing_a_restored_binary_snapshot_gives_caffes_bytes(name, n, tmp_path, monkeypatch):
    case = CASES[name]
    solver, _ = from_solver_prototxt(case / "solver.prototxt")
    solver.restore(case / "snapshots" / f"snap_iter_{n}.solverstate", root=case)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snapshots").mkdir()
    model, state = solver.snapshot()  # snapshot_prefix "snapshots/snap", relative as in Caffe
    assert (model, state) == (f"snapshots/snap_iter_{n}.caffemodel",
                              f"snapshots/snap_iter_{n}.solverstate")
    for written in (model, state):
        assert (tmp_path / written).read_bytes() == (case / written).read_bytes(), written


def test_writing_a_restored_hdf5_snapshot_gives_caffes_datasets(tmp_path, monkeypatch):
    case = CASES["sgd_fcn8s_atonce_hdf5"]
    solver, _ = from_solver_prototxt(case / "solver.prototxt")
    solver.restore(case / "snapshots" / "snap_iter_8.solverstate.h5", root=case)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snapshots").mkdir()
    written = solver.snapshot()
    assert written == ("snapshots/snap_iter_8.caffemodel.h5", "snapshots/snap_iter_8.solverstate.h5")
    for name in written:
        assert _datasets(tmp_path / name) == _datasets(case / name), name


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                v = obj[()]
                out[name] = (obj.dtype.str, obj.shape, v.tobytes() if hasattr(v, "tobytes") else v)
            else:
                out[name] = "group"
        f.visititems(visit)
    return out


@pytest.mark.parametrize("name", ["type_adam", "lr_multistep", "sgd_step_itersize",
                                  "sgd_fcn8s_atonce_hdf5"])
def test_resume_is_bit_exact(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    case, straight, net = _solver(name)
    _run(case, straight, net, 6)
    case, first, net1 = _solver(name)
    _run(case, first, net1, 3)
    _, state = first.snapshot(str(tmp_path / "s"))
    second, net2 = case.build()
    second.restore(state)
    _run(case, second, net2, 6)
    assert second.iter == straight.iter and second.current_step == straight.current_step
    for a, b in zip(straight.history, second.history):
        assert torch.equal(a, b)
    for (_, _, a, _), (_, _, b, _) in zip(net.param_specs, net2.param_specs):
        assert torch.equal(a, b)


def test_the_tolerance_tells_caffes_form_from_torch_optims(monkeypatch):
    """torch.optim.SGD's form (v = m*v + g; p -= lr*v) fails where the lr changes."""
    def torch_form(diff, hist, local_rate, param, iter):
        h, = hist
        h.mul_(rules.f32(param.momentum)).add_(diff)
        diff.copy_(h).mul_(local_rate)
    monkeypatch.setitem(rules.RULES, "SGD", rules.Rule(torch_form, 1, None, torch_form))
    r = run_solver_case(CASES["lr_multistep"])
    assert not r["pass"] and r["worst"] > 1e-2


def test_the_tolerance_tells_when_lr_mult_is_ignored(monkeypatch):
    learnable = solver_mod.learnable

    def no_lr_mult(specs):
        out = learnable(specs)
        for lp in out:
            lp.lr_mult = 1.0
        return out
    monkeypatch.setattr(solver_mod, "learnable", no_lr_mult)
    r = run_solver_case(CASES["lr_exp"])
    assert not r["pass"] and r["worst"] > 1e-2


def test_a_folder_that_is_not_a_solver_case_is_refused(tmp_path):
    from fcn_port.port.errors import CaffeFormatError

    with pytest.raises(CaffeFormatError, match="solver.prototxt is missing"):
        run_solver_case(tmp_path)
