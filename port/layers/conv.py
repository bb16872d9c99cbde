"""Caffe's ``Convolution`` and ``Deconvolution`` layers (both configured by ConvolutionParameter).

How Caffe computes them
-----------------------
Caffe's convolution is im2col + GEMM: for every output position it gathers the input window
(positions outside the input read as zero) and multiplies by the weight matrix, one group at a
time, then adds the bias. ``Deconvolution`` is the transpose (GEMM + col2im): every input pixel
scatters ``weight * value`` into the output, and whatever lands outside the output is dropped.

Geometry, per spatial axis (``k`` kernel, ``s`` stride, ``p`` pad, ``d`` dilation)::

    extent       = d * (k - 1) + 1
    Convolution    out = (H + 2p - extent) / s + 1        C++ integer division (truncates to 0)
    Deconvolution  out = s * (H - 1) + extent - 2p

Blobs, exactly as Caffe stores them (and as :meth:`CaffeLayer.add_blob` registers them):

    Convolution    "0" weight (num_output, C / group, *kernel)      = torch conv weight layout
    Deconvolution  "0" weight (C, num_output / group, *kernel)      = torch conv_transpose layout
    both           "1" bias   (num_output,)                         only if bias_term

Settings: ``kernel_size``, ``pad``, ``stride`` and ``dilation`` are repeated fields. Give one
value for every spatial axis, or one value per axis. ``kernel_h/kernel_w``, ``pad_h/pad_w`` and
``stride_h/stride_w`` are the 2-D spelling; you cannot mix them with the repeated field. ``axis``
(default 1) is the channel axis. The axes before it are all batch axes, and every axis after it
is spatial, so a 5-D bottom with axis 1 gives a 3-D convolution. Several bottoms are allowed.
They must all have the same shape, they share the weights, and each gives its own top.

Where stock PyTorch differs
---------------------------
* ``F.conv2d`` rejects a kernel that reaches past the padded input. Caffe's output size uses C's
  truncating division, so when ``H + 2p - extent`` lies in ``(-s, 0)`` Caffe still makes one
  output, and the part of the window outside the input reads as zero. Whenever the last window
  overruns the padded input, this module pads the input with extra zeros on the right.
* Caffe accepts an output of size 0 (an empty blob). PyTorch raises for that, so here the empty
  top is produced without calling the op. A negative size is an error in both.
* Caffe works on ``float32`` GEMMs and PyTorch on its own kernels, so results agree only to
  rounding (about 1e-6 relative on the FCN nets); inside :func:`.blas.caffe_blas` a 2-D
  convolution makes Caffe's own GEMM calls and agrees bit for bit.
* Under the TorchScript tracer the geometry above runs in Python and does not enter the graph:
  with the channel axis 1 and nothing before it but N, the input goes to the op as it is and
  the op's own output is the top (no reshape to a size computed here), so a traced module
  follows the input's size. The extra right-hand zeros are then baked in as traced, which is
  never the case with FCN's pad 100 (``H + 2p >= extent`` throughout). Under ``torch.export``
  / ``torch.compile`` that case skips the Python checks and calls the op directly.
* PyTorch has N-D convolution only for 1, 2 and 3 spatial axes. Caffe's ``im2col_nd`` also
  allows more, and this module rejects those with a clear error.

``Im2col`` (``im2col_layer.cpp``) is Caffe's first step alone, as a layer: the same geometry
fields of ConvolutionParameter (no weights), and a top (N, C * kh * kw, out_h, out_w) whose
channel ``(c * kh + i) * kw + j`` holds input channel ``c`` at window offset ``(i, j)``:
``F.unfold``'s row order, so the layer is ``F.unfold`` reshaped (2-D only here; its backward,
col2im, is unfold's autograd).
"""
import math

import torch
import torch.nn.functional as F

from . import blas
from .base import CaffeLayer, canonical_axis
from .registry import register

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _c_div(a, b):
    """Integer division truncating toward zero, like C++ ``int / int`` (``b > 0``); no ``abs``,
    so symbolic sizes (``torch.export``) only meet a sign test."""
    return a // b if a >= 0 else -(-a // b)


