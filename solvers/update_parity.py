"""Update parity: Caffe's solver arithmetic checked to the bit, given Caffe's own gradients.

A trajectory case (:mod:`.parity`) runs forward and backward too, so its float32 rounding
differs from Caffe's before the solver starts, and it can only be held to 1% of the update. An
update case (``case.json`` ``kind: "update"``; format in ``shared/oracle/README.md``) records
Caffe's param diffs as they stood at ``on_gradients_ready`` of every step (``grads.npz``
``it/<k>/<layer>/<i>``: summed over the ``iter_size`` passes, before ``ClipGradients``,
``Normalize``, ``Regularize`` and ``ComputeUpdateValue``), the params after every step
(``trajectory.npz``) and Caffe's snapshots. Fed those diffs, the solver's arithmetic is all that
is left to compare, and it is compared in ulps.

:func:`run_update_case` builds the solver from the case's ``solver.prototxt``, loads
``init.caffemodel``, and for every step k puts Caffe's diff into each learnable param's
gradient, runs :meth:`.solver.Solver.apply_update` (the rate, clip, normalize, regularize, the
solver type's rule, ``data -= diff``) and compares every param with ``it/<k+1>``; at each
snapshot Caffe wrote, the history with that ``.solverstate``'s. With ``resume``, a second
solver restores Caffe's mid-way snapshot (``Solver::Restore``) and does the same on the
``resume/`` records, to Caffe's ``resumed_iter_<steps>`` state. Every other snapshot Caffe
wrote before the end is restored too and continued with the recorded diffs (Caffe's resume is
bit-identical to its uninterrupted run, so the same records hold).

Distance in ulps: the float32 bit patterns on one monotonic integer line (negative values
mirrored, so -0 and +0 are one point); the distance is the number of floats between two values
(a NaN against a number: infinite). ``max_ulp`` is the largest over every param and history
element at every recorded step, ``differ`` the fraction of those elements not bit-identical.
Targets: 0 ulp for SGD and Nesterov (their arithmetic is Caffe's loops, operation for
operation); at most 1 ulp on any element for AdaGrad, RMSProp, AdaDelta and Adam (their square
roots and squares are Caffe's ``caffe_powx``, C ``powf``, emulated in :mod:`.rules`).
"""
import json
from pathlib import Path

import numpy as np
import torch

from fcn_port.port.errors import CaffeFormatError

from .build import from_solver_prototxt

NEEDS = ("solver.prototxt", "case.json", "init.caffemodel", "grads.npz", "trajectory.npz")
TARGET_ULP = {"SGD": 0, "Nesterov": 0}  # other solver types: 1


def ulps(ours, caffe):
    """Elementwise distance in float32 ulps (int64; a NaN against a number: 2**62)."""
    a, b = (np.ascontiguousarray(x, np.float32).reshape(-1) for x in (ours, caffe))
    if a.size != b.size:
        return np.full(max(a.size, b.size, 1), 1 << 62, np.int64)
    ia, ib = (x.view(np.int32).astype(np.int64) for x in (a, b))
    ia, ib = (np.where(i < 0, -(i & 0x7FFFFFFF), i) for i in (ia, ib))
    d = np.abs(ia - ib)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    d[nan_a & nan_b] = 0
    d[nan_a ^ nan_b] = 1 << 62
    return d


class _Tally:
    """The largest ulp distance (and where), elements compared and elements that differ."""

    def __init__(self):
        self.max_ulp, self.where, self.elements, self.differ, self.blobs = 0, "", 0, 0, 0

    def add(self, name, ours, caffe):
        d = ulps(ours, caffe)
        self.blobs += 1
        self.elements += d.size
        self.differ += int(np.count_nonzero(d))
        worst = int(d.max()) if d.size else 0
        if worst > self.max_ulp or not self.where:
            self.max_ulp, self.where = worst, name


class _UpdateCase:
    def __init__(self, path):
        self.path = Path(path)
        self.meta = json.loads((self.path / "case.json").read_text())
        self.grads = np.load(self.path / "grads.npz")
        self.traj = np.load(self.path / "trajectory.npz")
        self.steps = int(self.meta["steps"])

    def state_file(self, name):
        """The snapshot ``snapshots/<name>.solverstate[.h5]`` Caffe wrote, or None."""
        for ending in (".solverstate", ".solverstate.h5"):
            if (self.path / "snapshots" / (name + ending)).exists():
                return self.path / "snapshots" / (name + ending)
        return None


