"""The statement codegen writes for each Caffe layer type: the right-hand side of one line of the
generated ``forward``, keyed by the exact Caffe type string as the layer registry is.

Each writer gets a :class:`Site`: the layer's parameters, the interpreter's layer (its settings
already checked and rounded as Caffe rounds them), the Python names of its bottoms, the
expression of its blobs, and the shapes of its bottoms and tops in the net as built. The
functions the statements call are in :mod:`.runtime` and :mod:`.runtime_more`.
"""
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UnsupportedError

WRITERS = {}


@dataclass(frozen=True)
class Site:
    lp: object            # the LayerParameter
    layer: object         # the interpreter's layer module
    b: list               # the bottoms' Python names
    attr: str             # the expression of the layer's Blobs (self.<name>)
    shapes: list          # the bottoms' shapes as built
    shapes_out: list      # the tops' shapes as built

    def refuse(self, what):
        raise UnsupportedError(f"layer '{self.lp.name}' ({self.lp.type}): codegen {what}")


def writes(*types):
    def bind(fn):
        for t in types:
            WRITERS[t] = fn
        return fn
    return bind


def statement(site):
    """The expression of ``site``'s forward, or None for a layer with no tops to write (a sink
    such as Silence or HDF5Output)."""
    writer = WRITERS.get(site.lp.type)
    if writer is None:
        site.refuse(f"has no statement for this type (it writes {', '.join(sorted(WRITERS))})")
    return writer(site)


def _f(v):
    return repr(float(v))


def _axis(site, axis, ndim=None):
    return axis % (len(site.shapes[0]) if ndim is None else ndim)


@writes("Convolution", "Deconvolution")
def _conv(s):
    if len(getattr(s.layer, "kernel", ())) != 2 or s.layer.axis != 1:
        s.refuse("writes 2-D convolutions on axis 1 only")
    bias = f"{s.attr}[1]" if s.layer.bias_term else "None"
    fn = "conv" if s.lp.type == "Convolution" else "deconv"
    return (f"{fn}({s.b[0]}, {s.attr}[0], {bias}, {tuple(s.layer.stride)}, "
            f"{tuple(s.layer.pad)}, {tuple(s.layer.dilation)}, {s.layer.group})")


@writes("Pooling")
def _pool(s):
    if s.layer.with_mask:
        s.refuse("writes Pooling with one top (no mask)")
    kernel = None if s.layer.global_pooling else tuple(s.layer.kernel)
    return (f'pool({s.b[0]}, "{s.layer.method}", {kernel}, {tuple(s.layer.stride)}, '
            f"{tuple(s.layer.pad)}, ceil={s.layer.ceil})")


@writes("SPP")
def _spp(s):
    p = s.lp.spp_param
    return f'spp({s.b[0]}, "{["MAX", "AVE", "STOCHASTIC"][p.pool]}", {p.pyramid_height})'


@writes("Im2col")
def _im2col(s):
    k = s.layer
    return (f"im2col({s.b[0]}, {tuple(k.kernel)}, {tuple(k.stride)}, {tuple(k.pad)}, "
            f"{tuple(k.dilation)})")


@writes("ReLU")
def _relu(s):
    slope = s.lp.relu_param.negative_slope
    return f"F.leaky_relu({s.b[0]}, {slope})" if slope else f"F.relu({s.b[0]})"


@writes("Sigmoid", "TanH", "AbsVal")
def _plain(s):
    return f"torch.{ {'Sigmoid': 'sigmoid', 'TanH': 'tanh', 'AbsVal': 'abs'}[s.lp.type]}({s.b[0]})"


@writes("BNLL")
def _bnll(s):
    x = s.b[0]
    return f"torch.where({x} > 0, {x}, 0) + torch.log1p(torch.exp(-torch.abs({x})))"


def _affine(x, scale, shift):
    """``x * scale + shift`` written without the identity steps."""
    y = x if scale == 1 else f"{x} * {_f(scale)}"
    return y if shift == 0 else f"({y} + {_f(shift)})"


