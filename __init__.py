"""fcn-port: Caffe's FCN nets, weights and solvers in PyTorch, with no numerical drift."""


def __getattr__(name):
    """``__version__``, looked up on first use: importlib.metadata costs about 12 ms of every
    command's start (PEP 562)."""
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("fcn-port")
        except metadata.PackageNotFoundError:  # a source tree that is not installed
            version = "0.0.0+source"
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
