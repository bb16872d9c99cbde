"""Neuron layers: one bottom, one top of the same shape, computed element by element.

How Caffe computes each one, and where stock PyTorch differs:

``ReLU``
    ``y = max(x, 0) + negative_slope * min(x, 0)``. Caffe's gradient is ``negative_slope`` where
    ``x <= 0``, at exactly 0 too; ``F.leaky_relu`` does the same, and ``F.relu`` (gradient 0 at
    0) is what Caffe gives when the slope is 0.
``Sigmoid``, ``TanH``
    Caffe evaluates the sigmoid as ``0.5 * tanh(0.5 x) + 0.5`` in double precision;
    ``torch.sigmoid`` agrees to an ulp, and both backward passes are ``y (1 - y)`` / ``1 - y^2``.
``Power``
    ``y = (shift + scale * x) ** power``. When ``power * scale == 0`` Caffe writes the constant
    ``1`` (power 0) or ``shift ** power`` and a zero gradient. With ``shift == 0`` Caffe's
    backward is ``power * y / x``, which is NaN at ``x = 0`` where the true gradient (what
    autograd gives here) is finite; that is the only place the two differ.
``AbsVal``
    gradient ``sign(x)``, 0 at 0, as ``torch.abs``.
``BNLL``
    ``log(1 + e^x)`` evaluated as ``x + log(1 + e^-x)`` for ``x > 0`` so it never overflows.
    Caffe's gradient is ``sigmoid(min(x, 50))``: 0.5 at ``x = 0``, where an autograd of the
    piecewise form would give 0 or 1, so it has its own backward here. ``F.softplus`` returns
    ``x`` itself above its threshold (20): the same value in float32.
``Exp``
    ``y = base ** (shift + scale * x)``, computed as Caffe does: ``outer * exp(inner * x)`` with
    ``inner = ln(base) * scale`` and ``outer = base ** shift`` rounded to float. ``base = -1``
    means e.
``Log``
    ``y = log_base(shift + scale * x) = ln(shift + scale * x) / ln(base)``, ``base = -1`` is e.
``Dropout``
    Caffe's phase decides, not ``module.training``: TEST is the identity; TRAIN keeps each
    *element* (not each channel, unlike ``Dropout2d``) with probability ``1 - ratio`` and
    multiplies the kept ones by ``1 / (1 - ratio)`` ("inverted" dropout, as ``F.dropout``).
    Caffe draws from its own RNG, so masks agree in distribution, not bit for bit.
``Threshold``
    ``y = 1 if x > threshold else 0``. Caffe has no backward for it; here the top carries no
    gradient.
``PReLU`` (``prelu_layer.cpp``)
    ``y = max(x, 0) + a_c * min(x, 0)`` with one learnable slope per channel (axis 1), or one
    for all (``channel_shared``: Caffe's blob then has shape ``()``), filled with 0.25 unless a
    filler is given. Caffe's gradients: ``a_c`` where ``x <= 0`` for the bottom (at 0 too), and
    the sum of ``top_diff * x`` over ``x <= 0`` for the slope. A ``torch.where(x > 0, x, a x)``
    gives exactly these; ``max + a * min`` through autograd would give ``1 + a`` at 0.
``ELU``, ``Clip``, ``Swish``
    ``max(x, 0) + alpha (exp(min(x, 0)) - 1)`` (gradient ``alpha e^x`` for ``x <= 0``, as
    ``F.elu``); ``max(min, min(x, max))`` with gradient 1 for ``min <= x <= max`` (as
    ``torch.clamp``); ``x * sigmoid(beta x)``.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..formats.proto import caffe_pb2

from .base import CaffeLayer
from .registry import register


def f32(v):
    """``v`` rounded to float32, as a Python float: a constant Caffe computes in ``Dtype``."""
    return float(np.float32(v))


class _Neuron(CaffeLayer):
    """One bottom, one top of the same shape."""

    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        return [tuple(bottoms[0])]


@register("ReLU")
class ReLU(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        self.negative_slope = lp.relu_param.negative_slope

    def forward(self, x):
        if self.negative_slope == 0:
            return F.relu(x)
        return F.leaky_relu(x, self.negative_slope)


@register("Sigmoid")
class Sigmoid(_Neuron):
    def forward(self, x):
        return torch.sigmoid(x)


@register("TanH")
class TanH(_Neuron):
    def forward(self, x):
        return torch.tanh(x)


@register("AbsVal")
class AbsVal(_Neuron):
    def forward(self, x):
        return torch.abs(x)


@register("Power")
class Power(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.power_param
        self.power, self.scale, self.shift = p.power, p.scale, p.shift

    def forward(self, x):
        if f32(self.power * self.scale) == 0:
            with np.errstate(all="ignore"):
                value = 1.0 if self.power == 0 else \
                    f32(np.power(np.float64(self.shift), np.float64(self.power)))
            return torch.full_like(x, value)   # constant: no gradient, as in Caffe
        y = x
        if self.scale != 1:
            y = y * self.scale
        if self.shift != 0:
            y = y + self.shift
        if self.power != 1:
            y = torch.pow(y, self.power)
        return y


class _BNLLFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        pos = x > 0
        return torch.where(pos, x, 0) + torch.log1p(torch.exp(torch.where(pos, -x, x)))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        e = torch.exp(torch.clamp(x, max=50.0))
        return grad * (e / (e + 1))


@register("BNLL")
class BNLL(_Neuron):
    def forward(self, x):
        return _BNLLFunction.apply(x)


def _log_base(layer, base):
    """Caffe's ``ln(base)`` for Exp/Log: base -1 means e; others must be positive and finite."""
    if base == -1:
        return 1.0
    if not base > 0:
        layer.fail(f"base must be strictly positive (or -1 for e), got {base}")
    value = f32(math.log(base))
    if math.isinf(value) or math.isnan(value):
        layer.fail(f"log(base) = log({base}) is not finite")
    return value