@writes("Power")
def _power(s):
    k = s.layer
    if np.float32(k.power * k.scale) == 0:  # a constant: the layer's own value for it
        return f"torch.full_like({s.b[0]}, {_f(k.forward(torch.zeros(1))[0])})"
    y = _affine(s.b[0], k.scale, k.shift)
    return y if k.power == 1 else f"torch.pow({y}, {_f(k.power)})"


@writes("Exp")
def _exp(s):
    k = s.layer
    y = f"torch.exp({s.b[0] if k.inner_scale == 1 else f'{s.b[0]} * {_f(k.inner_scale)}'})"
    return y if k.outer_scale == 1 else f"{y} * {_f(k.outer_scale)}"


@writes("Log")
def _log(s):
    k = s.layer
    y = f"torch.log({_affine(s.b[0], k.scale, k.shift)})"
    return y if k.base_scale == 1 else f"{y} * {_f(k.base_scale)}"


@writes("Threshold")
def _threshold(s):
    return f"({s.b[0]} > {_f(s.layer.threshold)}).to({s.b[0]}.dtype)"


@writes("ELU")
def _elu(s):
    return f"F.elu({s.b[0]}, {_f(s.layer.alpha)})"


@writes("Clip")
def _clip(s):
    return f"torch.clamp(torch.clamp({s.b[0]}, max={_f(s.layer.max)}), min={_f(s.layer.min)})"


@writes("Swish")
def _swish(s):
    x, beta = s.b[0], s.layer.beta
    return f"{x} * torch.sigmoid({x if beta == 1 else f'{x} * {_f(beta)}'})"


@writes("PReLU")
def _prelu(s):
    return f"prelu({s.b[0]}, {s.attr}[0], {s.layer.shared})"


@writes("Dropout")
def _identity(s):
    return s.b[0]


@writes("Split")
def _split(s):
    return ", ".join([s.b[0]] * len(s.lp.top)) if len(s.lp.top) > 1 else s.b[0]


@writes("Silence", "HDF5Output")
def _sink(s):
    return None  # HDF5Output writes a file in Caffe; the generated net computes only


@writes("Crop")
def _crop(s):
    return f"crop({s.b[0]}, {s.b[1]}, {s.layer.axis}, {list(s.layer.offsets)})"


@writes("Eltwise")
def _eltwise(s):
    op = {0: "PROD", 1: "SUM", 2: "MAX"}[s.lp.eltwise_param.operation]
    return f'eltwise("{op}", [{", ".join(s.b)}], {list(s.layer.coeff)})'


@writes("Concat")
def _concat(s):
    p = s.lp.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else _axis(s, p.axis)
    return f"torch.cat([{', '.join(s.b)}], {axis})"


@writes("Flatten")
def _flatten(s):
    return f"torch.flatten({s.b[0]}, {s.lp.flatten_param.axis}, {s.lp.flatten_param.end_axis})"


@writes("Slice")
def _slice(s):
    p = s.lp.slice_param
    axis = p.slice_dim if p.HasField("slice_dim") else _axis(s, p.axis)
    return f"torch.split({s.b[0]}, {[shape[axis] for shape in s.shapes_out]}, {axis})"


@writes("Reshape")
def _reshape(s):
    return f"{s.b[0]}.reshape({tuple(s.shapes_out[0])})"


@writes("Tile")
def _tile(s):
    p = s.lp.tile_param
    return f"torch.cat([{s.b[0]}] * {p.tiles}, {_axis(s, p.axis)})"


@writes("BatchReindex")
def _reindex(s):
    return f"{s.b[0]}.index_select(0, {s.b[1]}.reshape(-1).long())"


@writes("Filter")
def _filter(s):
    return f"filter_rows([{', '.join(s.b[:-1])}], {s.b[-1]})"


