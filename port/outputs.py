"""Output paths checked before any work: the one rule for every fcn-port verb that writes.

A verb calls :func:`check_output_file` for each file it will write and :func:`check_output_dir`
for each folder it will fill, straight after parsing, before it reads or computes anything; a
path that cannot be written is one :class:`~fcn_port.port.errors.UserInputError` line naming the
option, the path and what was expected, and nothing is written. (The files themselves are
written atomically by :func:`fcn_port.port.fileio.atomic_output`, so a failure later leaves no
partial file either.) ``fcn_port.port.verbs`` re-exports both for the verbs of every package.
"""
import os

from .errors import UserInputError


def _nearest_existing(path):
    """``path`` or its nearest ancestor that exists (absolute)."""
    at = os.path.abspath(path)
    while not os.path.lexists(at):
        at = os.path.dirname(at)
    return at


def check_output_file(path, option, expected="a file name", *, inputs=()):
    """Refuse an output *file* path that cannot be written, in one UserInputError line naming
    ``option`` and the path: an existing folder, an existing thing that is no regular file (a
    device: the atomic rename would replace it), a folder that does not exist (not made: a
    typo should not grow folders), one that is a file or not writable, or one of the verb's
    ``inputs`` (``convert X.caffemodel -o X.caffemodel`` would replace its source). An existing
    file is fine otherwise: it is replaced atomically. None and '-' (stdout) pass."""
    if path is None or os.fspath(path) == "-":
        return
    path = os.fspath(path)
    head = f"{option} {path}"
    for given in inputs:
        if given is not None and os.path.exists(given) and \
                os.path.realpath(given) == os.path.realpath(path):
            raise UserInputError(f"{head}: is the input {os.fspath(given)}; writing it would "
                                 f"replace it: choose another {option}")
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise UserInputError(f"{head}: is a folder; expected {expected} (in an existing folder)")
    if os.path.lexists(path) and not os.path.isfile(path) and not os.path.islink(path):
        raise UserInputError(f"{head}: exists and is not a regular file; expected {expected}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        at = _nearest_existing(parent)
        why = f"{at} is a file, not a folder" if not os.path.isdir(at) else \
            f"its folder {parent} does not exist (create it first)"
        raise UserInputError(f"{head}: {why}; expected {expected} in an existing folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"{head}: its folder {parent} is not writable")


def check_output_dir(path, option, *, parents=True):
    """Refuse an output *folder* path that cannot be made or written, in one UserInputError
    line naming ``option`` and the path: an existing file, a path through a file, an unwritable
    place. A missing folder passes: the verb makes it (with its parents; ``parents=False``:
    only the last folder, the one above must exist) when it writes."""
    if path is None or os.fspath(path) == "-":
        return
    path = os.fspath(path)
    head = f"{option} {path}"
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UserInputError(f"{head}: exists and is not a folder; expected a folder (made if "
                             "missing) for the output files")
    parent = os.path.dirname(os.path.abspath(path))
    if not parents and not os.path.isdir(parent):
        raise UserInputError(f"{head}: its folder {parent} does not exist; expected a folder "
                             "in an existing one")
    at = _nearest_existing(path)
    if not os.path.isdir(at):
        raise UserInputError(f"{head}: {at} is a file, so the folder cannot be made; expected "
                             "a folder path")
    if not os.access(at, os.W_OK | os.X_OK):
        raise UserInputError(f"{head}: {at} is not writable")