@register("Exp")
class Exp(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.exp_param
        self.inner_scale = f32(_log_base(self, p.base) * p.scale)
        if p.shift == 0:
            self.outer_scale = 1.0
        else:
            self.outer_scale = f32(math.exp(p.shift) if p.base == -1 else math.pow(p.base, p.shift))

    def forward(self, x):
        y = torch.exp(x if self.inner_scale == 1 else x * self.inner_scale)
        return y if self.outer_scale == 1 else y * self.outer_scale


@register("Log")
class Log(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.log_param
        log_base = _log_base(self, p.base)
        if log_base == 0:
            self.fail(f"1/log(base) is not finite for base {p.base}")
        self.base_scale = float(np.float32(1) / np.float32(log_base))
        self.scale, self.shift = p.scale, p.shift

    def forward(self, x):
        y = x
        if self.scale != 1:
            y = y * self.scale
        if self.shift != 0:
            y = y + self.shift
        y = torch.log(y)
        return y if self.base_scale == 1 else y * self.base_scale


@register("Dropout")
class Dropout(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        self.ratio = lp.dropout_param.dropout_ratio
        if not 0 <= self.ratio < 1:
            self.fail(f"dropout_ratio must be in [0, 1), got {self.ratio}")
        self.scale = f32(1.0 / (1.0 - self.ratio))

    def forward(self, x):
        if self.phase != "TRAIN":
            return x
        keep = torch.bernoulli(torch.full_like(x, 1.0 - self.ratio))
        return x * keep * self.scale


@register("Threshold")
class Threshold(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        self.threshold = lp.threshold_param.threshold

    def forward(self, x):
        return (x.detach() > self.threshold).to(x.dtype)


@register("ELU")
class ELU(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        self.alpha = lp.elu_param.alpha

    def forward(self, x):
        return F.elu(x, self.alpha)


@register("Clip")
class Clip(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        self.min, self.max = lp.clip_param.min, lp.clip_param.max

    def forward(self, x):
        # Caffe: max(min, min(x, max)); with min > max every value becomes min
        return torch.clamp(torch.clamp(x, max=self.max), min=self.min)


@register("Swish")
class Swish(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        self.beta = lp.swish_param.beta

    def forward(self, x):
        return x * torch.sigmoid(x * self.beta if self.beta != 1 else x)


@register("PReLU")
class PReLU(_Neuron):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        x = bottom_shapes[0]
        if len(x) < 2:
            self.fail(f"needs a bottom of at least 2 axes (N, C, ...), got shape {tuple(x)}")
        p = lp.prelu_param
        filler = p.filler if p.HasField("filler") else \
            caffe_pb2.FillerParameter(type="constant", value=0.25)
        self.shared = p.channel_shared
        self.add_blob(() if self.shared else (x[1],), filler)

    def top_shapes(self, bottoms):
        shape = super().top_shapes(bottoms)
        if len(bottoms[0]) < 2 or (not self.shared and bottoms[0][1] != self.blob(0).numel()):
            self.fail(f"bottom shape {tuple(bottoms[0])} does not have the "
                      f"{self.blob(0).numel()} channels its slopes were made for")
        return shape

    def forward(self, x):
        a = self.blob(0)
        a = a if self.shared else a.reshape((1, -1) + (1,) * (x.dim() - 2))
        return torch.where(x > 0, x, a * x)
