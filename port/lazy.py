"""Names of a package imported from their modules on first use (PEP 562).

``fcn-port --help`` and the verbs that need no torch import the packages' ``__init__`` only, so
a package lists what it exports as ``{name: submodule}`` and hands that to :func:`exports`,
which makes its module ``__getattr__``: the first ``package.name`` imports the submodule and
keeps the value in the package, so later lookups are plain attribute reads.
"""
import importlib
import importlib.util
import sys


def exports(package, table):
    """The ``__getattr__`` of the package named ``package`` for ``{name: submodule}``."""
    def __getattr__(name):
        if name not in table:  # a submodule (package.data) is imported on first use too
            if name.startswith("_") or importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return importlib.import_module(f".{name}", package)
        value = getattr(importlib.import_module(f".{table[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value
    return __getattr__
