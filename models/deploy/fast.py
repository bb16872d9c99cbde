"""A faster inference path for a converted FCN, checked against the eager model.

The eager model (:class:`fcn_port.models.FCN`) runs every Caffe layer with Caffe's checks and
geometry in Python, in NCHW, with ReLU as a separate pass. For inference on CPU this module
builds, from the same parameters (shared, not copied, unless a layout change needs a copy):

1. the Caffe layers themselves: for the FCN geometry (pad 0 ceil MAX pooling, convolution on
   axis 1, top-left crop) they already run as single plain ops (see
   :mod:`fcn_port.models.deploy.onnx`), so nothing is swapped;
2. ``fuse``: each Convolution whose only reader is an in-place ReLU (every ``conv_relu`` of
   the official nets) becomes one oneDNN convolution with a ReLU post-op
   (``torch.ops.mkldnn._convolution_pointwise``), the ReLU an identity, its weight packed in
   oneDNN's blocked layout for the input's shape (:meth:`FusedConvReLU.packed`);
3. ``channels_last``: the fused convolutions' weights are kept in NHWC and the input is fed in
   NHWC (oneDNN's native layout: no reorders between layers); with ``bands``, the trunk's
   convolutions and pools take the blank margins that conv1_1's pad 100 leaves around each
   map's image rectangle from one run on a collapsed all-zero input per size, and compute the
   rectangle alone (:mod:`.bands`: 1.40 s -> 1.19 s for voc-fcn8s at 500 x 500 on 2 cores,
   2026-12-05; 1.21 s against OpenVINO's 1.68 s);
4. ``compile``: ``torch.compile`` of the model with Inductor's ``freezing`` (weights folded and
   pre-packed, conv + ReLU fused by Inductor itself), where 2-3 cannot be had (it needs a
   C++ compiler; the first call compiles, ~7-25 s for voc-fcn8s on 2 cores).

Most of the gain over eager on that machine is not here but in the allocator: glibc maps
each activation over 32 MB afresh and the VM first-touches it on every pass;
:func:`fcn_port.models.deploy.bench.keep_freed_memory` (process-wide, so not done here) alone takes
voc-fcn8s from 2.52 s to 1.92 s, steps 1-3 then to 1.76 s.

:func:`fast_model` returns the first variant, in the order ``bands-nhwc``, ``fused-nhwc`` (2-3),
``compile-freezing`` (4), ``fused-nchw``, whose outputs stay within ``rtol`` (1e-5, relative to
max(1, max|eager|)) of the eager model on a probe input; the summation order of oneDNN's NHWC
kernels differs from NCHW, measured 2.1e-6 on voc-fcn8s at 500 x 500. On 2 AMD EPYC cores
(benchmarks/README.md) ``fused-nhwc`` and ``compile-freezing`` run equally fast (1.76 s and
1.80 s against 2.52 s eager, before the packed weights); the fused path needs no compiler
and compiles nothing, so it comes first, after its banded form ``bands-nhwc`` (both hold the
packed weights, a second copy: +538 MB for voc-fcn8s).
"""
import copy

import torch
from torch import nn

from fcn_port.port.layers.conv import Convolution


class FusedConvReLU(nn.Module):
    """Caffe Convolution + in-place ReLU as one oneDNN convolution with a ReLU post-op."""

    def __init__(self, layer, channels_last, inplace=False):
        super().__init__()
        self.layer = layer
        w = layer.blob(0)
        if channels_last and inplace:  # the layer's own weight re-laid out: no second copy
            w.data = w.data.contiguous(memory_format=torch.channels_last)
        w = w.detach()
        self.weight = w.contiguous(memory_format=torch.channels_last) if channels_last else w
        self._packed = None, None  # (input shape, weight packed for it)

    def packed(self, x):
        """The weight in oneDNN's own blocked layout for inputs of ``x``'s shape, packed again
        only when the shape changes. A plain weight is reordered into that layout on every
        call (fc6's 411 MB: 293 ms a call with the reorder, 244 ms without); the results are
        the same bit for bit. The layout suits the shape it was made for: fc7's weight packed
        for a 3 x 3 input made the 16 x 16 one 12x slower, hence one per shape. It is a second
        copy of the weights."""
        shape, weight = self._packed
        if shape != x.shape:
            c = self.layer
            weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.to_mkldnn(), list(c.pad), list(c.stride), list(c.dilation), c.group,
                list(x.shape))
            self._packed = x.shape, weight
        return weight

    def forward(self, x, pad=None):
        """relu(conv(x)); ``pad`` overrides the layer's (a banded piece comes padded)."""
        c = self.layer
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.packed(x), c.blob(1) if c.bias_term else None,
            list(c.pad if pad is None else pad), list(c.stride), list(c.dilation), c.group,
            "relu", [], "")


