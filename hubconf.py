"""``torch.hub`` entry points: one per official FCN model, as in :mod:`fcn_port.models`.

    net = torch.hub.load("OWNER/fcn-port", "voc_fcn8s", weights="fcn8s-heavy-pascal.caffemodel")
    net = torch.hub.load("path/to/fcn-port", "voc_fcn8s", source="local", classes=5)

``weights`` is a caffemodel (binary or HDF5) or a checkpoint from ``fcn-port convert``; without
it the model has Caffe's zero init. A checkout that is not pip-installed is imported as the
``fcn_port`` package from this directory (torch.hub puts the checkout on ``sys.path``, but the
package's own name is ``fcn_port``, not the directory's).
"""
import importlib.util
import os
import sys

dependencies = ["torch", "numpy", "google.protobuf", "h5py", "PIL", "scipy"]


def _fcn_port():
    if "fcn_port" not in sys.modules:
        root = os.path.dirname(os.path.abspath(__file__))
        try:
            import fcn_port  # noqa: F401  (installed)
        except ImportError:
            spec = importlib.util.spec_from_file_location(
                "fcn_port", os.path.join(root, "__init__.py"), submodule_search_locations=[root])
            module = importlib.util.module_from_spec(spec)
            sys.modules["fcn_port"] = module
            spec.loader.exec_module(module)
    import fcn_port.models

    return fcn_port.models


def _entry(name):
    def load(weights=None, **kw):
        return _fcn_port().build(name, weights=weights, **kw)
    load.__name__ = name.replace("-", "_")
    load.__doc__ = f"The official {name}; ``weights``: a caffemodel or checkpoint."
    return load


for _name in ("voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet",
              "pascalcontext-fcn32s", "pascalcontext-fcn16s", "pascalcontext-fcn8s",
              "siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s", "nyud-fcn32s-color",
              "nyud-fcn32s-hha", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha"):
    globals()[_name.replace("-", "_")] = _entry(_name)
del _name
