"""The one exception type fcn-port raises for bad input.

Every message names the file, where in it (layer, line:column or byte offset) and what was
expected, so the CLI can print it as is, with no traceback from inside a library.
"""


class CaffeFormatError(ValueError):
    """A Caffe file (or message) is malformed, truncated, or not what was asked for."""

    def __init__(self, path, where, what):
        self.path, self.where, self.what = str(path), where, what
        place = f"{self.path}: {where}: " if where else f"{self.path}: "
        super().__init__(place + what)


class NetError(ValueError):
    """A net definition cannot be instantiated or run; the message names the layer."""
