"""Caffe's per-parameter update arithmetic (``sgd_solver.cpp`` and ``src/caffe/solvers/*``).

How Caffe computes one update (``SGDSolver::ApplyUpdate``)
----------------------------------------------------------
``rate = GetLearningRate()`` (:mod:`.lr_policy`), then ``ClipGradients()`` over all learnable
params together, then for each learnable param in order ``Normalize``, ``Regularize``,
``ComputeUpdateValue(param_id, rate)``, and finally ``Net::Update``: ``data -= diff``
(``caffe_axpy(-1, diff, data)``). Every step works in place on the param's diff, in float::

    ClipGradients   clip_gradients >= 0: norm = sqrt(sum over params of sumsq(diff)) (float
                    sums); if norm > clip: every diff *= clip / norm. Before Normalize, so with
                    iter_size > 1 it sees the accumulated (un-averaged) gradient.
    Normalize       iter_size > 1: diff *= 1 / iter_size   (caffe_scal)
    Regularize      local_decay = weight_decay * decay_mult; skipped when 0.
                    L2: diff += local_decay * data;  L1: diff += local_decay * sign(data)

``ComputeUpdateValue`` with ``local_rate = rate * lr_mult`` (float), per solver type (each
``axpby(a, x, b, y)`` is Caffe's ``caffe_cpu_axpby``: ``y = b*y`` then ``y += a*x``)::

    SGD       (SGDSolver)       h = axpby(local_rate, diff, momentum, h);  diff = h
    Nesterov  (NesterovSolver)  u = h;  h = axpby(local_rate, diff, momentum, h)
                                diff = axpby(1 + momentum, h, -momentum, u)
    AdaGrad   (AdaGradSolver)   h = diff^2 + h;  diff = local_rate * diff / (sqrt(h) + delta)
    RMSProp   (RMSPropSolver)   h = axpby(1 - rms_decay, diff^2, rms_decay, h)
                                diff = local_rate * diff / (sqrt(h) + delta)
    AdaDelta  (AdaDeltaSolver)  hg = axpby(1 - momentum, diff^2, momentum, hg)
                                diff = diff * sqrt((hu + delta) / (hg + delta))
                                hu = axpby(1 - momentum, diff^2, momentum, hu)
                                diff = local_rate * diff
    Adam      (AdamSolver)      m = axpby(1 - beta1, diff, beta1, m)
                                v = axpby(1 - beta2, diff^2, beta2, v)
                                t = iter + 1;  correction = sqrt(1 - beta2^t) / (1 - beta1^t)
                                diff = (local_rate * correction) * m / (sqrt(v) + delta)

(beta1 = ``momentum``, beta2 = ``momentum2``, eps = ``delta``.) AdaDelta and Adam keep two
history sets, laid out as Caffe's ``history_``: the first set for every learnable param, then the
second (hu for AdaDelta, v for Adam); the ``.solverstate`` holds them in that order. AdaGrad and
RMSProp refuse a non-zero ``momentum``; RMSProp needs ``0 <= rms_decay < 1`` (their
``constructor_sanity_check``). Beyond Caffe, :func:`rule_for` refuses a NaN or infinite
``momentum``, ``momentum2``, ``weight_decay``, ``delta`` or ``rms_decay`` and a NaN
``clip_gradients`` (Caffe trains on with NaN weights).

The squares and square roots written ``diff^2`` and ``sqrt`` above are ``caffe_powx`` (C's
``powf`` per element), except Adam's ``diff^2``, a ``caffe_mul``. glibc's ``powf`` is not
correctly rounded: ``powf(x, 2)`` differs from ``x * x``, and ``powf(x, 0.5)`` from
``sqrtf(x)``, for about 0.07% of floats each (and ``torch.sqrt`` is not correctly rounded
either), so :func:`powx` gets the C library's values (:mod:`.libm`). Given Caffe's gradients
(:mod:`.update_parity`), every solver type lands on Caffe's params and histories bit for bit
(the oracle's update cases and those of ``tests/make_update_cases.py``: SGD, Nesterov with
clipping and ``iter_size``, AdaGrad, RMSProp with L1 decay, AdaDelta, Adam through a resume). On a CUDA device the adaptive solvers
follow Caffe's GPU kernels instead (:mod:`.kernels`: another order, squares by multiplying).

Why not ``torch.optim``
-----------------------
``torch.optim.SGD`` keeps ``v = momentum * v + g`` and steps ``p -= lr * v``: the learning rate is
applied after the momentum sum, so when the rate changes (step, multistep, poly, ...) the whole
history is rescaled, while Caffe's history already holds ``local_rate * diff`` terms and a new
rate only affects new gradients. Its weight decay also ignores ``decay_mult``, its Nesterov,
RMSProp (``sqrt`` of the running mean inside the ``eps``) and Adam (bias correction folded
differently) differ in form, and its rounding order differs. The official FCN settings (lr 1e-10,
momentum 0.99, an unnormalised loss) make each update a few hundred ulps of the weight, so even
the order of float32 roundings shows. Here every step is one in-place float32 torch operation
in Caffe's order, with scalars rounded to float32 as Caffe's ``Dtype`` locals are:
``y.mul_(b).add_(x, alpha=a)`` is ``caffe_cpu_axpby`` (``scal`` then ``axpy``). Whether the
multiply-add is fused (OpenBLAS kernels, torch's vectorised ``add``) can differ by half an ulp
per operation; the oracle trajectories bound the result (about 0.16% of the update at worst on
the official-lr cases, against the 1% tolerance).
"""
import math
from collections import namedtuple

