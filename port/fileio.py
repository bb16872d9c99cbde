"""File plumbing: read-only mapping of inputs and all-or-nothing writing of outputs."""
import contextlib
import mmap
import os
import tempfile

from .errors import CaffeFormatError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def map_file(path, expected):
    """Map ``path`` copy-on-write: arrays made from it are writable views, and the file stays as is."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise CaffeFormatError(path, "", f"the file is empty; expected {expected}")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise CaffeFormatError(path, "", f"cannot open ({e.strerror}); expected {expected}") from None


def is_hdf5(path):
    with open(path, "rb") as f:
        return f.read(8) == HDF5_MAGIC


@contextlib.contextmanager
def atomic_output(path, mode="wb"):
    """Yield a temporary path beside ``path`` (``mode=None``) or an open file on it; move it into
    place only if the block finishes. A failure leaves no partial file and the old one intact."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=folder)
    try:
        if mode is None:
            os.close(fd)
            yield tmp
        else:
            with os.fdopen(fd, mode) as f:
                yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file its usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
