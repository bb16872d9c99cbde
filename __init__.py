"""fcn-port: Caffe's FCN nets, weights and solvers in PyTorch, with no numerical drift."""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("fcn-port")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