def _params(net):
    return {(layer, i): p for layer, i, p, _ in net.param_specs}


def _compare_params(case, net, tally, k, prefix=""):
    params = _params(net)
    for (layer, i), p in params.items():
        key = f"{prefix}it/{k}/{layer}/{i}"
        if key in case.traj.files:
            tally.add(key, p.detach().cpu().numpy(), case.traj[key])


def _compare_history(solver, state_path, tally):
    from fcn_port.port.formats.solverstate import read_solverstate

    state = read_solverstate(state_path)
    name = state_path.name
    if (state.iter, state.current_step) != (solver.iter, solver.current_step):
        raise CaffeFormatError(state_path, "iter", f"iter {state.iter}, current_step "
                               f"{state.current_step}; the solver is at {solver.iter}, "
                               f"{solver.current_step}")
    for k, (ours, caffe) in enumerate(zip(solver.history, state.history)):
        tally.add(f"{name} history {k} ({solver._name(k)})", ours.detach().cpu().numpy(), caffe)


def _steps(case, solver, net, ks, tally, prefix="", snap_prefix="snap"):
    """Apply Caffe's diffs of steps ``ks`` one by one, comparing after each."""
    for k in ks:
        if solver.iter != k:
            raise CaffeFormatError(case.path, "steps", f"step {k} recorded, the solver is at "
                                   f"iteration {solver.iter}")
        for lp in solver.params:
            g = case.grads[f"{prefix}it/{k}/{lp.layer}/{lp.index}"]
            lp.param.grad = torch.from_numpy(np.array(g, np.float32)).reshape(
                lp.param.shape).to(lp.param.device)
        solver.apply_update()
        _compare_params(case, net, tally, k + 1, prefix)
        state = case.state_file(f"{snap_prefix}_iter_{k + 1}")
        if state is not None:
            _compare_history(solver, state, tally)


def run_update_case(path, device="cpu"):
    """Replay one update case (params and history on ``device``: on CUDA the adaptive solvers follow
    Caffe's ``.cu`` kernels, so the CPU-recorded cases may differ there); returns ``{"case", "kind":
    "update", "compared", "worst", "where", "pass", "max_ulp", "differ", "target_ulp", "elements"}``
    (``worst`` is ``max_ulp``; ``compared`` counts blobs). A folder that is not one raises
    CaffeFormatError; a solver or net that cannot be built is a failed row with its error."""
    for need in NEEDS:
        if not (Path(path) / need).exists():
            raise CaffeFormatError(path, "", f"not an oracle update case folder: {need} is "
                                   "missing")
    case = _UpdateCase(path)
    tally = _Tally()
    try:
        solver, net = from_solver_prototxt(case.path / "solver.prototxt", device=device)
        solver.load_weights(case.path / "init.caffemodel")
        _compare_params(case, net, tally, 0)
        _steps(case, solver, net, range(case.steps), tally)
        for n in range(1, case.steps):  # Caffe's own snapshots, restored and continued
            state = case.state_file(f"snap_iter_{n}")
            if state is not None:
                solver, net = from_solver_prototxt(case.path / "solver.prototxt", device=device)
                solver.restore(state, root=case.path)
                _compare_params(case, net, tally, n)
                _steps(case, solver, net, range(n, case.steps), tally)
        resume = case.meta.get("resume")
        if resume:
            solver, net = from_solver_prototxt(case.path / resume["solver"], device=device)
            solver.restore(case.path / resume["state_file"], root=case.path)
            _compare_params(case, net, tally, resume["at"], "resume/")
            _steps(case, solver, net, resume["steps"], tally, "resume/", "resumed")
    except ValueError as e:  # SolverError, NetError, CaffeFormatError
        return {"case": case.path.name, "kind": "update", "compared": tally.blobs,
                "worst": None, "where": "", "pass": False, "error": str(e)}
    target = TARGET_ULP.get(solver.param.type, 1)
    return {"case": case.path.name, "kind": "update", "compared": tally.blobs,
            "worst": tally.max_ulp, "where": tally.where,
            "pass": tally.blobs > 0 and tally.max_ulp <= target, "max_ulp": tally.max_ulp,
            "differ": tally.differ / max(tally.elements, 1), "target_ulp": target,
            "elements": tally.elements}