import numpy as np
import torch

from . import kernels, libm
from .errors import SolverError

F32 = np.float32


def f32(x):
    """A Python float holding ``x`` rounded to float32 (what Caffe's float locals hold)."""
    return float(F32(x))


def _axpby(a, x, b, y):
    return y.mul_(b).add_(x, alpha=a)


def clip_gradients(diffs, clip):
    """``SGDSolver::ClipGradients``: scale all diffs by ``clip / norm`` when their global L2
    norm exceeds ``clip`` (``clip < 0``: off). Returns the norm (None when off)."""
    clip = F32(clip)
    if clip < 0:
        return None
    sumsq = F32(0)
    for d in diffs:
        sumsq = F32(sumsq + _sumsq(d.reshape(-1)))
    norm = F32(np.sqrt(sumsq))
    if norm > clip:
        scale = f32(clip / norm)
        for d in diffs:
            d.mul_(scale)
    return float(norm)


def _sumsq(flat):
    """``caffe_cpu_dot(x, x)`` (:func:`fcn_port.port.layers.exact.dot`: OpenBLAS's order on
    the CPU, numpy's float32 ``dot``; torch's on CUDA, where GPU Caffe calls cuBLAS)."""
    from fcn_port.port.layers.exact import dot

    return F32(dot(flat, flat).item())


def normalize(diff, iter_size):
    """``SGDSolver::Normalize``: average a gradient accumulated over ``iter_size`` passes."""
    if iter_size != 1:
        diff.mul_(f32(F32(1) / F32(iter_size)))


def regularize(diff, data, local_decay, kind="L2"):
    """``SGDSolver::Regularize`` with ``local_decay = weight_decay * decay_mult`` (float32)."""
    if not local_decay:
        return
    if kind == "L2":
        diff.add_(data, alpha=local_decay)
    elif kind == "L1":
        diff.add_(torch.sign(data), alpha=local_decay)
    else:
        raise SolverError(f"regularization_type: unknown regularization type '{kind}' "
                          "(Caffe knows L2 and L1)")


def sgd(diff, hist, local_rate, param, iter):
    h, = hist
    _axpby(local_rate, diff, f32(param.momentum), h)
    diff.copy_(h)


def nesterov(diff, hist, local_rate, param, iter):
    h, = hist
    m = F32(param.momentum)
    before = h.clone()
    _axpby(local_rate, diff, float(m), h)
    _axpby(f32(F32(1) + m), h, float(-m), before)
    diff.copy_(before)


