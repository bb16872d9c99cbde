"""Shared by the training tests (fixture ``kit``): a tiny net (the oracle case
sgd_step_itersize's train.prototxt, Input layers data 2x3x12x14 and label 2x1x12x14, 4 classes) in a folder with a solver of the
test's choosing, and npz batches for it."""
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import ORACLE
from fcn_port.solvers.build import forward_backward, from_solver_prototxt
from fcn_port.solvers.data import NpzBatches

CASE = ORACLE / "solver" / "sgd_step_itersize"

SOLVER = """train_net: "train.prototxt"
base_lr: 0.01
lr_policy: "step"
gamma: 0.5
stepsize: 3
momentum: 0.9
weight_decay: 0.0005
snapshot_prefix: "snap/tiny"
"""


def make_batches(path, n, seed=0, nan_at=None):
    rng = np.random.default_rng(seed)
    d = {}
    for k in range(n):
        d[f"it/{k}/data"] = rng.normal(0, 1, (2, 3, 12, 14)).astype(np.float32)
        d[f"it/{k}/label"] = rng.integers(0, 4, (2, 1, 12, 14)).astype(np.float32)
        if nan_at is not None and k == nan_at:
            d[f"it/{k}/data"][0, 0, 0, 0] = np.nan
    np.savez(path, **d)
    return path


def make_folder(tmp, extra="", n=16, seed=0):
    """``tmp`` with train.prototxt, init.caffemodel, solver.prototxt (SOLVER + ``extra``) and
    b.npz (``n`` batches)."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(CASE / "train.prototxt", tmp / "train.prototxt")
    shutil.copy(CASE / "init.caffemodel", tmp / "init.caffemodel")
    (tmp / "solver.prototxt").write_text(SOLVER + extra)
    make_batches(tmp / "b.npz", n, seed)
    return tmp


def manual_run(folder, steps, *, world=1):
    """The same training by hand: Solver.step per iteration, the feed of pass p of iteration
    it being batch (it * iter_size + p); with ``world`` > 1 each pass is the mean of the
    gradients of ``world`` consecutive batches (what averaged processes compute). Returns
    (solver, net, losses)."""
    solver, net = from_solver_prototxt(folder / "solver.prototxt",
                                       weights=folder / "init.caffemodel")
    batches = NpzBatches(folder / "b.npz")
    losses, draws = [], iter(range(10 ** 6))

    def one_pass():
        d = next(draws)
        loss = 0.0
        for r in range(world):
            b = batches[(d * world + r) % len(batches)]
            loss = forward_backward(net, {k: torch.from_numpy(v) for k, v in b.items()})()
        if world > 1:
            with torch.no_grad():
                for lp in solver.params:
                    if lp.param.grad is not None:
                        lp.param.grad.mul_(torch.tensor(1.0 / world))
        return loss

    for _ in range(steps):
        losses += solver.step(one_pass)
    return solver, net, losses


def params_of(net):
    return {(name, i): p.detach().clone() for name, i, p, _ in net.param_specs}


@pytest.fixture
def kit():
    """These helpers, as one object (test modules here are not importable by name)."""
    return SimpleNamespace(CASE=CASE, SOLVER=SOLVER, make_batches=make_batches,
                           make_folder=make_folder, manual_run=manual_run, params_of=params_of)


@pytest.fixture(autouse=True)
def _tiny_nets_on_one_thread(one_thread):
    """Every solver test runs tiny nets: one thread each (see tests/conftest.py)."""
