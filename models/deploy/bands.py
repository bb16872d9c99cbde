"""The constant bands of an FCN's early feature maps, computed once instead of at every pixel.

Why there are bands
-------------------
The official FCNs pad ``conv1_1`` by 100 (FCN_FACTS.md: so that any input size survives the
32x downsampling). A 500 x 500 image becomes a 698 x 698 ``conv1_1`` map of which only the
middle 502 x 502 sees the image: every other window sees nothing but the zero padding, so its
value is ``relu(b)``, the same at every such pixel of a channel. The next convolution sees a
constant per channel there too, and so on: at each layer a map is *non-constant* on a region N
(the image's footprint, grown by each kernel, plus a thin frame along the map's edges, where a
layer's own zero padding meets a constant that is not zero) and equal to a per-channel
constant ``c`` everywhere else. For voc-fcn8s at 500 x 500 that is about 80 of the 300 GFLOP of
conv1-conv5 (conv1_2 is 47 % constant, conv3_3 29 %, conv4_3 4 %, conv5 none).

How it is computed here
-----------------------
For a chain of single-input layers from the net's input (Convolution with stride 1, no
dilation or groups, fused with its ReLU; MAX Pooling with pad 0, as the official nets' VGG
trunk is), :class:`BandPlan` follows two things:

* ``c``, per layer, from the weights alone: 0 for the input's padding; a convolution gives
  ``relu(sum_{kh,kw} W @ c + b)``; a MAX pool keeps ``c``;
* N, per input size, from the geometry alone: a convolution's output pixel is non-constant
  when its window holds a non-constant pixel or reaches past the map's edge into padding that
  is not ``c`` (padding is 0; it counts as constant only where ``c`` is exactly 0, i.e. for
  the input); a MAX pool's output is non-constant when its (clipped) window holds one.

Each such convolution (:class:`BandedConvReLU`) then runs the convolution only on rectangles
that cover N (the rows grouped by their runs of non-constant columns, runs a few pixels apart
merged: computing a constant pixel in full gives the same value), each from its input slice
with the zero padding the full map would have given it, and writes ``c`` into the rest. Where
less than :data:`MIN_SAVED` of a layer is constant it runs whole.

Exactness: a computed pixel is the same oneDNN convolution as the whole map's (up to the
kernel's summation order on a smaller tile); a constant pixel is ``relu(W c + b)`` summed in
another order than the convolution's. Both stay within float32 rounding of eager;
:func:`fast_model` checks the whole model within 1e-5 before using it.
"""
import torch
import torch.nn.functional as F
from torch import nn

MIN_SAVED = 0.15   # run a layer whole when less than this fraction of its output is constant
GAP = 8            # column runs closer than this are computed as one rectangle


def trunk(layers, pairs, modules):
    """[(kind, layer name)], kind "conv" or "pool": the chain from the net's first input
    through single-bottom fused Convolution+ReLU pairs whose module (``modules[name]``) has
    stride 1, no dilation and one group, and plain MAX pools (pad 0), in order."""
    relu_of = dict(pairs)
    first = next((lp.top[0] for lp in layers
                  if lp.type in ("Input", "Python", "Data") and lp.top), None)
    chain, blob = [], first
    for lp in layers:
        if lp.name in relu_of.values() or list(lp.bottom) != [blob]:
            continue  # a fused ReLU, or a layer off the chain
        c, pp = modules.get(lp.name), lp.pooling_param
        if lp.type == "Convolution" and lp.name in relu_of and c.stride == (1, 1) and \
                c.dilation == (1, 1) and c.group == 1:
            chain.append(("conv", lp.name))
        elif lp.type == "Pooling" and pp.pool == 0 and not (pp.pad or pp.pad_h or pp.pad_w) \
                and not pp.global_pooling:
            chain.append(("pool", lp.name))
        else:
            break
        blob = lp.top[0]
    return chain


