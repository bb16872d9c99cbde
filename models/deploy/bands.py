"""The blank margins of an FCN's early feature maps, computed once per input size instead of at
every pixel.

Why there are margins
---------------------
The official FCNs pad ``conv1_1`` by 100 (FCN_FACTS.md: so that any input size survives the
32x downsampling). A 500 x 500 image becomes a 698 x 698 ``conv1_1`` map of which only the
middle 502 x 502 sees the image. Every other pixel of every later map whose receptive field
misses the image holds what it would hold for an all-zero image: the map of a *blank* input.
A blank map is a per-channel constant in its middle, plus a thin frame along the map's edges
where a layer's zero padding meets a constant that is not zero, and that frame depends only
on the distance to the edge. For voc-fcn8s at 500 x 500, 112 of the 300 GFLOP of conv1-conv5
are spent on such pixels (conv1_2's map is 48 % margin, conv3_3's 40 %, conv4_3's 29 %,
conv5_1's 17 %, conv5_3's none).

How it is computed here
-----------------------
For a chain of single-input layers from the net's input (Convolution with stride 1, no
dilation or groups, fused with its ReLU; MAX Pooling with pad 0, as the official nets' VGG
trunk is; :func:`trunk`), :class:`BandPlan` works per input size and per axis, from the
geometry alone (:func:`_spread`, 1-D):

* R, each layer's *image rectangle*: the pixels whose receptive field holds an input pixel;
  everywhere else the map equals the blank map;
* a *collapsed* blank: the chain run once on an all-zero input shorter by a multiple of the
  chain's total pool stride (so every pool clips its last window as at the real size), the
  shortest whose maps keep a pixel touched by neither edge's frame between the two. The real
  blank map is that one with its middle row (and column) repeated: rows before the gap row
  ``g`` are the collapsed map's own, the next ``S - S'`` rows repeat row ``g``, the rest are
  the collapsed map's last rows.

Each layer that saves at least :data:`MIN_SAVED` of its map (:class:`BandedConvReLU`,
:class:`BandedPool`) then copies the stretched blank into its output outside R and computes R
alone, from its input slice with the zero padding the whole map would have given it.

Exactness: a pixel of R is the same oneDNN convolution (or max pooling) as the whole map's,
up to the kernel's summation order on a smaller tile; a pixel outside R is the very pixel of
the collapsed blank whose receptive field holds the same values at the same places (the zero
image and padding, the same edges), computed by the same layers. Both stay within float32
rounding of eager; :func:`.fast.fast_model` checks the whole model within 1e-5 before using
it, and the tests check the blank against the eager maps outside R.
"""
import collections
import math

import torch
import torch.nn.functional as F
from torch import nn

MIN_SAVED = 0.15   # run a layer whole when less than this fraction of its map lies outside R
SIZES = 4          # input sizes whose plans (and collapsed blanks) are kept, the latest first


def trunk(layers, pairs, modules):
    """[(kind, layer name)], kind "conv" or "pool": the chain from the net's first input
    through single-bottom fused Convolution+ReLU pairs whose module (``modules[name]``) has
    stride 1, no dilation and one group, and plain MAX pools (pad 0, CEIL, kernel >= stride),
    in order."""
    relu_of = dict(pairs)
    first = next((lp.top[0] for lp in layers
                  if lp.type in ("Input", "Python", "Data") and lp.top), None)
    chain, blob = [], first
    for lp in layers:
        if lp.name in relu_of.values() or list(lp.bottom) != [blob]:
            continue  # a fused ReLU, or a layer off the chain
        c = modules.get(lp.name)
        if lp.type == "Convolution" and lp.name in relu_of and c.stride == (1, 1) and \
                c.dilation == (1, 1) and c.group == 1:
            chain.append(("conv", lp.name))
        elif lp.type == "Pooling" and getattr(c, "plain", False):  # MAX, pad 0, CEIL, k >= s
            chain.append(("pool", lp.name))
        else:
            break
        blob = lp.top[0]
    return chain


def _geometry(kind, layer):
    """((kh, kw), (sh, sw), (ph, pw)) of a chain layer."""
    if kind == "conv":
        return tuple(layer.kernel), (1, 1), tuple(layer.pad)
    return tuple(layer.kernel), tuple(layer.stride), (0, 0)


