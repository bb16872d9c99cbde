"""LRN, BatchNorm, Scale and Bias with Caffe's exact rules.

``LRN`` (4-D bottoms, odd ``local_size`` n):

* ``ACROSS_CHANNELS``: ``y = x * (k + alpha/n * S) ** -beta`` where S sums ``x^2`` over the n
  channels centred on each channel, zero padded at the ends. ``F.local_response_norm`` computes
  the same thing but pads the window asymmetrically for even sizes; Caffe rejects even sizes.
* ``WITHIN_CHANNEL``: Caffe builds it from other layers: ``y = x * (1 + alpha * A) ** -beta``
  where A is an AVE pooling of ``x^2`` with kernel n, stride 1, pad (n-1)/2. ``k`` is *not*
  used in this mode, and Caffe's AVE pooling divides by the window size counting the padding
  (always n^2 here, also at the borders), i.e. ``avg_pool2d(count_include_pad=True)``.

``BatchNorm`` normalizes only; the affine part is a separate ``Scale`` layer (PyTorch's
``BatchNorm2d`` does both and keeps mean/var directly). Caffe's three blobs are a running
*sum* of means, a running sum of variances and their scale factor s; the statistics are
``blob / s`` (and 0 when s is 0). ``use_global_stats`` defaults to ``phase == TEST``.
``y = (x - mean) / sqrt(var + eps)``, in that order (``batch_norm_layer.cpp`` scales the blobs
by ``1 / s``, subtracts, adds ``eps``, takes the square root and divides), with a correctly
rounded ``sqrt`` (:mod:`.exact`: torch's CPU one is not). Without global stats the batch's
per-channel mean and *biased* variance are used (the gradient is the full batch-norm gradient,
as Caffe's), and each forward updates the blobs: ``s = s * f + 1``, ``blob0 = blob0 * f +
mean``,
``blob1 = blob1 * f + m/(m-1) * var`` with ``f = moving_average_fraction`` and m the number of
values per channel (PyTorch's ``momentum`` is ``1 - f`` applied to the statistics themselves).
The blobs are statistics, not learned: they never receive gradients (Caffe forces their
``lr_mult`` to 0 and rejects ``param`` specs with another value).

``MVN`` (``mvn_layer.cpp``): per (sample, channel), or per sample with ``across_channels``,
``y = x - mean``, and with ``normalize_variance`` (default) ``y = (x - mean) / (sqrt(var) +
eps)``: eps is added *after* the square root (``caffe_powx(var, 0.5)`` then
``caffe_add_scalar``), var is the biased mean of squares. Caffe's backward is
``(dy - mean(dy) - y mean(dy y)) / (sqrt(var) + eps)``, which treats ``y`` as if eps were 0;
autograd of the forward would not, and differs where eps is not negligible, so the gradient is
Caffe's own (a custom autograd Function). Without ``normalize_variance`` it is
``dy - mean(dy)``, as autograd's.

``Scale`` / ``Bias``: ``y = x * s (+ b)`` / ``y = x + b`` where s (b) is a learned blob or the
second bottom, broadcast from ``axis`` over ``num_axes`` axes (-1: to the end) of the first
bottom, dims matching exactly (a 0-D blob is a scalar, axis ignored). The learned scale starts
from ``filler`` (constant 1 when not given); ``bias_term`` adds a Bias with ``bias_filler``
(constant 0). Blob order: [scale, bias], or [bias] when the scale is a bottom.
"""

import numpy as np
import torch
import torch.nn.functional as F

from .base import CaffeLayer, canonical_axis
from .exact import sqrt
from .registry import register
from ..formats.proto import caffe_pb2


def _f32(v):
    return float(np.float32(v))


def lrn(x, size, alpha, beta, k, within):
    """Caffe's LRN of ``x`` (N, C, H, W): across channels ``x * (k + alpha / n * sum x^2)^-beta``
    over the n-channel window (zero-padded), ``alpha / n`` rounded to float32 as Caffe stores
    it; within a channel ``x * (1 + alpha * mean x^2)^-beta`` over the n x n window, padding
    counted. The LRN layer runs this, and codegen copies it."""
    pad, sq = (size - 1) // 2, x * x
    if within:
        area = F.avg_pool2d(sq, size, stride=1, padding=pad, count_include_pad=True)
        return x * torch.pow(1 + area * alpha, -beta)
    padded, c = F.pad(sq, (0, 0, 0, 0, pad, pad)), x.shape[1]
    window = padded[:, 0:c]
    for i in range(1, size):
        window = window + padded[:, i:i + c]
    return x * torch.pow(window * torch.full((), alpha / size, dtype=torch.float32) + k, -beta)


