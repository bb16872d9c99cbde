"""Caffe layers with Caffe's exact semantics, one module per family, registered by type string.

``lookup(lp)`` gives the class for a LayerParameter's ``type`` (``"Convolution"`` ->
:class:`.conv.Convolution`), ``types()`` lists them; see :mod:`.base` for the contract every
layer follows. The hand-written FCN models and the net interpreter use these same modules, so
there is one implementation of each Caffe rule.
"""
from .base import CaffeLayer, LayerError, canonical_axis
from .fillers import bilinear_kernel, fill
from .registry import lookup, register, types
from . import contrastive, conv, crop, data, eltwise, inner_product, loss, neuron, norm, pooling, python, shape  # noqa: F401,E501  (registration)

__all__ = ["CaffeLayer", "LayerError", "bilinear_kernel", "canonical_axis", "fill", "lookup",
           "register", "types"]