def _spread(mask, k, s, p, before=False, after=False):
    """One layer along one axis: output position i is True when its window (stride ``s``,
    ``p`` padding positions each side, marked ``before`` / ``after``) holds a True position;
    None when the window no longer fits (the map vanishes)."""
    pads = [torch.full((p,), float(v)) for v in (before, after)]
    m = torch.cat([pads[0], mask.float(), pads[1]])
    if m.numel() < k:
        return None
    return F.max_pool1d(m.view(1, 1, -1), k, s, ceil_mode=s > 1)[0, 0] > 0


def _image_spans(geos, n, axis):
    """[(start, stop, length)] per chain layer: where the input's n positions reach along
    ``axis`` (padding holds no image)."""
    m, out = torch.ones(n, dtype=torch.bool), []
    for k, s, p in geos:
        m = _spread(m, k[axis], s[axis], p[axis])
        if m is None or not bool(m.any()):
            return None
        hit = torch.nonzero(m).flatten()
        out.append((int(hit[0]), int(hit[-1]) + 1, m.numel()))
    return out


def _gaps(geos, n, axis, banded):
    """For a blank input of ``n`` positions along ``axis``: {layer index: g} for each layer of
    ``banded`` that has a position ``g`` reached by neither edge's frame with only the top
    frame before it and only the bottom frame after it; None if one has none. A layer's
    padding counts as unlike its input except at the chain's input (the zero image)."""
    top = bottom = torch.zeros(n, dtype=torch.bool)
    gaps = {}
    for i, (k, s, p) in enumerate(geos[:max(banded) + 1]):
        top = _spread(top, k[axis], s[axis], p[axis], before=i > 0)
        bottom = _spread(bottom, k[axis], s[axis], p[axis], after=i > 0)
        if top is None:
            return None
        if i in banded:
            free = torch.nonzero(~top).flatten()
            g = int(free[0]) if free.numel() else top.numel()
            if g >= top.numel() or bool(top[g:].any()) or bool(bottom[:g + 1].any()):
                return None
            gaps[i] = g
    return gaps


def _segments(real, blank, g):
    """[(start, stop, source, repeat)] along one axis: real positions [start, stop) come from
    the collapsed blank's positions from ``source`` on, or all from ``source`` if ``repeat``."""
    extra = real - blank
    return [seg for seg in [(0, g, 0, False), (g, g + extra, g, True),
                            (g + extra, real, g, False)] if seg[1] > seg[0]]


def _minus(block, rect):
    """``block`` minus ``rect`` (both (r0, r1, c0, c1)) as at most four rectangles."""
    a, b, c, d = block
    r0, r1, c0, c1 = rect
    if r1 <= r0 or c1 <= c0:
        return [block]
    parts = [(a, min(b, r0), c, d), (max(a, r1), b, c, d),
             (max(a, r0), min(b, r1), c, min(d, c0)), (max(a, r0), min(b, r1), max(c, c1), d)]
    return [q for q in parts if q[1] > q[0] and q[3] > q[2]]


def _source(seg, x0, x1):
    """The collapsed blank's slice that real positions [x0, x1) of segment ``seg`` copy."""
    start, _, source, repeat = seg
    return slice(source, source + 1) if repeat else slice(source + x0 - start,
                                                          source + x1 - start)


