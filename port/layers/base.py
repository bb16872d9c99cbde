"""What every Caffe layer module shares: the registry, the base class, Caffe's fillers.

A layer is registered under its exact Caffe type string::

    @register("ReLU")
    class ReLU(CaffeLayer):
        def top_shapes(self, bottoms): ...
        def forward(self, x): ...

``CaffeLayer.__init__(lp, bottom_shapes, phase)`` receives the (upgraded) LayerParameter, the
shapes of its bottoms as tuples (what Caffe's ``LayerSetUp``/``Reshape`` see) and the phase
('TRAIN' or 'TEST'). Learnable blobs are registered with :meth:`CaffeLayer.add_blob` under the
names ``"0"``, ``"1"``, ... so a net's ``state_dict`` key ``"<layer>.<i>"`` is Caffe's blob i of
that layer, in Caffe's own shape. ``top_shapes`` mirrors Caffe's ``Reshape`` (and raises
:class:`LayerError` where Caffe's checks fail); ``forward`` takes bottoms as tensors and returns
one tensor or a tuple, one per top. Layers never modify their inputs, so Caffe's in-place tops
(``bottom == top``) need no special care.
"""
import math

import torch
from torch import nn

from ..errors import NetError

REGISTRY = {}


class LayerError(NetError):
    """A layer's settings or bottom shapes are not what Caffe accepts."""

    def __init__(self, layer, what):
        self.layer = layer
        super().__init__(f"layer '{layer.name}' ({layer.type}): {what}")


def register(*types):
    """Class decorator: register a CaffeLayer subclass under one or more Caffe type strings."""
    def wrap(cls):
        for t in types:
            if t in REGISTRY:
                raise RuntimeError(f"Caffe layer type {t!r} registered twice")
            REGISTRY[t] = cls
        cls.caffe_types = types
        return cls
    return wrap


class CaffeLayer(nn.Module):
    caffe_types = ()

    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__()
        self.name, self.type, self.phase = lp.name, lp.type, phase
        self.lp = lp
        self.n_blobs = 0

    def fail(self, what):
        raise LayerError(self, what)

    def add_blob(self, shape, filler=None):
        """Register learnable blob ``self.n_blobs`` with ``shape``, filled as Caffe's filler would."""
        data = torch.zeros(tuple(int(d) for d in shape))
        if filler is not None:
            fill(data, filler)
        p = nn.Parameter(data)
        self.register_parameter(str(self.n_blobs), p)
        self.n_blobs += 1
        return p

    def blob(self, i):
        return getattr(self, str(i))

    def top_shapes(self, bottoms):  # pragma: no cover - every layer overrides it
        raise NotImplementedError

    def extra_repr(self):
        return f"name={self.name!r}"


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
            from ..surgery import bilinear_kernel

            if t.dim() != 4 or t.shape[2] != t.shape[3]:
                raise ValueError(f"bilinear filler needs a square 4-D blob, got {tuple(t.shape)}")
            t.copy_(bilinear_kernel(t.shape[2]).expand_as(t))
        else:
            raise ValueError(f"unknown filler type {kind!r}")
    return t


def canonical_axis(layer, axis, ndim):
    """Caffe's CanonicalAxisIndex: negative axes count from the end; out of range is an error."""
    if not -ndim <= axis < ndim:
        layer.fail(f"axis {axis} is out of range for a {ndim}-D bottom")
    return axis % ndim
