"""Caffe's ``Python`` layer: user code named in the prototxt, bound explicitly here.

In Caffe, ``python_param { module: "voc_layers" layer: "VOCSegDataLayer" param_str: "..." }``
imports that module from PYTHONPATH and runs its class. A prototxt from the internet must not
run code, so fcn-port never imports it on its own: the caller binds each Python layer by name
to a module or callable (``fn(*bottoms)`` returns the tops), or, for a layer without bottoms
(a data layer, as in every official FCN train/val net), feeds its tops as net inputs. Passing
``allow_python_import=True`` imports ``module.layer`` and calls ``layer(param_str)`` to get
such a callable.
"""
import importlib

from torch import nn

from .base import CaffeLayer
from .registry import register


@register("Python")
class PythonLayer(CaffeLayer):
    """``bound``: the module or callable serving the layer; ``allow_import``: import the one the
    prototxt names instead; ``shapes``: the tops' shapes when it is a data layer (fed tops)."""

    def __init__(self, lp, bottom_shapes, phase="TEST", *, bound=None, allow_import=False,
                 shapes=None):
        super().__init__(lp, bottom_shapes, phase)
        shapes = list(shapes) if shapes is not None else [None] * len(lp.top)
        p = lp.python_param
        self.target = f"{p.module}.{p.layer}"
        if bound is None and allow_import:
            try:
                bound = getattr(importlib.import_module(p.module), p.layer)(p.param_str)
            except Exception as e:  # the user's module: report whatever it raised, and where
                self.fail(f"importing {self.target} (allowed by allow_python_import) failed: {e}")
        self.is_source = bound is None and not lp.bottom
        if bound is None and not self.is_source:
            self.fail(f"Python layer {self.target} is not bound: pass python_layers="
                      f"{{'{lp.name}': fn}} (fcn-port never imports modules a prototxt names "
                      "unless allow_python_import=True)")
        if self.is_source:
            if any(s is None for s in shapes):
                self.fail(f"Python data layer {self.target} has no known top shapes: pass "
                          f"input_shapes={{{', '.join(repr(t) for t in lp.top)}: (N, C, H, W)}} "
                          "or bind the layer")
        self.fn = bound
        if isinstance(bound, nn.Module):
            self.bound = bound
        self._tops = [tuple(s) if s is not None else None for s in shapes]

    def top_shapes(self, bottoms):
        if self.is_source or self.fn is None:
            return self._tops
        shapes = getattr(self.fn, "top_shapes", None)
        return shapes(bottoms) if callable(shapes) else [None] * len(self.lp.top)

    def forward(self, *args):
        return args if self.is_source else self.fn(*args)
