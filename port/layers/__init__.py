"""Caffe layers with Caffe's exact semantics, one module per family, registered by type string.

``REGISTRY["Convolution"]`` is the class for Caffe's ``type: "Convolution"``; see
:mod:`.base` for the contract every layer follows. The hand-written FCN models and the net
interpreter use these same modules, so there is one implementation of each Caffe rule.
"""
from .base import REGISTRY, CaffeLayer, LayerError, canonical_axis, fill, register
from . import conv, crop, data, eltwise, inner_product, loss, neuron, norm, pooling, shape  # noqa: F401  (registration)

__all__ = ["REGISTRY", "CaffeLayer", "LayerError", "canonical_axis", "fill", "register"]
