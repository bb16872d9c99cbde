"""Caffe's ``Pooling`` layer: MAX, AVE and (TEST phase) STOCHASTIC over 4-D (N, C, H, W) blobs.

How Caffe computes it
---------------------
Per spatial axis (``H`` input, ``k`` kernel, ``s`` stride, ``p`` pad)::

    pooled = ceil((H + 2p - k) / s) + 1          round_mode CEIL (the default)
    pooled = floor((H + 2p - k) / s) + 1         round_mode FLOOR
    if p > 0 and (pooled - 1) * s >= H + p:      the last window would start in the right-hand
        pooled -= 1                              padding: drop it (only when p > 0)

(Caffe divides in float32; below 2^24 that rounding never moves a quotient across an
integer, so :func:`pooled_size` divides integers). Window ``i`` starts at ``i*s - p``.

* MAX starts each output at ``-FLT_MAX`` and replaces it when it finds a strictly greater
  value. It scans the part of the window that lies inside the image. So padding never wins,
  NaN is skipped, and a window with nothing above ``-FLT_MAX`` gives ``-FLT_MAX``. An optional
  second top (the "mask") holds the argmax as a float flat index ``h * W + w`` in its channel
  plane. It holds -1 when nothing won.
* AVE sums the part of the window inside the image. It divides by the window size clipped at
  ``H + p``: padding that lies inside ``[-p, H + p)`` counts in the divisor, and the part of a
  ceil-mode window that runs past ``H + p`` does not.
* STOCHASTIC is implemented only in Caffe's GPU code (the CPU code has NOT_IMPLEMENTED). In TEST
  it gives the probability-weighted average ``sum(x^2) / sum(x)`` over the window clipped to the
  image, or 0 where ``sum(x) <= 0``. This module computes that. TRAIN samples at random, and
  that is not supported here.
* ``global_pooling`` makes the kernel the bottom's full H x W (pad 0, stride 1).
* Caffe requires ``pad < kernel``. Padding is allowed only with MAX and AVE.

Where stock PyTorch differs
---------------------------
* ``ceil_mode=True`` in ``max_pool2d``/``avg_pool2d`` drops a last window that starts at or past
  ``H + p`` even when ``p == 0``. Caffe keeps such a window when there is no padding. It can
  only arise when ``k < s``, and Caffe then gives ``-FLT_MAX`` (MAX) or ``0 / size`` (AVE).
* PyTorch allows ``pad <= k / 2``. Caffe allows any ``pad < k``.
* PyTorch's MAX pads with ``-inf`` and propagates NaN. Caffe never returns less than
  ``-FLT_MAX`` and ignores NaN.
* Its ``count_include_pad`` divisor matches Caffe's only inside the limits above.

So, in general, this module pads explicitly: ``-FLT_MAX`` for MAX and zeros for the sums. It
adds as much padding on the right as Caffe's last window needs, and then takes the exact
``pooled`` outputs. For AVE it sums with ``avg_pool2d(divisor_override=1)`` and divides by a
divisor map computed with Caffe's formula.

Where they agree: MAX with pad 0, CEIL, every ``k >= s``, not global, no mask top (every pool
of the FCN nets: 2/2 in VGG, 3/2 in AlexNet). There ``(pooled - 1) * s < H - k + s <= H``, so
PyTorch's extra drop never happens and ``max_pool2d(x, k, s, ceil_mode=True)`` gives Caffe's
``pooled`` windows, each clipped to the image as Caffe's is. That case is computed directly,
with no padding or slicing sized in Python, so a traced or exported module (ONNX with dynamic
axes, ``torch.export``) follows the input's size. For every MAX pooling NaN is replaced by
``-FLT_MAX`` before pooling, and the result is clamped at ``-FLT_MAX``: the max of the
window's non-NaN values, never below ``-FLT_MAX``, as in Caffe. Traced, compiled or on a GPU
the replacement is unconditional (no data-dependent branch); eager on the CPU it is done only
when a first pooling of the raw input shows a NaN (``max_pool2d`` propagates NaN, so a result
without one means no window held one), which spares three passes over the input (pool1 of
voc-fcn8s at 500 x 500: 27 -> 9-12 ms). The shape checks and the empty top are still done
outside ``torch.export`` / ``torch.compile`` (under the TorchScript tracer they run, but do not
enter the graph).

The arithmetic is in torch-only functions (:func:`pool`, :func:`spp` and their helpers):
the layers run them, and ``fcn-port codegen`` copies their source into the files it writes,
so a generated net pools as the interpreter does.

``SPP`` (``spp_layer.cpp``, spatial pyramid pooling) is ``pyramid_height`` of these poolings
(``spp_param.pool``, MAX by default) over the whole H x W: level ``l`` has ``b = 2^l`` bins
per axis, ``kernel = ceil(H / b)``, ``stride = kernel``, ``pad = (kernel * b - H + 1) / 2``
(integer division), each flattened to (N, C * pooled) and concatenated along axis 1. With one
level the top is that pooling's own (N, C, 1, 1). Each level is checked as a :class:`Pooling`
and pooled by :func:`pool`, so the rules above hold per level (a pad that reaches the kernel
is Caffe's error too).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..formats.proto import caffe_pb2
from .base import CaffeLayer
from .registry import register

FLT_MAX = float(np.finfo(np.float32).max)
_P = caffe_pb2.PoolingParameter


def _no_nan(x):
    """NaN as -FLT_MAX: Caffe's strict '>' never picks NaN (its running max starts at -FLT_MAX,
    so the pooled result is clamped at -FLT_MAX afterwards, which also covers -inf)."""
    return torch.where(torch.isnan(x), torch.full_like(x, -FLT_MAX), x)


def pooled_size(size, kernel, stride, pad, ceil=True):
    """Caffe's pooled (height, width) for a bottom of spatial ``size`` (``PoolingLayer::
    Reshape``): ``(h + 2 pad - kernel) / stride`` rounded up (CEIL) or down, plus one; with
    padding, a last window that would start in the padding is dropped. Caffe divides in
    float32; for spans under 2^24 that rounding never carries a quotient across an integer (a
    non-integer quotient is at least 1 / stride from one), so integer division gives the same
    sizes."""
    out = []
    for h, k, s, p in zip(size, kernel, stride, pad):
        span = h + 2 * p - k
        n = (-(-span // s) if ceil else span // s) + 1
        if p > 0 and (n - 1) * s >= h + p:
            n -= 1  # the last window would start in the padding
        out.append(n)
    return tuple(out)


def _widths(size, kernel, stride, pad, pooled):
    """F.pad widths (left, right, top, bottom): Caffe's pad, plus whatever the last window needs
    past the right/bottom edge."""
    (ph, pw), (sh, sw), (kh, kw), (h, w), (oh, ow) = pad, stride, kernel, size, pooled
    right = max(0, (ow - 1) * sw + kw - (w + pw))
    bottom = max(0, (oh - 1) * sh + kh - (h + ph))
    return (pw, pw + right, ph, ph + bottom)


def _max_pool(x, kernel, stride, pad, pooled, plain):
    """MAX over each window clipped to the image, never below -FLT_MAX (NaN propagates)."""
    if plain:  # Caffe's geometry is max_pool2d's: nothing sized in Python
        return F.max_pool2d(x, kernel, stride, ceil_mode=True).clamp_min(-FLT_MAX)
    widths = _widths(x.shape[2:], kernel, stride, pad, pooled)
    xp = F.pad(x, widths, value=-FLT_MAX) if any(widths) else x
    y = F.max_pool2d(xp, kernel, stride)[:, :, :pooled[0], :pooled[1]]
    return y.clamp_min(-FLT_MAX)  # Caffe's running max never drops below -FLT_MAX


def _sum_pool(x, kernel, stride, pad, pooled):
    """Sum of each window's part inside the image: zero padding, then sum pooling."""
    widths = _widths(x.shape[2:], kernel, stride, pad, pooled)
    xp = F.pad(x, widths) if any(widths) else x
    return F.avg_pool2d(xp, kernel, stride, divisor_override=1)[:, :, :pooled[0], :pooled[1]]


