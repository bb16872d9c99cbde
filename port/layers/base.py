"""What every Caffe layer shares: the base class, its error, Caffe's axis rule.

A layer is registered under its exact Caffe type string (:mod:`.registry`)::

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
import torch
from torch import nn

from ..errors import NetError
from .fillers import fill

class LayerError(NetError):
    """A layer's settings or bottom shapes are not what Caffe accepts."""

    def __init__(self, layer, what):
        self.layer = layer
        super().__init__(f"layer '{layer.name}' ({layer.type}): {what}")


class CaffeLayer(nn.Module):
    caffe_types = ()   # the Caffe type strings it is registered under (registry.register)
    is_source = False  # True for layers whose tops the caller feeds (Input; unbound Python data)
    n_blobs = 0        # learnable blobs, registered by add_blob as "0", "1", ...

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


def canonical_axis(layer, axis, ndim):
    """Caffe's CanonicalAxisIndex: negative axes count from the end; out of range is an error."""
    if not -ndim <= axis < ndim:
        layer.fail(f"axis {axis} is out of range for a {ndim}-D bottom")
    return axis % ndim
