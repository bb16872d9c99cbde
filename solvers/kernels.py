"""The adaptive solvers' updates in the order of Caffe's GPU kernels (``src/caffe/solvers/*.cu``).

How Caffe computes them on a GPU
--------------------------------
The CPU code (:mod:`.rules`) chains BLAS-like calls, each rounding to float; the ``.cu`` files
compute each element in one expression, in another order, and square by multiplying (no
``powf``). Per element ``i``, ``g`` the diff, ``h``/``h2``/``m``/``v`` the history::

    AdaGradUpdate   gi = g;  h = h + gi*gi;  g = local_rate * gi / (sqrt(h) + delta)
    RMSPropUpdate   gi = g;  h = rms_decay*h + (1-rms_decay)*gi*gi
                    g = local_rate * g / (sqrt(h) + delta)
    AdaDeltaUpdate  gi = g;  h = momentum*h + (1-momentum)*gi*gi
                    gi = gi * sqrt((h2 + delta) / (h + delta))
                    h2 = momentum*h2 + (1-momentum)*gi*gi;  g = local_rate * gi
    AdamUpdate      gi = g;  m = m*beta1 + gi*(1-beta1);  v = v*beta2 + gi*gi*(1-beta2)
                    g = corrected_local_rate * m / (sqrt(v) + eps_hat)

(left to right, C's precedence: ``local_rate * gi / x`` is ``(local_rate * gi) / x``; the CPU
code divides first and scales after; ``corrected_local_rate`` is ``local_rate * correction``
in float, as on the CPU). :class:`.solver.Solver` uses these on a CUDA device and
:mod:`.rules`' CPU order elsewhere; SGD and Nesterov have one order (their kernels compute
what the CPU calls do).

Where they differ: each operation here rounds to float, as torch runs it, where nvcc may fuse a
multiply and an add of a kernel into one FMA (``-fmad=true`` by default), which this cannot
know without the compiled kernel: so the order is Caffe's GPU order, and the result is within
an ulp or so of it per operation, not bit for bit. CUDA's ``sqrt`` and division are correctly
rounded, as torch's are on CUDA (on the CPU, where these run only in tests, numpy's).
"""
import numpy as np


def adagrad(diff, hist, local_rate, param, iter):
    h, = hist
    h.add_(diff * diff)
    diff.copy_((local_rate * diff) / (_sqrt(h) + _f(param.delta)))


def rmsprop(diff, hist, local_rate, param, iter):
    h, = hist
    decay = _f(param.rms_decay)
    h.copy_(decay * h + (_f(1 - _f32(param.rms_decay))) * diff * diff)
    diff.copy_((local_rate * diff) / (_sqrt(h) + _f(param.delta)))


def adadelta(diff, hist, local_rate, param, iter):
    h, h2 = hist
    m, delta = _f(param.momentum), _f(param.delta)
    one_minus = _f(1 - _f32(param.momentum))
    h.copy_(m * h + one_minus * diff * diff)
    diff.mul_(_sqrt((h2 + delta) / (h + delta)))
    h2.copy_(m * h2 + one_minus * diff * diff)
    diff.mul_(local_rate)


def adam_correction(param, iter):
    """Adam's ``sqrt(1 - pow(beta2, t)) / (1 - pow(beta1, t))``, ``t = iter + 1``, computed on
    the host for both orders: ``pow(float, int)`` is a double in C++, so all of it is double,
    rounded once to float."""
    t = iter + 1
    b1, b2 = float(np.float32(param.momentum)), float(np.float32(param.momentum2))
    return np.float32(np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t))


def adam(diff, hist, local_rate, param, iter):
    m, v = hist
    b1, b2 = _f(param.momentum), _f(param.momentum2)
    m.copy_(m * b1 + diff * _f(1 - _f32(param.momentum)))
    v.copy_(v * b2 + diff * diff * _f(1 - _f32(param.momentum2)))
    rate = _f(_f32(local_rate) * adam_correction(param, iter))
    diff.copy_((rate * m) / (_sqrt(v) + _f(param.delta)))


def _sqrt(x):
    """CUDA's ``sqrt``, correctly rounded: torch's on CUDA; numpy's elsewhere (torch's CPU
    ``sqrt`` is Sleef's, within 0.5001 ulp)."""
    if x.device.type == "cuda":
        return x.sqrt()
    import torch

    return torch.from_numpy(np.sqrt(x.detach().numpy()))


def _f32(x):
    return np.float32(x)


def _f(x):
    """A Python float holding ``x`` rounded to float32."""
    return float(_f32(x))
