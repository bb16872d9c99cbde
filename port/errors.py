"""Every error fcn-port raises on purpose: one base class, subclasses by kind.

:class:`FcnPortError` is the base; callers (and the CLI, which prints one ``fcn-port: error:``
line and exits with status 2) match the kinds by ``isinstance``, never by message text:

* :class:`CaffeFormatError` - a file is malformed, truncated, or not what was asked for;
* :class:`NetError` - a net cannot be set up or run (the message names the layer and its type;
  :class:`~.layers.base.LayerError`, the surgery's and the converter's errors are kinds of it);
* :class:`UnsupportedError` - well-formed input that fcn-port does not handle (a V0 net to
  write, a torch.save layout it does not know, an optional extra that is not installed);
* :class:`UserInputError` - an argument that cannot be right: a path, an option, a name.

Messages name the file, where in it (layer, line:column or byte offset) and what was expected,
so they read as one line with no traceback. The kinds are also ``ValueError`` (or, for
unsupported layouts, ``RuntimeError``) where they always were, so older ``except`` clauses
still catch them.
"""


class FcnPortError(Exception):
    """Base of every error fcn-port raises for bad input or an unsupported request."""


class CaffeFormatError(FcnPortError, ValueError):
    """A Caffe file (or message) is malformed, truncated, or not what was asked for."""

    def __init__(self, path, where, what):
        self.path, self.where, self.what = str(path), where, what
        place = f"{self.path}: {where}: " if where else f"{self.path}: "
        super().__init__(place + what)


class NetError(FcnPortError, ValueError):
    """A net definition cannot be instantiated or run; the message names the layer."""


class UnsupportedError(FcnPortError, RuntimeError):
    """Valid input that fcn-port does not handle, or a feature whose optional extra is missing."""


class UserInputError(FcnPortError, ValueError):
    """An argument that cannot be right: a missing or misplaced path, a bad option or name."""
