"""Caffe's ``Reduction`` layer (``reduction_layer.cpp``).

How Caffe computes it
---------------------
Every axis from ``axis`` (default 0, negative counts from the end) to the last is reduced:
the top's shape is the bottom's dims before ``axis`` (a scalar for axis 0). Per output, over
the ``dim = count(axis)`` values: ``SUM`` (default) the sum, ``ASUM`` the sum of absolute
values, ``SUMSQ`` the sum of squares, ``MEAN`` the sum times ``1 / dim``; then times ``coeff``
(default 1; for MEAN Caffe folds it in as ``coeff / dim`` in float). Backward: ``coeff *
top_diff`` times 1 (SUM), ``sign(x)`` (ASUM, 0 at 0), ``2 x`` (SUMSQ) or ``1 / dim`` (MEAN).

Where PyTorch differs
---------------------
Nowhere in the arithmetic: ``torch.sum`` / ``abs`` / ``square`` and their autograd give the
same values and gradients (``abs``'s gradient is 0 at 0, as Caffe's ``sign``), summed in
another order than OpenBLAS's ``sdot`` (float rounding only). The reduction over trailing axes
is a ``reshape`` to (outer, dim).
"""
import math

import numpy as np

from .base import CaffeLayer, canonical_axis
from .registry import register
from ..formats.proto import caffe_pb2

_OP = caffe_pb2.ReductionParameter


@register("Reduction")
class Reduction(CaffeLayer):
    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        shape = tuple(bottoms[0])
        axis = canonical_axis(self, self.lp.reduction_param.axis, len(shape)) if shape else 0
        return [shape[:axis]]

    def forward(self, x):
        p = self.lp.reduction_param
        axis = canonical_axis(self, p.axis, x.dim()) if x.dim() else 0
        outer = math.prod(x.shape[:axis])
        x2 = x.reshape(outer, -1)
        dim = x2.shape[1]
        coeff = float(np.float32(p.coeff))
        if p.operation == _OP.SUM:
            y = x2.sum(1)
        elif p.operation == _OP.ASUM:
            y = x2.abs().sum(1)
        elif p.operation == _OP.SUMSQ:
            y = (x2 * x2).sum(1)
        elif p.operation == _OP.MEAN:
            y, coeff = x2.sum(1), float(np.float32(coeff) / np.float32(dim))
        else:
            self.fail(f"unknown reduction operation {p.operation}")
        return (y * coeff if coeff != 1 else y).reshape(x.shape[:axis])