class _BaseConv(CaffeLayer):
    """What Convolution and Deconvolution share: settings, checks, blobs, batching over axes."""

    transposed = False

    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        cp = lp.convolution_param
        if not bottom_shapes:
            self.fail("needs at least one bottom")
        if lp.top and len(lp.top) != len(bottom_shapes):
            self.fail(f"needs one top per bottom, got {len(bottom_shapes)} bottoms and "
                      f"{len(lp.top)} tops")
        shape = tuple(bottom_shapes[0])
        self.ndim = len(shape)
        self.axis = canonical_axis(self, cp.axis, self.ndim)
        n = self.ndim - self.axis - 1  # number of spatial axes
        if n < 1 or n > 3:
            self.fail(f"{n} spatial axes after channel axis {self.axis} (bottom shape "
                      f"{shape}); only 1-, 2- and 3-D convolution are supported")
        self.kernel = self._dims(cp, "kernel_size", "kernel_h", "kernel_w", n, None)
        self.stride = self._dims(cp, "stride", "stride_h", "stride_w", n, 1)
        self.pad = self._dims(cp, "pad", "pad_h", "pad_w", n, 0)
        self.dilation = self._dims(cp, "dilation", None, None, n, 1)
        for what, vals in (("kernel size", self.kernel), ("stride", self.stride),
                           ("dilation", self.dilation)):
            if any(v <= 0 for v in vals):
                self.fail(f"{what} must be > 0 in every spatial axis, got {list(vals)}")

        self.channels = shape[self.axis]
        self.num_output = cp.num_output
        self.group = cp.group
        if self.num_output <= 0:
            self.fail(f"num_output must be > 0, got {self.num_output}")
        if self.group <= 0:
            self.fail(f"group must be > 0, got {self.group}")
        if self.channels % self.group:
            self.fail(f"input channels {self.channels} (axis {self.axis} of bottom {shape}) are "
                      f"not divisible by group {self.group}")
        if self.num_output % self.group:
            self.fail(f"num_output {self.num_output} is not divisible by group {self.group}")

        if self.transposed:  # (C_in, num_output / group, *kernel)
            wshape = (self.channels, self.num_output // self.group) + self.kernel
        else:                # (num_output, C_in / group, *kernel)
            wshape = (self.num_output, self.channels // self.group) + self.kernel
        self.add_blob(wshape, cp.weight_filler)
        self.bias_term = cp.bias_term
        if self.bias_term:
            self.add_blob((self.num_output,), cp.bias_filler)
        self.top_shapes(bottom_shapes)  # Caffe's SetUp ends with Reshape: check the shapes now

    def _dims(self, cp, field, field_h, field_w, n, default):
        """One value per spatial axis from a repeated field or its _h/_w pair (Caffe's rules)."""
        if field_h and (cp.HasField(field_h) or cp.HasField(field_w)):
            if n != 2:
                self.fail(f"{field_h} & {field_w} can only be used for 2-D convolution, "
                          f"this one has {n} spatial axes")
            if len(getattr(cp, field)):
                self.fail(f"give either {field} or {field_h}/{field_w}, not both")
            return (getattr(cp, field_h), getattr(cp, field_w))
        vals = list(getattr(cp, field))
        if not vals and default is not None:
            return (default,) * n
        if len(vals) not in (1, n):
            self.fail(f"{field} must be given once or once per spatial axis ({field} given "
                      f"{len(vals)} times; {n} spatial axes)")
        return tuple(vals) * n if len(vals) == 1 else tuple(vals)

    def _out_size(self, size, i):
        extent = self.dilation[i] * (self.kernel[i] - 1) + 1
        if self.transposed:
            return self.stride[i] * (size - 1) + extent - 2 * self.pad[i]
        return _c_div(size + 2 * self.pad[i] - extent, self.stride[i]) + 1

    def top_shapes(self, bottoms):
        first = tuple(bottoms[0])
        if len(first) != self.ndim:
            self.fail(f"bottom has {len(first)} axes {first}; this layer was set up for "
                      f"{self.ndim} (bottom num_axes may not change)")
        if first[self.axis] != self.channels:
            self.fail(f"bottom has {first[self.axis]} channels {first}; the weights are for "
                      f"{self.channels} (input size incompatible with convolution kernel)")
        for j, b in enumerate(bottoms[1:], 1):
            if tuple(b) != first:
                self.fail(f"all bottoms must have the same shape: bottom 0 {first} vs. "
                          f"bottom {j} {tuple(b)}")
        spatial = first[self.axis + 1:]
        out = tuple(self._out_size(h, i) for i, h in enumerate(spatial))
        if any(o < 0 for o in out):
            self.fail(f"negative output size {out} for spatial input {spatial} with kernel "
                      f"{self.kernel}, stride {self.stride}, pad {self.pad}, dilation "
                      f"{self.dilation}")
        top = first[:self.axis] + (self.num_output,) + out
        return [top] * len(bottoms)

    def forward(self, *bottoms):
        tops = tuple(self._one(x) for x in bottoms)
        return tops[0] if len(tops) == 1 else tops

    def _one(self, x):
        plain = self.axis == 1 and x.dim() == self.ndim  # (N, C, *spatial): no reshape needed
        bias = self.blob(1) if self.bias_term else None
        if plain and torch.compiler.is_compiling():  # torch.export / compile: no Python sizes
            if self.transposed:
                return self._conv_t(x, bias)
            return _CONV[x.dim() - 2](x, self.blob(0), bias, stride=self.stride,
                                      padding=self.pad, groups=self.group,
                                      dilation=self.dilation)
        top = self.top_shapes([tuple(x.shape)])[0]
        lead, spatial = x.shape[:self.axis], x.shape[self.axis + 1:]
        if 0 in top:  # Caffe allows an empty top; torch's ops reject a zero output size
            return x.new_zeros(top)
        if not plain:  # every axis before the channel axis is a batch axis: (num, C, *spatial)
            x = x.reshape((math.prod(lead), self.channels) + tuple(spatial))
        if self.transposed:
            y = self._conv_t(x, bias)
        else:
            y = self._conv(x, bias, top[self.axis + 1:])
        return y if plain else y.reshape(top)

    def _conv_t(self, x, bias):
        return _CONV_T[x.dim() - 2](x, self.blob(0), bias, stride=self.stride, padding=self.pad,
                                    groups=self.group, dilation=self.dilation)

    def _conv(self, x, bias, out):
        """Convolution; with extra right-hand zeros where Caffe's last window overruns the input."""
        spatial = x.shape[2:]
        extra = [max(0, (o - 1) * s + self.dilation[i] * (k - 1) + 1 - (h + 2 * p))
                 for i, (o, s, k, h, p) in enumerate(zip(out, self.stride, self.kernel,
                                                         spatial, self.pad))]
        pad = self.pad
        if any(extra):
            widths = []  # F.pad lists (left, right) pairs from the last axis backwards
            for p, e in reversed(list(zip(self.pad, extra))):
                widths += [p, p + e]
            x = F.pad(x, widths)
            pad = 0
        if len(spatial) == 2 and blas.active(x):  # Caffe's own GEMM calls (blas.caffe_blas)
            return blas.Conv2d.apply(x, self.blob(0), bias, tuple(self.stride),
                                     (0, 0) if pad == 0 else tuple(pad), tuple(self.dilation),
                                     self.group)
        return _CONV[len(spatial)](x, self.blob(0), bias, stride=self.stride, padding=pad,
                                   groups=self.group, dilation=self.dilation)

    def extra_repr(self):
        return (f"name={self.name!r}, {self.channels}->{self.num_output}, kernel={self.kernel}, "
                f"stride={self.stride}, pad={self.pad}, dilation={self.dilation}, "
                f"group={self.group}, bias={self.bias_term}")


@register("Convolution")
class Convolution(_BaseConv):
    """Caffe ``Convolution``: cross-correlation, zero padding, groups, dilation, bias."""

    transposed = False


@register("Deconvolution")
class Deconvolution(_BaseConv):
    """Caffe ``Deconvolution``: the transpose of Convolution (= ``conv_transpose``, no
    output_padding); weight blob is (C_in, num_output / group, *kernel)."""

    transposed = True


@register("Im2col")
class Im2col(CaffeLayer):
    _dims = _BaseConv._dims

    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        cp = lp.convolution_param
        if len(bottom_shapes) != 1 or len(bottom_shapes[0]) != 4 or cp.axis not in (1, -3):
            self.fail(f"takes one (N, C, H, W) bottom with the channel axis 1 (2-D im2col "
                      f"only), got {[tuple(b) for b in bottom_shapes]}, axis {cp.axis}")
        self.kernel = self._dims(cp, "kernel_size", "kernel_h", "kernel_w", 2, None)
        self.stride = self._dims(cp, "stride", "stride_h", "stride_w", 2, 1)
        self.pad = self._dims(cp, "pad", "pad_h", "pad_w", 2, 0)
        self.dilation = self._dims(cp, "dilation", None, None, 2, 1)
        if min(self.kernel + self.stride + self.dilation) <= 0:
            self.fail(f"kernel {self.kernel}, stride {self.stride} and dilation "
                      f"{self.dilation} must be > 0")
        self.top_shapes(bottom_shapes)

    def _out(self, size):
        out = [_c_div(h + 2 * p - (d * (k - 1) + 1), s) + 1 for h, k, s, p, d in
               zip(size, self.kernel, self.stride, self.pad, self.dilation)]
        if min(out) < 0:
            self.fail(f"negative output size {out} for input {tuple(size)}")
        return out

    def top_shapes(self, bottoms):
        n, c, *size = bottoms[0]
        return [(n, c * math.prod(self.kernel), *self._out(size))]

    def forward(self, x):
        out = self._out(x.shape[2:])
        extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (h + 2 * p)) for o, s, k, d, h, p in
                 zip(out, self.stride, self.kernel, self.dilation, x.shape[2:], self.pad)]
        (ph, pw), (eh, ew) = self.pad, extra
        x = F.pad(x, (pw, pw + ew, ph, ph + eh))
        if 0 in out:
            return x.new_zeros(self.top_shapes([tuple(x.shape)])[0])
        cols = F.unfold(x, self.kernel, self.dilation, 0, self.stride)
        return cols.reshape(x.shape[0], cols.shape[1], *out)
