"""Caffe's fillers (``filler.hpp``): the initial value of a learnable blob.

``fill(t, filler)`` fills a tensor in place as a FillerParameter says: ``constant``, ``uniform``,
``gaussian``, ``xavier`` and ``msra`` (fan-in, fan-out or their mean per ``variance_norm``, as
``XavierFiller`` / ``MSRAFiller`` compute them from ``count / shape(0)`` and
``count / shape(1)``), ``positive_unitball`` and ``bilinear``. The random ones draw from
PyTorch's generator, so they match Caffe in distribution, not in values.

:func:`bilinear_kernel` is the upsampling kernel of Caffe's ``BilinearFiller`` and of the
official FCN ``surgery.upsample_filt``: the deconvolutions' fixed weights, and the one
definition of it that the layers and the weight surgery share.
"""
import math

import torch


def bilinear_kernel(size):
    """The official FCN upsampling kernel (``surgery.upsample_filt``; also Caffe's ``bilinear``
    filler): a separable tent of ``factor = (size + 1) // 2`` centred at ``factor - 1`` for odd
    sizes and ``factor - 0.5`` for even ones. Returns a (size, size) float32 tensor."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor
    return (ramp[:, None] * ramp[None, :]).float()


def fill(t, filler):
    """Fill tensor ``t`` in place as Caffe's FillerParameter says (the RNG stream differs from
    Caffe's, so random fillers match in distribution, not in values)."""
    kind = filler.type
    with torch.no_grad():
        if kind == "constant":
            t.fill_(filler.value)
        elif kind == "uniform":
            t.uniform_(filler.min, filler.max)
        elif kind == "gaussian":
            t.normal_(filler.mean, filler.std)
        elif kind in ("xavier", "msra"):
            fan_in = t.numel() // t.shape[0] if t.dim() else 1
            fan_out = t.numel() // t.shape[1] if t.dim() > 1 else t.numel()
            n = {0: fan_in, 1: fan_out, 2: (fan_in + fan_out) / 2}[filler.variance_norm]
            if kind == "xavier":
                scale = math.sqrt(3.0 / n)
                t.uniform_(-scale, scale)
            else:
                t.normal_(0.0, math.sqrt(2.0 / n))
        elif kind == "positive_unitball":
            t.uniform_(0, 1)
            t /= t.reshape(t.shape[0], -1).sum(1).reshape(-1, *[1] * (t.dim() - 1))
        elif kind == "bilinear":
            if t.dim() != 4 or t.shape[2] != t.shape[3]:
                raise ValueError(f"bilinear filler needs a square 4-D blob, got {tuple(t.shape)}")
            t.copy_(bilinear_kernel(t.shape[2]).expand_as(t))
        else:
            raise ValueError(f"unknown filler type {kind!r}")
    return t