@register("LRN")
class LRN(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.lrn_param
        self.size, self.alpha, self.beta, self.k = p.local_size, p.alpha, p.beta, p.k
        if self.size % 2 != 1:
            self.fail(f"local_size must be odd, got {self.size}")
        self.within = p.norm_region == caffe_pb2.LRNParameter.WITHIN_CHANNEL

    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        if len(bottoms[0]) != 4:
            self.fail(f"bottom must have 4 axes (num, channels, height, width), got "
                      f"{tuple(bottoms[0])}")
        return [tuple(bottoms[0])]

    def forward(self, x):
        return lrn(x, self.size, self.alpha, self.beta, self.k, self.within)


@register("BatchNorm")
class BatchNorm(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.batch_norm_param
        self.use_global_stats = p.use_global_stats if p.HasField("use_global_stats") \
            else phase == "TEST"
        self.fraction, self.eps = p.moving_average_fraction, p.eps
        shape = tuple(bottom_shapes[0]) if bottom_shapes else ()
        self.channels = 1 if len(shape) == 1 else shape[1] if len(shape) > 1 else 0
        for i, blob_shape in enumerate([(self.channels,), (self.channels,), (1,)]):
            self.add_blob(blob_shape).requires_grad_(False)
            if i < len(lp.param) and lp.param[i].lr_mult != 0:
                self.fail(f"param {i} has lr_mult {lp.param[i].lr_mult}: batch normalization "
                          f"statistics cannot be configured as learned parameters (lr_mult 0)")

    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        shape = tuple(bottoms[0])
        if len(shape) < 2:
            self.fail(f"bottom needs a channel axis (axis 1), got shape {shape}")
        if shape[1] != self.blob(0).shape[0]:
            self.fail(f"bottom has {shape[1]} channels, the statistics have "
                      f"{self.blob(0).shape[0]}")
        return [shape]

    def forward(self, x):
        view = (1, -1) + (1,) * (x.dim() - 2)
        if self.use_global_stats:
            s = self.blob(2).detach()[0]
            factor = torch.where(s == 0, torch.zeros_like(s), 1 / s)
            mean, var = self.blob(0).detach() * factor, self.blob(1).detach() * factor
        else:
            dims = [0] + list(range(2, x.dim()))
            mean = x.mean(dims)
            var = ((x - mean.view(view)) ** 2).mean(dims)
            self._update_stats(mean.detach(), var.detach(), x.numel() // x.shape[1])
        return (x - mean.view(view)) / sqrt(var + self.eps).view(view)  # correctly rounded

    @torch.no_grad()
    def _update_stats(self, mean, var, m):
        f = self.fraction
        correction = _f32(np.float32(m) / np.float32(m - 1)) if m > 1 else 1.0
        self.blob(2).mul_(f).add_(1)
        self.blob(0).mul_(f).add_(mean)
        self.blob(1).mul_(f).add_(var * correction)


def _broadcast_shape(layer, x_shape, b_shape, axis_param, what):
    """The shape that broadcasts blob ``b_shape`` over ``x_shape`` as Caffe's Scale/Bias do."""
    x_shape, b_shape = tuple(x_shape), tuple(b_shape)
    axis = 0 if len(b_shape) == 0 else canonical_axis(layer, axis_param, len(x_shape))
    if len(x_shape) < axis + len(b_shape):
        layer.fail(f"{what} shape {b_shape} extends past bottom[0] shape {x_shape} when applied "
                   f"from axis {axis}")
    for i, d in enumerate(b_shape):
        if x_shape[axis + i] != d:
            layer.fail(f"dimension mismatch between bottom[0] shape {x_shape} (axis {axis + i}: "
                       f"{x_shape[axis + i]}) and {what} shape {b_shape} (axis {i}: {d})")
    return (1,) * axis + b_shape + (1,) * (len(x_shape) - axis - len(b_shape))


def _blob_shape(layer, x_shape, axis_param, num_axes, what):
    """Shape of a learned Scale/Bias blob: ``num_axes`` dims of bottom[0] from ``axis``."""
    axis = canonical_axis(layer, axis_param, len(x_shape))
    if num_axes < -1:
        layer.fail(f"num_axes must be non-negative or -1, got {num_axes}")
    if num_axes >= 0 and len(x_shape) < axis + num_axes:
        layer.fail(f"{what} blob with {num_axes} axes from axis {axis} extends past bottom[0] "
                   f"shape {tuple(x_shape)}")
    return tuple(x_shape[axis:] if num_axes == -1 else x_shape[axis:axis + num_axes])


def _check_bottoms(layer, bottoms):
    if not 1 <= len(bottoms) <= 2:
        layer.fail(f"takes 1 or 2 bottoms, got {len(bottoms)}")


@register("Bias")
class Bias(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        _check_bottoms(self, bottom_shapes)
        p = lp.bias_param
        if len(bottom_shapes) == 1:
            self.add_blob(_blob_shape(self, bottom_shapes[0], p.axis, p.num_axes, "bias"),
                          p.filler)

    def top_shapes(self, bottoms):
        _check_bottoms(self, bottoms)
        b = bottoms[1] if len(bottoms) == 2 else self.blob(0).shape
        _broadcast_shape(self, bottoms[0], b, self.lp.bias_param.axis, "bias")
        return [tuple(bottoms[0])]

    def forward(self, x, *bias):
        b = bias[0] if bias else self.blob(0)
        return x + b.reshape(_broadcast_shape(self, x.shape, b.shape, self.lp.bias_param.axis,
                                              "bias"))


@register("Scale")
class Scale(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        _check_bottoms(self, bottom_shapes)
        p = lp.scale_param
        x_shape = bottom_shapes[0]
        if len(bottom_shapes) == 1:
            filler = p.filler if p.HasField("filler") else \
                caffe_pb2.FillerParameter(type="constant", value=1)
            self.add_blob(_blob_shape(self, x_shape, p.axis, p.num_axes, "scale"), filler)
        self.bias_term = p.bias_term
        if self.bias_term:
            num_axes = len(bottom_shapes[1]) if len(bottom_shapes) == 2 else p.num_axes
            self.bias_index = self.n_blobs
            self.add_blob(_blob_shape(self, x_shape, p.axis, num_axes, "bias"), p.bias_filler)

    def _scale_and_bias(self, x_shape, bottoms):
        s = bottoms[0] if bottoms else self.blob(0)
        axis = self.lp.scale_param.axis
        s_view = _broadcast_shape(self, x_shape, tuple(s.shape), axis, "scale")
        if not self.bias_term:
            return s, s_view, None, None
        b = self.blob(self.bias_index)
        return s, s_view, b, _broadcast_shape(self, x_shape, tuple(b.shape), axis, "bias")

    def top_shapes(self, bottoms):
        _check_bottoms(self, bottoms)
        x_shape = tuple(bottoms[0])
        s_shape = tuple(bottoms[1]) if len(bottoms) == 2 else tuple(self.blob(0).shape)
        _broadcast_shape(self, x_shape, s_shape, self.lp.scale_param.axis, "scale")
        if self.bias_term:
            _broadcast_shape(self, x_shape, tuple(self.blob(self.bias_index).shape),
                             self.lp.scale_param.axis, "bias")
        return [x_shape]

    def forward(self, x, *scale):
        s, s_view, b, b_view = self._scale_and_bias(tuple(x.shape), scale)
        y = x * s.reshape(s_view)
        return y if b is None else y + b.reshape(b_view)


class _MVN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, eps):
        dim = x2.shape[1]
        mean = x2.sum(1, keepdim=True) * _f32(1.0 / dim)
        centred = x2 - mean
        var = (centred * centred).sum(1, keepdim=True) * _f32(1.0 / dim)
        std = torch.pow(var, 0.5) + eps  # caffe_powx(var, 0.5), then + eps
        y = centred / std
        ctx.save_for_backward(y, std)
        return y

    @staticmethod
    def backward(ctx, dy):
        y, std = ctx.saved_tensors
        dim = y.shape[1]
        d = dy - (dy.sum(1, keepdim=True) + y * (dy * y).sum(1, keepdim=True)) * _f32(1.0 / dim)
        return d / std, None


@register("MVN")
class MVN(CaffeLayer):
    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        if len(bottoms[0]) < 2 and not self.lp.mvn_param.across_channels:
            self.fail(f"needs a channel axis (axis 1), got shape {tuple(bottoms[0])}")
        return [tuple(bottoms[0])]

    def forward(self, x):
        p = self.lp.mvn_param
        rows = x.shape[0] if p.across_channels else x.shape[0] * x.shape[1]
        x2 = x.reshape(rows, -1)
        if not p.normalize_variance:
            return (x2 - x2.sum(1, keepdim=True) * _f32(1.0 / x2.shape[1])).reshape(x.shape)
        return _MVN.apply(x2, _f32(p.eps)).reshape(x.shape)