def _runs(row):
    """[(start, stop)] of the True runs of a 1-D bool tensor, runs closer than GAP merged."""
    d = torch.diff(row.to(torch.int8), prepend=torch.zeros(1, dtype=torch.int8),
                   append=torch.zeros(1, dtype=torch.int8))
    starts, stops = torch.nonzero(d == 1).flatten().tolist(), \
        torch.nonzero(d == -1).flatten().tolist()
    out = []
    for a, b in zip(starts, stops):
        if out and a - out[-1][1] < GAP:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def rectangles(mask):
    """(compute, fill): rectangles (r0, r1, c0, c1) of a 2-D bool ``mask``; ``compute`` covers
    every True pixel, ``fill`` is the rest of the map."""
    H, W = mask.shape
    compute, fill, r = [], [], 0
    while r < H:
        runs = _runs(mask[r])
        r1 = r + 1
        while r1 < H and _runs(mask[r1]) == runs:
            r1 += 1
        edges = [0] + [x for run in runs for x in run] + [W]
        compute += [(r, r1, a, b) for a, b in runs]
        fill += [(r, r1, a, b) for a, b in zip(edges[0::2], edges[1::2]) if b > a]
        r = r1
    return compute, fill


class BandPlan:
    """The chain's constants (from the weights) and, per input size, each convolution's
    rectangles. :class:`BandedConvReLU` modules ask it by name; the model's wrapper calls
    :meth:`begin` with the input's size before each pass."""

    def __init__(self, chain, layers):
        self.chain, self.layers = chain, layers  # layers: {name: Convolution or Pooling}
        self.size, self._plans = None, {}
        self.constant = {}                       # conv name -> its output's constant
        c = None
        with torch.no_grad():
            for kind, name in chain:
                if kind == "conv":
                    layer = layers[name]
                    w = layer.blob(0).detach().double()
                    out = w.sum((2, 3)) @ (torch.zeros(w.shape[1], dtype=w.dtype) if c is None
                                           else c)
                    if layer.bias_term:
                        out = out + layer.blob(1).detach().double()
                    self.constant[name] = c = torch.relu(out)

    def begin(self, size):
        self.size = tuple(size)

    def plan(self, name):
        """(compute, fill) rectangles of conv ``name``'s output at the current size, or None
        to run it whole."""
        if self.size not in self._plans:
            self._plans[self.size] = self._make(self.size)
        return self._plans[self.size].get(name)

    def _make(self, size):
        mask = torch.ones((1, 1) + size)
        zero_constant, plans = True, {}
        for kind, name in self.chain:
            if kind == "pool":
                pool = self.layers[name]
                mask = F.max_pool2d(mask, pool.kernel, pool.stride, ceil_mode=True)
                continue
            layer = self.layers[name]
            (ph, pw), (kh, kw) = layer.pad, layer.kernel
            mask = F.max_pool2d(F.pad(mask, (pw, pw, ph, ph), value=0.0 if zero_constant
                                      else 1.0), (kh, kw), 1)
            zero_constant = False
            m = mask[0, 0] > 0
            if 1 - float(m.float().mean()) >= MIN_SAVED:
                plans[name] = rectangles(m)
        return plans


class BandedConvReLU(nn.Module):
    """A fused Convolution+ReLU (:class:`.fast.FusedConvReLU`) that computes only the
    rectangles its :class:`BandPlan` gives and writes the constant elsewhere."""

    def __init__(self, fused, name, plan):
        super().__init__()
        self.fused, self.name, self.bands = fused, name, plan
        self.constant = plan.constant[name].float().view(1, -1, 1, 1)

    def forward(self, x):
        plan = self.bands.plan(self.name)
        if plan is None:
            return self.fused(x)
        compute, fill = plan
        layer = self.fused.layer
        (ph, pw), (kh, kw) = layer.pad, layer.kernel
        N, _, H, W = x.shape
        Ho, Wo = H + 2 * ph - kh + 1, W + 2 * pw - kw + 1
        out = torch.empty((N, self.fused.weight.shape[0], Ho, Wo), dtype=x.dtype,
                          memory_format=torch.channels_last)
        for r0, r1, c0, c1 in fill:
            out[:, :, r0:r1, c0:c1] = self.constant
        for r0, r1, c0, c1 in compute:
            i0, i1, j0, j1 = r0 - ph, r1 - ph + kh - 1, c0 - pw, c1 - pw + kw - 1
            piece = x[:, :, max(i0, 0):min(i1, H), max(j0, 0):min(j1, W)]
            pads = (max(-j0, 0), max(j1 - W, 0), max(-i0, 0), max(i1 - H, 0))
            if any(pads):
                piece = F.pad(piece, pads)
            piece = piece.contiguous(memory_format=torch.channels_last)
            out[:, :, r0:r1, c0:c1] = torch.ops.mkldnn._convolution_pointwise(
                piece, self.fused.packed(piece), layer.blob(1) if layer.bias_term else None, [0, 0],
                [1, 1], [1, 1], 1, "relu", [], "")
        return out
