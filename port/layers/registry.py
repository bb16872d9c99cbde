"""The layer registry: Caffe's ``LayerRegistry``, keyed by the exact Caffe type string.

Caffe's ``REGISTER_LAYER_CLASS(Convolution)`` makes ``type: "Convolution"`` in a prototxt
create a ``ConvolutionLayer``; here ``@register("Convolution")`` on a :class:`~.base.CaffeLayer`
subclass does the same, and :func:`lookup` is ``LayerRegistry::CreateLayer``'s lookup: an
unknown type is one :class:`~fcn_port.port.errors.NetError` naming the layer, its type and the
supported types, wherever a layer is made (the interpreter, the hand-written models, surgery).

:data:`FAMILIES` says which module registers each type, so :func:`names` answers without
importing a layer (``inspect`` imports no torch) and :func:`lookup` imports only the module
it needs; ``register`` refuses a type that is not listed under its module. The table of
classes itself is private; :func:`types` lists it.
"""
import difflib
import importlib

from ..errors import NetError

FAMILIES = {  # module of fcn_port.port.layers -> the Caffe types it registers
    "contrastive": ("ContrastiveLoss",),
    "conv": ("Convolution", "Deconvolution", "Im2col"),
    "crop": ("Crop",),
    "data": ("Input", "DummyData", "Parameter", "Silence", "Data", "ImageData", "HDF5Data",
             "MemoryData", "WindowData", "HDF5Output"),
    "detection": ("DetectionOutput",),
    "eltwise": ("Eltwise",),
    "embed": ("Embed",),
    "inner_product": ("InnerProduct",),
    "loss": ("Softmax", "SoftmaxWithLoss", "Accuracy", "ArgMax"),
    "losses": ("EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss", "MultinomialLogisticLoss",
               "InfogainLoss"),
    "neuron": ("ReLU", "Sigmoid", "TanH", "AbsVal", "Power", "BNLL", "Exp", "Log", "Dropout",
               "Threshold", "ELU", "Clip", "Swish", "PReLU"),
    "norm": ("LRN", "BatchNorm", "Bias", "Scale", "MVN"),
    "pooling": ("Pooling", "SPP"),
    "python": ("Python",),
    "recurrent": ("LSTM", "RNN", "LSTMUnit"),
    "reduction": ("Reduction",),
    "ssd": ("Normalize", "Permute", "PriorBox"),
    "shape": ("Concat", "Slice", "Split", "Flatten", "Reshape", "Tile", "BatchReindex", "Filter"),
}
_FAMILY = {t: module for module, ts in FAMILIES.items() for t in ts}
_TYPES = {}


def register(*types):
    """Class decorator: register a CaffeLayer subclass under one or more Caffe type strings."""
    def wrap(cls):
        module = cls.__module__.rsplit(".", 1)[-1]
        for t in types:
            if t in _TYPES:
                raise RuntimeError(f"Caffe layer type {t!r} registered twice")
            if _FAMILY.get(t) != module:
                raise RuntimeError(f"Caffe layer type {t!r} is registered in {module}.py; list "
                                   f"it under {module!r} in registry.FAMILIES")
            _TYPES[t] = cls
        cls.caffe_types = types
        return cls
    return wrap


def names():
    """Every supported type string, sorted (case-insensitive), with no layer imported."""
    return sorted(_FAMILY, key=str.lower)


def nearest(name, n=3):
    """The supported type strings closest to ``name`` (case-insensitive), best first."""
    lower = {t.lower(): t for t in _FAMILY}
    return [lower[m] for m in difflib.get_close_matches(name.lower(), lower, n, cutoff=0.5)]


def lookup(lp):
    """The layer class for LayerParameter ``lp``'s type."""
    module = _FAMILY.get(lp.type)
    if module is None:
        near = nearest(lp.type)
        raise NetError(f"layer '{lp.name}': unsupported type '{lp.type}'; nearest supported: "
                       f"{', '.join(near) if near else 'none'} (`fcn-port layers` lists all "
                       f"{len(_FAMILY)})")
    if lp.type not in _TYPES:
        importlib.import_module(f".{module}", __package__)
    return _TYPES[lp.type]


def types():
    """``{type string: class}`` of every registered layer, sorted by type (case-insensitive)."""
    for module in FAMILIES:
        importlib.import_module(f".{module}", __package__)
    return {t: _TYPES[t] for t in names()}