def _divisor(x, kernel, stride, pad, pooled):
    """Caffe's AVE divisor per output: the window clipped at H + pad, padding included."""
    sizes = []
    for n, k, s, p, h in zip(pooled, kernel, stride, pad, x.shape[2:]):
        start = torch.arange(n, dtype=torch.int64) * s - p
        sizes.append(torch.clamp(start + k, max=h + p) - start)
    div = sizes[0][:, None] * sizes[1][None, :]  # (pooled_h, pooled_w)
    return div.to(device=x.device, dtype=x.dtype)


def is_plain(method, kernel, stride, pad, ceil):
    """Caffe's MAX geometry is ``max_pool2d``'s ceil mode here (see the module docstring):
    not global (``kernel`` given), pad 0, CEIL, every kernel >= its stride."""
    return (method == "MAX" and kernel is not None and tuple(pad) == (0, 0) and ceil
            and all(k >= s for k, s in zip(kernel, stride)))


def pool(x, method, kernel, stride, pad, ceil=True):
    """Caffe's Pooling of ``x`` (N, C, H, W) with one top: "MAX", "AVE" or "STOCHASTIC" (its
    TEST phase: ``sum x^2 / sum x`` where ``sum x > 0``, else 0); ``kernel`` None for global
    pooling. fcn-port's Pooling layer (port/layers/pooling.py) runs this, and codegen copies
    it into the files it writes."""
    plain = is_plain(method, kernel, stride, pad, ceil)
    if plain and torch.compiler.is_compiling():  # torch.export / compile: no Python sizes
        return _max_pool(_no_nan(x), kernel, stride, pad, None, True)
    kernel = tuple(x.shape[2:]) if kernel is None else tuple(kernel)
    pooled = pooled_size(tuple(x.shape[2:]), kernel, stride, pad, ceil)
    top = tuple(x.shape[:2]) + pooled
    if 0 in top:  # Caffe allows an empty top; torch's pooling does not
        return x.new_zeros(top)
    if method == "MAX":
        if x.device.type == "cpu" and not (torch.jit.is_tracing()
                                           or torch.compiler.is_compiling()):
            y = _max_pool(x, kernel, stride, pad, pooled, plain)  # max_pool2d propagates NaN:
            if not bool(torch.isnan(y).any()):  # a result without one had none in any window
                return y
        return _max_pool(_no_nan(x), kernel, stride, pad, pooled, plain)
    total = _sum_pool(x, kernel, stride, pad, pooled)
    if method == "AVE":
        return total / _divisor(x, kernel, stride, pad, pooled)
    squares = _sum_pool(x * x, kernel, stride, pad, pooled)
    return torch.where(total > 0, squares / total, torch.zeros_like(total))