def conv_relu_pairs(model):
    """[(conv, relu)] layer names: a Convolution read only by an in-place ReLU after it."""
    from ..spec import net_param

    layers = net_param(model.cfg, "model").layer
    readers, producer, pairs = {}, {}, []
    for lp in layers:
        for b in lp.bottom:
            readers.setdefault(producer.get(b), []).append(lp)
        for t in lp.top:
            producer[t] = lp.name
    by_name = {lp.name: lp for lp in layers}
    for name, users in readers.items():
        lp = by_name.get(name)
        if lp is None or lp.type != "Convolution" or len(users) != 1:
            continue
        relu = users[0]
        if relu.type == "ReLU" and relu.top[0] == relu.bottom[0] == lp.top[0] and \
                not relu.relu_param.negative_slope:
            pairs.append((name, relu.name))
    return pairs


def fused(model, channels_last=True, inplace=False, bands=False):
    """Steps 1-3: conv + ReLU fused, NHWC weights; a module taking NCHW inputs (a shallow copy
    of ``model`` sharing its layers). ``inplace`` re-lays the model's own conv weights out as
    NHWC instead of copying them (538 MB less for voc-fcn8s; ``model`` still works, its
    convolutions then run NHWC). ``bands`` (with ``channels_last``): the trunk's convolutions
    and pools take their blank margins from one run per input size (:mod:`.bands`)."""
    model.eval()
    if not hasattr(torch.ops.mkldnn, "_convolution_pointwise") or \
            not torch.backends.mkldnn.is_available():
        return model
    out = copy.copy(model)
    out._modules = type(model._modules)(model._modules)
    pairs = [(conv, relu) for conv, relu in conv_relu_pairs(model)
             if isinstance(model._modules[conv], Convolution) and model._modules[conv].ndim == 4
             and model._modules[conv].axis == 1]
    for conv, relu in pairs:
        out._modules[conv] = FusedConvReLU(model._modules[conv], channels_last, inplace)
        out._modules[relu] = nn.Identity()
    plan = _bands(model, out, pairs) if bands and channels_last else None
    return NHWC(out, plan) if channels_last else out


def _bands(model, out, pairs):
    """Wrap the trunk's fused convolutions and pools of ``out`` in :mod:`.bands`' banded
    modules; the :class:`.bands.BandPlan` they share (None where the net has no such trunk)."""
    from ..spec import net_param
    from .bands import BandedConvReLU, BandedPool, BandPlan, trunk

    chain = trunk(net_param(model.cfg, "model").layer, pairs, model._modules)
    if not any(kind == "conv" for kind, _ in chain):
        return None
    plan = BandPlan(chain, {name: model._modules[name] for _, name in chain},
                    {name: out._modules[name] for _, name in chain})
    for kind, name in chain:
        banded = BandedConvReLU if kind == "conv" else BandedPool
        out._modules[name] = banded(out._modules[name], name, plan)
    return plan


class NHWC(nn.Module):
    """Feed ``inner`` channels-last inputs; hand back contiguous NCHW outputs."""

    def __init__(self, inner, bands=None):
        super().__init__()
        self.inner, self.bands = inner, bands

    def forward(self, *inputs):
        if self.bands is not None:
            self.bands.begin(inputs[0].shape[1:])
        y = self.inner(*(x.contiguous(memory_format=torch.channels_last) for x in inputs))
        return tuple(t.contiguous() for t in y) if isinstance(y, tuple) else y.contiguous()


def compiled(model):
    """Step 4: ``torch.compile`` of the model with Inductor freezing."""
    return torch.compile(model.eval(), options={"freezing": True})


def _error(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    return max(float((g.detach() - w.detach()).abs().max())
               / max(1.0, float(w.detach().abs().max())) for g, w in zip(got, want))


def fast_model(model, probe, *, compile=True, rtol=1e-5, inplace=False, log=None):
    """(callable, name, error): the first of ``bands-nhwc`` (:mod:`.bands`), ``fused-nhwc``,
    ``compile-freezing`` (with
    ``compile``, where it works here) and ``fused-nchw`` whose output on ``probe`` (a tuple
    of inputs) is within ``rtol`` of ``model``'s; the eager model itself if none is.
    ``inplace``: see :func:`fused`."""
    with torch.inference_mode():
        want = model(*probe)
        candidates = [("bands-nhwc", lambda m: fused(m, inplace=inplace, bands=True)),
                      ("fused-nhwc", lambda m: fused(m, inplace=inplace))] + \
            ([("compile-freezing", compiled)] if compile else []) + \
            [("fused-nchw", lambda m: fused(m, channels_last=False))]
        for name, make in candidates:
            try:
                fn = make(model)
                err = _error(fn(*probe), want)  # the first call compiles
            except Exception as e:  # noqa: BLE001  (no compiler, unsupported op, ...)
                if log:
                    log(f"{name}: unavailable ({type(e).__name__}: {str(e).splitlines()[0]})")
                continue
            if err <= rtol:
                return fn, name, err
            if log:
                log(f"{name}: output differs by {err:.3g} > {rtol:g}; not used")
    return model, "eager", 0.0
