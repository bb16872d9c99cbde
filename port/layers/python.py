"""Caffe's ``Python`` layer: user code named in the prototxt, bound explicitly here.

How the official code computes it: Caffe's ``PythonLayer`` (``src/caffe/layer_factory.cpp``,
``GetPythonLayer``; ``include/caffe/layers/python_layer.hpp``) runs
``bp::import(python_param.module())`` from ``PYTHONPATH`` (the current folder included when run
from ``solve.py``), takes the attribute ``python_param.layer()``, instantiates it with the
LayerParameter and sets ``param_str`` on it; ``setup``/``reshape``/``forward``/``backward``
are then the module's code. The official FCN nets use it only for their data layers
(``voc_layers``, ``siftflow_layers``, ``nyud_layers``, ``pascalcontext_layers``), which
``eval`` their ``param_str``.

Where we differ: a prototxt from the internet must not run code, so fcn-port never imports a
module a file names unless the caller opts in. By default the caller binds each Python layer
by name to a module or callable (``python_layers={name: fn}``, ``fn(*bottoms)`` returns the
tops), or, for a layer without bottoms (a data layer, as in every official FCN net), feeds
its tops as net inputs (``fcn-port train`` serves the official data layers from its own
readers, :mod:`fcn_port.reproduce.datasets`, reading ``param_str`` as a literal only).
``allow_python_import`` opts in: ``True`` for any module, or a collection of the module names
the caller trusts (``{"my_layers"}``); even then a standard-library or built-in module
(``os``, ``subprocess``, ``builtins`` ...) is refused and the named attribute must be a class,
so ``module: "os" layer: "system"`` never runs; the class is called with ``param_str``. A data
layer (no bottoms) whose module is not allowed stays fed, as without the opt-in.

Where we agree: the layer's tops, bottoms and ``param_str`` are passed through unchanged.
"""
import importlib
import inspect
import sys

from torch import nn

from .base import CaffeLayer
from .registry import register

# never importable from a prototxt, even with the opt-in: they reach the system, not layers
REFUSED = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names) | {
    "torch", "numpy", "fcn_port", "caffe", "pip", "setuptools", "importlib"}


def import_allowed(allow, module):
    """Whether ``allow`` (the ``allow_python_import`` opt-in: False, True or module names)
    admits importing ``module``; the reason when it does not."""
    top = module.split(".")[0]
    if isinstance(allow, str):
        allow = {allow}
    if not allow:
        return False, "no opt-in given"
    if not module or top in REFUSED or module.startswith("."):
        return False, f"'{module}' is a standard-library or system module, never imported"
    if allow is not True and module not in set(allow):
        return False, f"'{module}' is not among the allowed modules {sorted(allow)}"
    return True, ""


@register("Python")
class PythonLayer(CaffeLayer):
    """``bound``: the module or callable serving the layer; ``allow_import``: the opt-in to
    import the one the prototxt names instead (module doc); ``shapes``: the tops' shapes when
    it is a data layer (fed tops)."""

    def __init__(self, lp, bottom_shapes, phase="TEST", *, bound=None, allow_import=False,
                 shapes=None):
        super().__init__(lp, bottom_shapes, phase)
        shapes = list(shapes) if shapes is not None else [None] * len(lp.top)
        p = lp.python_param
        self.target = f"{p.module}.{p.layer}"
        if bound is None and allow_import:
            ok, why = import_allowed(allow_import, p.module)
            if ok:
                bound = self._import(p)
            elif lp.bottom:  # a data layer not allowed stays fed, as without the opt-in
                self.fail(f"Python layer {self.target}: not imported: {why}")
        self.is_source = bound is None and not lp.bottom
        if bound is None and not self.is_source:
            self.fail(f"Python layer {self.target} is not bound, and fcn-port never imports a "
                      "module a prototxt names on its own: bind it from Python with "
                      f"python_layers={{'{lp.name}': fn}}, or opt in for a module you trust "
                      f"with allow_python_import={{'{p.module}'}} (CaffeNet, "
                      "from_solver_prototxt)")
        if self.is_source:
            if any(s is None for s in shapes):
                self.fail(f"Python data layer {self.target} has no known top shapes: pass "
                          f"input_shapes={{{', '.join(repr(t) for t in lp.top)}: (N, C, H, W)}} "
                          "or bind the layer")
        self.fn = bound
        if isinstance(bound, nn.Module):
            self.bound = bound
        self._tops = [tuple(s) if s is not None else None for s in shapes]

    def _import(self, p):
        try:
            cls = getattr(importlib.import_module(p.module), p.layer)
        except Exception as e:  # the user's module: report whatever it raised, and where
            self.fail(f"importing {self.target} (allowed by allow_python_import) failed: {e}")
        if not inspect.isclass(cls):
            self.fail(f"Python layer {self.target}: '{p.layer}' is not a class (a Caffe "
                      "Python layer is one); not called")
        try:
            return cls(p.param_str)
        except Exception as e:
            self.fail(f"Python layer {self.target}({p.param_str!r}) failed: {e}")

    def top_shapes(self, bottoms):
        if self.is_source or self.fn is None:
            return self._tops
        shapes = getattr(self.fn, "top_shapes", None)
        return shapes(bottoms) if callable(shapes) else [None] * len(self.lp.top)

    def forward(self, *args):
        return args if self.is_source else self.fn(*args)
