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


_models = _fcn_port()
for _name in _models.OFFICIAL:  # the factories of fcn_port.models, one per official model
    globals()[_name.replace("-", "_")] = getattr(_models, _name.replace("-", "_"))
del _name