@writes("InnerProduct")
def _inner_product(s):
    axis = _axis(s, s.lp.inner_product_param.axis)
    bias = f"{s.attr}[1]" if s.layer.bias_term else "None"
    w = f"{s.attr}[0].t()" if s.layer.transpose else f"{s.attr}[0]"
    if axis == 1 and len(s.shapes[0]) == 2:
        return f"F.linear({s.b[0]}, {w}, {bias})"
    return f"F.linear(torch.flatten({s.b[0]}, {axis}), {w}, {bias})"


@writes("Embed")
def _embed(s):
    y = f"F.embedding({s.b[0]}.long(), {s.attr}[0])"
    return f"{y} + {s.attr}[1]" if s.layer.bias_term else y


@writes("Softmax")
def _softmax(s):
    return f"torch.softmax({s.b[0]}, {_axis(s, s.lp.softmax_param.axis)})"


@writes("BatchNorm")
def _batch_norm(s):
    if not s.layer.use_global_stats:
        s.refuse("writes BatchNorm with global statistics only (TEST)")
    return f"batch_norm({s.b[0]}, {s.attr}, {_f(s.layer.eps)})"


@writes("Scale", "Bias")
def _scale(s):
    p = s.lp.scale_param if s.lp.type == "Scale" else s.lp.bias_param
    axis, x = _axis(s, p.axis), s.b[0]
    if len(s.b) == 2:  # the factor is the second bottom
        ones = len(s.shapes[0]) - axis - len(s.shapes[1])
        view = f"{s.b[1]}.reshape({(1,) * axis + tuple(s.shapes[1]) + (1,) * ones})"
        if s.lp.type == "Bias":
            return f"{x} + {view}"
        return f"{x} * {view}" if not s.layer.bias_term else \
            f"{x} * {view} + {s.attr}[0].reshape({view}.shape)"
    if s.lp.type == "Bias":
        return f"scale({x}, None, {s.attr}[0], {axis})"
    bias = f"{s.attr}[{s.layer.bias_index}]" if s.layer.bias_term else "None"
    return f"scale({x}, {s.attr}[0], {bias}, {axis})"


@writes("LRN")
def _lrn(s):
    k = s.layer
    return f"lrn({s.b[0]}, {k.size}, {_f(k.alpha)}, {_f(k.beta)}, {_f(k.k)}, {k.within})"


@writes("MVN")
def _mvn(s):
    p = s.lp.mvn_param
    return f"mvn({s.b[0]}, {p.across_channels}, {p.normalize_variance}, {_f(np.float32(p.eps))})"


@writes("Reduction")
def _reduction(s):
    p = s.lp.reduction_param
    op = {1: "SUM", 2: "ASUM", 3: "SUMSQ", 4: "MEAN"}[p.operation]
    axis = _axis(s, p.axis) if s.shapes[0] else 0
    return f'reduction({s.b[0]}, "{op}", {axis}, {_f(np.float32(p.coeff))})'


@writes("ArgMax")
def _argmax(s):
    p = s.lp.argmax_param
    axis = _axis(s, p.axis) if p.HasField("axis") else None
    return f"argmax({s.b[0]}, {p.top_k}, {p.out_max_val}, {axis})"


@writes("Accuracy")
def _accuracy(s):
    p, k = s.lp.accuracy_param, s.layer
    return (f"accuracy({s.b[0]}, {s.b[1]}, {_axis(s, p.axis)}, {p.top_k}, {k.ignore_label}, "
            f"{len(s.lp.top) == 2})")


@writes("Parameter")
def _parameter(s):
    return f"{s.attr}[0]"


@writes("DummyData")
def _dummy(s):
    out = []
    for shape, f in zip(s.layer.shapes, s.layer.fillers):
        if f.type not in ("constant", "uniform", "gaussian"):
            s.refuse(f"writes DummyData with constant, uniform or gaussian fillers, not {f.type}")
        out.append(f'filled({tuple(shape)}, "{f.type}", {_f(f.value)}, {_f(f.min)}, '
                   f"{_f(f.max)}, {_f(f.mean)}, {_f(f.std)})")
    return ", ".join(out)
