"""InnerProduct: Caffe's fully connected layer.

The bottom is viewed as a matrix M x K, with M the product of the dims before ``axis``
(default 1) and K the product of the dims from ``axis`` on (so a 4-D N x C x H x W bottom is
flattened to N x CHW, like ``x.flatten(1)`` before ``nn.Linear``). The top's shape is the
bottom's dims before ``axis`` followed by ``num_output`` N.

Blob 0 is the weight, N x K as ``nn.Linear.weight`` (``y = x W^T``), or K x N when
``transpose: true`` (``y = x W``); blob 1 the bias (N), present when ``bias_term`` (default true).
They start from ``weight_filler`` / ``bias_filler`` (Caffe's default filler is constant 0, not
PyTorch's Kaiming uniform). K is fixed when the layer is set up: a later bottom with another
size from ``axis`` on is an error, as in Caffe.

This is the layer FCN "convolutionalizes": the VGG fc6/fc7 weights N x K reshape to
N x C x kh x kw convolution kernels (see ``port.surgery``). Inside :func:`.blas.caffe_blas` the
product is Caffe's own ``cblas_sgemm`` call, bit for bit.
"""
import math

import torch
import torch.nn.functional as F

from . import blas
from .base import CaffeLayer, canonical_axis
from .registry import register


@register("InnerProduct")
class InnerProduct(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.inner_product_param
        if len(bottom_shapes) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottom_shapes)}")
        shape = tuple(bottom_shapes[0])
        axis = canonical_axis(self, p.axis, len(shape))
        self.num_output, self.bias_term, self.transpose = p.num_output, p.bias_term, p.transpose
        self.k = math.prod(shape[axis:])
        n = self.num_output
        self.add_blob((self.k, n) if self.transpose else (n, self.k), p.weight_filler)
        if self.bias_term:
            self.add_blob((n,), p.bias_filler)

    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        shape = tuple(bottoms[0])
        axis = canonical_axis(self, self.lp.inner_product_param.axis, len(shape))
        k = math.prod(shape[axis:])
        if k != self.k:
            self.fail(f"input size incompatible with the weights: bottom {shape} has {k} values "
                      f"from axis {axis}, the layer was set up for {self.k}")
        return [shape[:axis] + (self.num_output,)]

    def forward(self, x):
        axis = canonical_axis(self, self.lp.inner_product_param.axis, x.dim())
        lead = tuple(x.shape[:axis])
        x2 = x.reshape(math.prod(lead), self.k)
        w = self.blob(0)
        b = self.blob(1) if self.bias_term else None
        if blas.active(x):  # Caffe's own GEMM calls (blas.caffe_blas)
            y = blas.InnerProduct.apply(x2, w, b, self.transpose)
        elif self.transpose:
            y = x2 @ w if b is None else torch.addmm(b, x2, w)
        else:
            y = F.linear(x2, w, b)
        return y.reshape(lead + (self.num_output,))
