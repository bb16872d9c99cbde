"""Caffe's learning-rate policies (``SGDSolver::GetLearningRate``, ``sgd_solver.cpp``).

How Caffe computes it
---------------------
``GetLearningRate`` runs once per iteration, from ``ApplyUpdate``, with ``iter_`` = the number of
updates done so far (before this one is counted). ``Dtype`` is float; the proto's float fields
(``base_lr``, ``gamma``, ``power``) are float32 values::

    fixed      base_lr
    step       current_step_ = iter / stepsize (integer division);  base_lr * gamma^current_step_
    exp        base_lr * gamma^iter
    inv        base_lr * (1 + gamma * iter)^(-power)
    multistep  if current_step_ < len(stepvalue) and iter >= stepvalue[current_step_]:
                   current_step_ += 1             (at most ONE step per call)
               base_lr * gamma^current_step_
    poly       base_lr * (1 - iter / max_iter)^power
    sigmoid    base_lr * 1 / (1 + exp(-gamma * (iter - stepsize)))

The precision is C++'s, and it is reproduced here: ``pow(float, int)`` (step, exp, multistep)
is computed in double and the double product ``base_lr * pow`` is rounded once to float;
``inv``, ``poly`` and ``sigmoid`` have only float operands, so they call C's ``powf``/``expf``
and use float arithmetic throughout. Here those two are the C library's own
(:mod:`.libm`, through ctypes): numpy's float32 ``power`` and ``exp`` are not, and differ
from glibc's by one ulp of the rate at about a fifth of the iterations (measured here: ``inv``
and ``poly`` 19-20% of 20,000 iterations, ``sigmoid``'s ``exp`` more).
The rate returned is a float32 scalar.

``current_step_`` is solver state (it is saved in the ``.solverstate``): ``step`` recomputes it,
``multistep`` advances it one stepvalue per call, so a restored solver continues the schedule
exactly. Other policies leave it alone.

Checks: Caffe aborts (``CHECK_GT``/``CHECK_GE``) on ``stepsize <= 0`` for step and sigmoid and
on ``gamma < 0`` for step, exp, inv and multistep, and ``LOG(FATAL)``s on an unknown policy;
here each is a :class:`SolverError` naming the field. BVLC master also checks ``gamma >= 0``
for sigmoid, but the oracle's Caffe build ran ``lr_sigmoid`` with ``gamma: -0.5`` (a decaying
sigmoid) and that trajectory is the ground truth, so a negative sigmoid gamma is accepted.
Caffe makes these checks at the first update; :func:`check` makes them when the solver is built
(before any file is written), and also refuses a ``base_lr``, ``gamma`` or ``power`` that is
NaN or infinite (Caffe would train on, every weight NaN after one update).
``plateau`` and ``sgdr`` exist only in forks and are unknown policies here, as in BVLC master.
"""
import math

import numpy as np

from .errors import SolverError
from .libm import expf, powf

F32 = np.float32
POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def _need(cond, param, what):
    if not cond:
        raise SolverError(f"lr_policy '{param.lr_policy}': {what}")


def _times_pow(param, exponent):
    """``base_lr * pow(gamma, int)``: double, rounded once to float."""
    _need(param.gamma >= 0, param, f"gamma must be >= 0, got {param.gamma}")
    return F32(float(F32(param.base_lr)) * math.pow(float(F32(param.gamma)), exponent))


def check(param):
    """Caffe's checks of the policy's fields, as the first update would make them, and finite
    rates: a :class:`SolverError` naming the field, before anything runs."""
    for field in ("base_lr", "gamma", "power"):
        value = getattr(param, field)
        _need(math.isfinite(value), param, f"{field} must be a finite number, got {value}")
    learning_rate(param, 0)


def learning_rate(param, iter, current_step=0):
    """The rate Caffe uses for the update at ``iter``; returns ``(rate, current_step)``.

    ``param`` is a SolverParameter, ``current_step`` the solver's bookkeeping before this call;
    the returned one is what Caffe's ``current_step_`` holds after it."""
    policy, base = param.lr_policy, F32(param.base_lr)
    if policy == "fixed":
        return base, current_step
    if policy == "step":
        _need(param.stepsize > 0, param, f"stepsize must be > 0, got {param.stepsize}")
        current_step = iter // param.stepsize
        return _times_pow(param, current_step), current_step
    if policy == "exp":
        return _times_pow(param, iter), current_step
    if policy == "multistep":
        if current_step < len(param.stepvalue) and iter >= param.stepvalue[current_step]:
            current_step += 1
        return _times_pow(param, current_step), current_step
    if policy == "inv":
        _need(param.gamma >= 0, param, f"gamma must be >= 0, got {param.gamma}")
        x = F32(1) + F32(param.gamma) * F32(iter)
        return base * powf(x, -F32(param.power)), current_step
    if policy == "poly":
        _need(param.max_iter > 0, param, f"max_iter must be > 0, got {param.max_iter}")
        x = F32(1) - F32(iter) / F32(param.max_iter)
        return base * powf(x, F32(param.power)), current_step
    if policy == "sigmoid":
        _need(param.stepsize > 0, param, f"stepsize must be > 0, got {param.stepsize}")
        e = expf(-F32(param.gamma) * (F32(iter) - F32(param.stepsize)))  # inf: rate 0, as in C
        with np.errstate(over="ignore"):
            return base * (F32(1) / (F32(1) + e)), current_step
    raise SolverError(f"lr_policy: unknown learning rate policy '{policy}'; Caffe knows "
                      f"{', '.join(POLICIES)}")