def spp(x, method, height):
    """Caffe's SPP of ``x`` with ``method`` ("MAX", "AVE", "STOCHASTIC") and ``height``
    levels: level l pools 2^l x 2^l bins, kernel ceil(H / bins), stride = kernel, pad
    (kernel * bins - H + 1) // 2; one level's top as is, else every level flattened and
    concatenated. The SPP layer runs this, and codegen copies it."""
    tops = []
    for level in range(height):
        bins = 2 ** level
        kernel = tuple(-(-size // bins) for size in x.shape[2:])
        pad = tuple((k * bins - size + 1) // 2 for k, size in zip(kernel, x.shape[2:]))
        tops.append(pool(x, method, kernel, kernel, pad))
    return tops[0] if len(tops) == 1 else torch.cat([t.flatten(1) for t in tops], 1)


@register("Pooling")
class Pooling(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        pp = lp.pooling_param
        self.method = _P.PoolMethod.Name(pp.pool)
        if len(bottom_shapes) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottom_shapes)}")
        max_tops = 2 if self.method == "MAX" else 1
        if lp.top and not 1 <= len(lp.top) <= max_tops:
            self.fail(f"{self.method} pooling takes at most {max_tops} top(s), got "
                      f"{len(lp.top)}" + (" (only MAX has a mask top)" if max_tops == 1 else ""))
        self.with_mask = len(lp.top) == 2
        if self.method == "STOCHASTIC" and phase != "TEST":
            self.fail("STOCHASTIC pooling is supported only in the TEST phase (TRAIN samples "
                      "windows at random)")
        self.global_pooling = pp.global_pooling
        has_k = pp.HasField("kernel_size")
        has_hw = pp.HasField("kernel_h") and pp.HasField("kernel_w")
        if self.global_pooling:
            if has_k or pp.HasField("kernel_h") or pp.HasField("kernel_w"):
                self.fail("with global_pooling: true the kernel size cannot be specified")
            self.kernel = None  # the bottom's H x W, set per shape
        else:
            if has_k == has_hw:
                self.fail("give the kernel as kernel_size OR kernel_h and kernel_w (both of "
                          "them for a non-square kernel)")
            self.kernel = (pp.kernel_size,) * 2 if has_k else (pp.kernel_h, pp.kernel_w)
            if min(self.kernel) <= 0:
                self.fail(f"kernel size must be > 0, got {list(self.kernel)}")
        self.pad = self._pair(pp, "pad")
        self.stride = self._pair(pp, "stride")
        if min(self.stride) <= 0:
            self.fail(f"stride must be > 0, got {list(self.stride)}")
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            self.fail(f"with global_pooling: true only pad 0 and stride 1 are allowed, got pad "
                      f"{list(self.pad)}, stride {list(self.stride)}")
        if self.pad != (0, 0):
            if self.method not in ("MAX", "AVE"):
                self.fail(f"padding is implemented only for MAX and AVE pooling, not "
                          f"{self.method} (pad {list(self.pad)})")
            for p, k, ax in zip(self.pad, self.kernel, "hw"):
                if p >= k:
                    self.fail(f"pad_{ax} {p} must be less than kernel_{ax} {k}")
        self.ceil = pp.round_mode == _P.CEIL
        self.plain = not self.with_mask and is_plain(self.method, self.kernel, self.stride,
                                                     self.pad, self.ceil)
        self.top_shapes(bottom_shapes)  # Caffe's SetUp ends with Reshape: check the shapes now

    def _pair(self, pp, field):
        """(h, w) from ``field`` or from ``field_h`` and ``field_w`` (Caffe: one or the other)."""
        has_h, has_w = pp.HasField(field + "_h"), pp.HasField(field + "_w")
        if not has_h and not has_w:
            return (getattr(pp, field),) * 2
        if pp.HasField(field) or not (has_h and has_w):
            self.fail(f"give {field} OR both {field}_h and {field}_w")
        return (getattr(pp, field + "_h"), getattr(pp, field + "_w"))

    def _geometry(self, shape):
        """(kernel, pooled) as (h, w) pairs for a bottom of ``shape``; Caffe's Reshape."""
        if len(shape) != 4:
            self.fail(f"bottom must have 4 axes (num, channels, height, width), got {shape}")
        size = tuple(shape[2:])
        kernel = size if self.global_pooling else self.kernel
        pooled = pooled_size(size, kernel, self.stride, self.pad, self.ceil)
        if min(pooled) < 0:
            self.fail(f"negative output size {pooled} for input {size} with kernel "
                      f"{kernel}, stride {self.stride}, pad {self.pad}")
        return kernel, pooled

    def top_shapes(self, bottoms):
        shape = tuple(bottoms[0])
        _, pooled = self._geometry(shape)
        top = shape[:2] + pooled
        return [top, top] if self.with_mask else [top]

    def forward(self, x):
        if self.with_mask:
            return self._max_with_mask(x)
        if not (self.plain and torch.compiler.is_compiling()):
            self._geometry(tuple(x.shape))  # Caffe's checks
        return pool(x, self.method, None if self.global_pooling else self.kernel, self.stride,
                    self.pad, self.ceil)

    def _max_with_mask(self, x):
        """MAX with Caffe's mask top: each winner's index h * W + w in its bottom plane (the
        first of equal values, as Caffe's strict '>'), -1 where no value beat -FLT_MAX."""
        kernel, pooled = self._geometry(tuple(x.shape))
        top = tuple(x.shape[:2]) + pooled
        if 0 in top:
            empty = x.new_zeros(top)
            return empty, empty.clone()
        x = _no_nan(x)
        widths = _widths(x.shape[2:], kernel, self.stride, self.pad, pooled)
        xp = F.pad(x, widths, value=-FLT_MAX) if any(widths) else x
        oh, ow = pooled
        y, idx = F.max_pool2d(xp, kernel, self.stride, return_indices=True)
        y, idx = y[:, :, :oh, :ow].clamp_min(-FLT_MAX), idx[:, :, :oh, :ow]
        # index into the padded plane -> Caffe's h * W + w in the bottom's plane; -1: no winner
        wp, w = xp.shape[3], x.shape[3]
        mask = (idx // wp - widths[2]) * w + (idx % wp - widths[0])
        mask = torch.where(y > -FLT_MAX, mask, torch.full_like(mask, -1)).to(x.dtype)
        return y, mask

    def extra_repr(self):
        kernel = "global" if self.global_pooling else self.kernel
        return (f"name={self.name!r}, {self.method}, kernel={kernel}, stride={self.stride}, "
                f"pad={self.pad}, round={'CEIL' if self.ceil else 'FLOOR'}")


@register("SPP")
class SPP(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        if lp.spp_param.pyramid_height < 1:
            self.fail(f"pyramid_height must be >= 1, got {lp.spp_param.pyramid_height}")
        self._levels = {}  # bottom shape -> its poolings

    def levels(self, shape):
        """The :class:`Pooling` of every pyramid level for a bottom of ``shape``."""
        if len(shape) != 4:
            self.fail(f"bottom must have 4 axes (num, channels, height, width), got {shape}")
        if shape not in self._levels:
            p, out = self.lp.spp_param, []
            for level in range(p.pyramid_height):
                bins = 2 ** level
                (kh, kw) = (-(-size // bins) for size in shape[2:])
                pp = caffe_pb2.PoolingParameter(
                    pool=p.pool, kernel_h=kh, kernel_w=kw, stride_h=kh, stride_w=kw,
                    pad_h=(kh * bins - shape[2] + 1) // 2, pad_w=(kw * bins - shape[3] + 1) // 2)
                sub = caffe_pb2.LayerParameter(name=f"{self.name} level {level}", type="Pooling",
                                               pooling_param=pp, top=[self.name])
                out.append(Pooling(sub, [shape], self.phase))
            self._levels[shape] = out
        return self._levels[shape]

    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        shape = tuple(bottoms[0])
        tops = [pool.top_shapes([shape])[0] for pool in self.levels(shape)]
        if len(tops) == 1:
            return tops
        return [(shape[0], sum(math.prod(t[1:]) for t in tops))]

    def forward(self, x):
        self.levels(tuple(x.shape))  # Caffe's checks, per level
        return spp(x, _P.PoolMethod.Name(self.lp.spp_param.pool),
                   self.lp.spp_param.pyramid_height)
