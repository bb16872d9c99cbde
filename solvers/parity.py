"""Solver parity against real Caffe: replay an oracle solver case and compare the trajectory.

A solver case (format: ``shared/oracle/README.md``) holds ``solver.prototxt`` and
``train.prototxt``, ``init.caffemodel`` (weights before step 0), ``batches.npz``
(``it/<k>/<blob>``: the inputs of step k, every ``iter_size`` pass sees the same),
``trajectory.npz`` (``it/<k>/<layer>/<i>``: params after k steps at the checkpoints of
``case.json``; ``loss/<k>/<blob>``: Caffe's loss during step k) and ``snapshots/``.

:func:`run_solver_case` starts from ``init.caffemodel``, runs every step on Caffe's batches and
compares every param at every checkpoint; then it restores each of Caffe's snapshots (binary and
HDF5) into a fresh net and solver and continues to the later checkpoints (rows named
``it/<k>/<layer>/<i> [from snap_iter_<n>]``). Nothing is written into the case folder.

Error of one blob: ``max|ours - caffe| / max|caffe - init|``, the update relative to how far
Caffe moved that blob; a blob Caffe never changed must match exactly (0, else inf).
"""
import json
import re
from pathlib import Path

import numpy as np
import torch

from fcn_port.port.errors import CaffeFormatError

from .build import forward_backward, from_solver_prototxt

DEFAULT_RTOL = 1e-2
NEEDS = ("solver.prototxt", "case.json", "init.caffemodel", "batches.npz", "trajectory.npz")


def trajectory_error(ours, caffe, init):
    ours, caffe, init = (np.asarray(a, np.float64).reshape(np.shape(caffe))
                         for a in (ours, caffe, init))
    moved = float(np.abs(caffe - init).max()) if caffe.size else 0.0
    diff = float(np.abs(ours - caffe).max()) if caffe.size else 0.0
    if moved == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / moved


class _Case:
    def __init__(self, case):
        self.path = Path(case)
        self.meta = json.loads((self.path / "case.json").read_text())
        self.batches = np.load(self.path / "batches.npz")
        self.traj = np.load(self.path / "trajectory.npz")
        self.steps, self.checkpoints = self.meta["steps"], sorted(self.meta["checkpoints"])

    def build(self):
        solver, net = from_solver_prototxt(self.path / "solver.prototxt")
        return solver, net

    def feed(self, net, k):
        return {b: torch.from_numpy(np.array(self.batches[f"it/{k}/{b}"], np.float32))
                for b in net.inputs}

    def caffe_loss(self, k):
        keys = [f"loss/{k}/{b}" for b in self.meta.get("loss_blobs", ["loss"])]
        return sum(float(self.traj[key]) for key in keys if key in self.traj.files)


def _run(case, solver, net, stop, worst, init, tag=""):
    """Step ``solver`` to ``stop`` on the case's batches, comparing at checkpoints."""
    losses = []
    while True:
        k = solver.iter
        if k in case.checkpoints:
            params = {(name, i): p for name, i, p, _ in net.param_specs}
            for key in case.traj.files:
                m = re.fullmatch(rf"it/{k}/(.+)/(\d+)", key)
                if m:
                    p = params[(m.group(1), int(m.group(2)))]
                    err = trajectory_error(p.detach().numpy(), case.traj[key],
                                           init[(m.group(1), int(m.group(2)))])
                    worst.add(key + tag, err)
        if k >= stop:
            return losses
        feed = case.feed(net, k)
        losses += solver.step(forward_backward(net, feed))


class _Worst:
    def __init__(self):
        self.compared, self.worst, self.where = 0, 0.0, ""

    def add(self, name, err):
        self.compared += 1
        if err > self.worst or not self.where:
            self.worst, self.where = err, name


def run_solver_case(case, rtol=DEFAULT_RTOL):
    """Replay one solver case (an update case: :func:`.update_parity.run_update_case`, held to
    its ulp target whatever ``rtol`` is); returns ``{"case", "kind": "solver", "compared", "worst",
    "where", "pass", "losses", "caffe_losses"}`` (``losses``: ours at every step, in order).
    A folder that is not a solver case raises CaffeFormatError; a solver or net that cannot
    be built or run is a failed row with its ``error``."""
    meta = Path(case) / "case.json"
    if meta.exists() and json.loads(meta.read_text()).get("kind") == "update":
        from .update_parity import run_update_case

        return run_update_case(case)  # given Caffe's gradients: compared in ulps
    for need in NEEDS:
        if not (Path(case) / need).exists():
            raise CaffeFormatError(case, "", f"not an oracle solver case folder: {need} is missing")
    try:
        return _replay(_Case(case), rtol)
    except ValueError as e:  # SolverError, NetError, CaffeFormatError
        return {"case": Path(case).name, "kind": "solver", "compared": 0, "worst": None,
                "where": "", "pass": False, "error": str(e)}


def _replay(case, rtol):
    solver, net = case.build()
    init = {(name, i): np.array(a, np.float32)
            for name, blobs in solver.load_weights(case.path / "init.caffemodel").params.items()
            for i, a in enumerate(blobs)}
    worst = _Worst()
    losses = _run(case, solver, net, case.steps, worst, init)
    snaps = sorted(case.path.glob("snapshots/*.solverstate*"),
                   key=lambda p: int(re.search(r"_iter_(\d+)", p.name).group(1)))
    for snap in snaps:
        solver, net = case.build()
        solver.restore(snap, root=case.path)
        label = snap.name.split(".")[0]
        _run(case, solver, net, case.steps, worst, init, f" [from {label}]")
    return {"case": case.path.name, "kind": "solver", "compared": worst.compared,
            "worst": worst.worst, "where": worst.where,
            "pass": worst.compared > 0 and worst.worst <= rtol, "losses": losses,
            "caffe_losses": [case.caffe_loss(k) for k in range(case.steps)]}