class BandPlan:
    """Per input size, each banded layer's image rectangle and stretched blank. The banded
    modules ask it by name; the model's wrapper calls :meth:`begin` with the input's size
    before each pass. ``layers``: {name: Convolution or Pooling} for the geometry;
    ``modules``: {name: module computing the whole layer} for the blank pass."""

    def __init__(self, chain, layers, modules):
        self.chain, self.modules = chain, modules
        self.geos = [_geometry(kind, layers[name]) for kind, name in chain]
        self.size, self._plans = None, collections.OrderedDict()

    def begin(self, shape):
        """The next pass's input: its (channels, height, width)."""
        self.size = tuple(shape)

    def plan(self, name):
        """(R, blank, rows, cols) for layer ``name`` at the current size, or None to run it
        whole: R = (r0, r1, c0, c1) its image rectangle, ``blank`` its collapsed blank map,
        ``rows`` / ``cols`` the :func:`_segments` that stretch it."""
        if self.size not in self._plans:
            self._plans[self.size] = self._make(self.size)
            while len(self._plans) > SIZES:
                self._plans.popitem(last=False)
        self._plans.move_to_end(self.size)
        return self._plans[self.size].get(name)

    def _make(self, shape):
        channels, size = shape[0], shape[1:]
        spans = [_image_spans(self.geos, n, axis) for axis, n in enumerate(size)]
        if None in spans:
            return {}
        banded = [i for i, (rows, cols) in enumerate(zip(*spans))
                  if 1 - (rows[1] - rows[0]) * (cols[1] - cols[0]) / (rows[2] * cols[2])
                  >= MIN_SAVED]
        if not banded:
            return {}
        blanks, gaps = [], []
        for axis, n in enumerate(size):
            step = math.prod(s[axis] for _, s, _ in self.geos[:max(banded) + 1])
            for short in range(n - (n - 1) // step * step, n + 1, step):
                g = _gaps(self.geos, short, axis, banded)
                if g is not None or short == n:
                    break
            blanks.append(short)
            gaps.append(g or dict.fromkeys(banded, 0))
        x = torch.zeros((1, channels) + tuple(blanks)).contiguous(
            memory_format=torch.channels_last)
        plans = {}
        with torch.no_grad():
            for i, (_, name) in enumerate(self.chain[:max(banded) + 1]):
                x = self.modules[name](x)
                if i in banded:
                    (r0, r1, hr), (c0, c1, hc) = spans[0][i], spans[1][i]
                    plans[name] = ((r0, r1, c0, c1), x,
                                   _segments(hr, x.shape[2], gaps[0][i]),
                                   _segments(hc, x.shape[3], gaps[1][i]))
        return plans


class _Banded(nn.Module):
    """A chain layer that copies its stretched blank outside R and computes R alone."""

    def __init__(self, whole, name, plan):
        super().__init__()
        self.whole, self.name, self.bands = whole, name, plan

    def forward(self, x):
        plan = self.bands.plan(self.name)
        if plan is None:
            return self.whole(x)
        rect, blank, rows, cols = plan
        n, c = x.shape[0], blank.shape[1]
        out = torch.empty((n, c, rows[-1][1], cols[-1][1]), dtype=x.dtype,
                          memory_format=torch.channels_last)
        for rs in rows:
            for cs in cols:
                for r0, r1, c0, c1 in _minus((rs[0], rs[1], cs[0], cs[1]), rect):
                    out[:, :, r0:r1, c0:c1] = blank[:, :, _source(rs, r0, r1),
                                                    _source(cs, c0, c1)]
        r0, r1, c0, c1 = rect
        out[:, :, r0:r1, c0:c1] = self.compute(x, rect)
        return out


class BandedConvReLU(_Banded):
    """A fused Convolution+ReLU (:class:`.fast.FusedConvReLU`), banded."""

    def compute(self, x, rect):
        r0, r1, c0, c1 = rect
        layer = self.whole.layer
        (ph, pw), (kh, kw) = layer.pad, layer.kernel
        H, W = x.shape[2:]
        i0, i1, j0, j1 = r0 - ph, r1 - ph + kh - 1, c0 - pw, c1 - pw + kw - 1
        piece = x[:, :, max(i0, 0):min(i1, H), max(j0, 0):min(j1, W)]
        pads = (max(-j0, 0), max(j1 - W, 0), max(-i0, 0), max(i1 - H, 0))
        if any(pads):
            piece = F.pad(piece, pads)
        return self.whole(piece.contiguous(memory_format=torch.channels_last), (0, 0))


class BandedPool(_Banded):
    """A MAX Pooling layer with pad 0 (:class:`fcn_port.port.layers.pooling.Pooling`), banded:
    R's windows from the input slice they read (the last one clipped at the map's edge, as in
    the whole map)."""

    def compute(self, x, rect):
        r0, r1, c0, c1 = rect
        (kh, kw), (sh, sw) = self.whole.kernel, self.whole.stride
        H, W = x.shape[2:]
        return self.whole(x[:, :, r0 * sh:min((r1 - 1) * sh + kh, H),
                            c0 * sw:min((c1 - 1) * sw + kw, W)])
