"""Caffe layers with Caffe's exact semantics, one module per family, registered by type string.

``lookup(lp)`` gives the class for a LayerParameter's ``type`` (``"Convolution"`` ->
:class:`.conv.Convolution`), ``types()`` lists them and ``names()`` their type strings; see
:mod:`.base` for the contract every layer follows. The hand-written FCN models and the net
interpreter use these same modules, so there is one implementation of each Caffe rule.

Names are imported on first use (:mod:`..lazy`): a family's module loads when a net needs one
of its types (:mod:`.registry`), and ``names()`` needs no torch (``inspect``).
"""
from ..lazy import exports

_LAZY = {"CaffeLayer": "base", "LayerError": "base", "canonical_axis": "base",
         "bilinear_kernel": "fillers", "fill": "fillers", "lookup": "registry",
         "names": "registry", "register": "registry", "types": "registry"}
__getattr__ = exports(__name__, _LAZY)
__all__ = sorted(_LAZY)