def powx(x, b):
    """``caffe_powx(x, b)``, C's ``powf`` per element (:func:`.libm.powx`) on the CPU; on
    another device torch's ``x * x`` or ``sqrt``, as near as CUDA's ``powf`` comes."""
    if x.device.type == "cpu":
        return torch.from_numpy(libm.powx(x.detach().numpy(), b))
    return torch.mul(x, x) if b == 2 else torch.sqrt(x)


def adagrad(diff, hist, local_rate, param, iter):
    h, = hist
    h.copy_(powx(diff, 2).add_(h))
    u = powx(h, 0.5).add_(f32(param.delta))
    diff.copy_(torch.div(diff, u).mul_(local_rate))


def rmsprop(diff, hist, local_rate, param, iter):
    h, = hist
    decay = F32(param.rms_decay)
    _axpby(f32(F32(1) - decay), powx(diff, 2), float(decay), h)
    u = powx(h, 0.5).add_(f32(param.delta))
    diff.copy_(torch.div(diff, u).mul_(local_rate))


def adadelta(diff, hist, local_rate, param, iter):
    hg, hu = hist
    m, delta = F32(param.momentum), f32(param.delta)
    one_minus = f32(F32(1) - m)
    _axpby(one_minus, powx(diff, 2), float(m), hg)
    u = powx(torch.add(hu, delta).div_(torch.add(hg, delta)), 0.5)
    diff.mul_(u)
    _axpby(one_minus, powx(diff, 2), float(m), hu)
    diff.mul_(local_rate)


def adam(diff, hist, local_rate, param, iter):
    m, v = hist
    b1, b2 = F32(param.momentum), F32(param.momentum2)
    correction = kernels.adam_correction(param, iter)
    _axpby(f32(F32(1) - b1), diff, float(b1), m)
    _axpby(f32(F32(1) - b2), torch.mul(diff, diff), float(b2), v)  # caffe_mul, not powx
    u = powx(v, 0.5).add_(f32(param.delta))
    diff.copy_(torch.div(m, u).mul_(f32(F32(local_rate) * correction)))


def _no_momentum(param):
    if param.momentum != 0:
        raise SolverError(f"momentum: {param.momentum} cannot be used with {param.type}; "
                          "Caffe requires momentum 0 for this solver type")


def _rmsprop_check(param):
    _no_momentum(param)
    if not 0 <= param.rms_decay < 1:
        raise SolverError(f"rms_decay: {param.rms_decay} should lie in [0, 1) for RMSProp")


Rule = namedtuple("Rule", "update history_sets check gpu")
RULES = {  # SolverParameter.type -> ComputeUpdateValue (CPU, GPU order), history sets, check
    "SGD": Rule(sgd, 1, None, sgd),
    "Nesterov": Rule(nesterov, 1, None, nesterov),
    "AdaGrad": Rule(adagrad, 1, _no_momentum, kernels.adagrad),
    "RMSProp": Rule(rmsprop, 1, _rmsprop_check, kernels.rmsprop),
    "AdaDelta": Rule(adadelta, 2, None, kernels.adadelta),
    "Adam": Rule(adam, 2, None, kernels.adam),
}


def rule_for(param):
    """The :data:`RULES` entry of ``param.type`` (the legacy ``solver_type`` enum must have been
    upgraded by ``port.upgrade.upgrade_solver``), after Caffe's checks of the solver's values."""
    if param.HasField("solver_type"):
        raise SolverError("solver_type: the legacy enum is set; upgrade the SolverParameter "
                          "(fcn_port.port.formats.upgrade.upgrade_solver) first")
    rule = RULES.get(param.type)
    if rule is None:
        raise SolverError(f"type: unknown solver type '{param.type}'; Caffe knows "
                          f"{', '.join(RULES)}")
    for field in ("momentum", "momentum2", "weight_decay", "delta", "rms_decay"):
        if not math.isfinite(getattr(param, field)):  # every weight NaN after one update
            raise SolverError(f"{field}: must be a finite number, got {getattr(param, field)}")
    if math.isnan(param.clip_gradients):
        raise SolverError("clip_gradients: must be a number (< 0: no clipping), got nan")
    if rule.check:
        rule.check(param)
    return rule
