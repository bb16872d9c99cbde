"""The layer registry: Caffe's ``LayerRegistry``, keyed by the exact Caffe type string.

Caffe's ``REGISTER_LAYER_CLASS(Convolution)`` makes ``type: "Convolution"`` in a prototxt
create a ``ConvolutionLayer``; here ``@register("Convolution")`` on a :class:`~.base.CaffeLayer`
subclass does the same, and :func:`lookup` is ``LayerRegistry::CreateLayer``'s lookup: an
unknown type is one :class:`~fcn_port.port.errors.NetError` naming the layer, its type and the
supported types, wherever a layer is made (the interpreter, the hand-written models, surgery).
The table itself is private; :func:`types` lists it.
"""
from ..errors import NetError

_TYPES = {}


def register(*types):
    """Class decorator: register a CaffeLayer subclass under one or more Caffe type strings."""
    def wrap(cls):
        for t in types:
            if t in _TYPES:
                raise RuntimeError(f"Caffe layer type {t!r} registered twice")
            _TYPES[t] = cls
        cls.caffe_types = types
        return cls
    return wrap


def lookup(lp):
    """The layer class for LayerParameter ``lp``'s type."""
    cls = _TYPES.get(lp.type)
    if cls is None:
        raise NetError(f"layer '{lp.name}': unsupported type '{lp.type}'; supported: "
                       f"{', '.join(sorted(_TYPES))}")
    return cls


def types():
    """``{type string: class}`` of every registered layer, sorted by type (case-insensitive)."""
    return dict(sorted(_TYPES.items(), key=lambda kv: kv[0].lower()))
