"""File plumbing: read-only mapping of inputs and all-or-nothing writing of outputs.

Every file :func:`map_file` maps is remembered (address range, path, device and inode) for as
long as its map lives, so that :func:`file_span` can tell a writer that some memory is, byte
for byte, a span of a file on disk: the writer can then take those bytes from the file
(:mod:`.torchsave` does) instead of faulting the caller's map into the process. The maps are
copy-on-write: memory counts as the file's only while none of its pages has been written to,
which :func:`file_span` checks in the kernel's page table (``/proc/self/pagemap``).

Every file fcn-port writes goes through :func:`atomic_output` (a hidden temporary name in the
same folder, renamed into place when complete), so a crash, a kill or a full disk never leaves a
partial file under a final name; :func:`durable_writes` adds fsyncs where order matters across
a power cut (training snapshots: the caffemodel is on disk before the solverstate naming it).
"""
import contextlib
import contextvars
import dataclasses
import fnmatch
import functools
import mmap
import os
import shutil
import tempfile
import threading
import time
import weakref

import numpy as np

from ..errors import CaffeFormatError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def map_file(path, expected):
    """Map ``path`` copy-on-write: arrays made from it are writable views, and the file stays as is."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise CaffeFormatError(path, "", f"the file is empty; expected {expected}")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            _remember(mm, path, os.fstat(f.fileno()))
            return mm
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise _cannot_open(path, e, expected) from None


def _cannot_open(path, error, expected):
    if isinstance(error, IsADirectoryError) or os.path.isdir(path):
        return CaffeFormatError(path, "", f"is a folder, not a file; expected {expected}")
    return CaffeFormatError(path, "", f"cannot open ({error.strerror}); expected {expected}")


def is_hdf5(path, expected="a caffemodel (binary or HDF5)"):
    """Whether ``path`` starts with the HDF5 signature; a file that cannot be opened is a
    CaffeFormatError naming it (not a bare OSError from deep inside a reader)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_MAGIC
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise _cannot_open(path, e, expected) from None


MAX_JSON = 64 << 20  # bytes: far above any JSON fcn-port writes (an eval's is ~1 MB)


def read_json(path, expected, *, limit=MAX_JSON):
    """The JSON value in the regular file ``path`` (UTF-8, at most ``limit`` bytes, nested less
    than Python's recursion allows). A FIFO, a folder, a bigger file or one that does not parse
    is one CaffeFormatError naming it and ``expected``; a missing one is FileNotFoundError."""
    import json

    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO would block the read
        raise CaffeFormatError(path, "", f"not a regular file; expected {expected}")
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except (IsADirectoryError, PermissionError) as e:
        raise _cannot_open(path, e, expected) from None
    if len(raw) > limit:
        raise CaffeFormatError(path, "", f"over {limit >> 20} MB; expected {expected}")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        what = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:120]
        raise CaffeFormatError(path, "", f"not a UTF-8 JSON file ({what}); expected "
                               f"{expected}") from None


_DURABLE = contextvars.ContextVar("fcn_port_durable_writes", default=False)
HOLD_ENV = "FCN_PORT_TEST_HOLD_WRITE"


@contextlib.contextmanager
def durable_writes():
    """Inside this block every :func:`atomic_output` is durable (``durable=True``): for
    writers deep in port/formats that the caller cannot reach, e.g. a training snapshot."""
    token = _DURABLE.set(True)
    try:
        yield
    finally:
        _DURABLE.reset(token)


@contextlib.contextmanager
def atomic_output(path, mode="wb", *, same_name=False, durable=None):
    """Yield a temporary path beside ``path`` (``mode=None``) or an open file on it; move it into
    place only if the block finishes. A failure (or a kill) leaves no partial file under
    ``path`` and the old one intact: the temporary name is hidden, ``.<name>.<random>.part``.

    With ``same_name`` the temporary file has ``path``'s own name, in a private folder beside it
    (for writers that record their file's name inside it, as ``torch.save`` does).

    The rename replaces whatever ``path`` is, a symlink included, and never writes through it.
    ``durable`` (default: inside :func:`durable_writes`) also survives a power cut: the file
    is fsync'ed before the rename and its folder after, so once this returns the new file is on
    disk, and a file written after it is never there without it.

    Test hook: when the environment variable ``FCN_PORT_TEST_HOLD_WRITE`` is a shell pattern
    matching ``path``'s file name, the write pauses for good, announcing ``fcn-port: test hold:
    <temporary path>`` on stderr: after the first write call (the temporary file partly
    written) for a file object, before the rename for ``mode=None``. It changes no byte; it is
    how tests kill a process in the middle of a write (tests/solvers/test_kill_resume.py).
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    folder = os.path.dirname(os.path.abspath(path))
    durable = _DURABLE.get() if durable is None else durable
    hold = os.environ.get(HOLD_ENV)
    hold = bool(hold) and fnmatch.fnmatchcase(name, hold)
    remove_stale_parts(folder, name)
    tag = f".{name}.{os.getpid()}-"  # the writer's pid: a later run can tell a dead one's part
    if same_name:
        private = tempfile.mkdtemp(prefix=tag, suffix=".part", dir=folder)
        tmp = os.path.join(private, name)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    else:
        private = None
        fd, tmp = tempfile.mkstemp(prefix=tag, suffix=".part", dir=folder)
    try:
        if mode is None:
            os.close(fd)
            yield tmp
            if hold:
                _hold(tmp)
            if durable:
                _fsync_path(tmp)
        else:
            with os.fdopen(fd, mode) as f:
                yield _Held(f, tmp) if hold else f
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file its usual mode
        os.replace(tmp, path)
        if durable:
            _fsync_path(folder, directory=True)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


def remove_stale_parts(folder, name):
    """Remove the temporary ``.<name>.<pid>-<random>.part`` files and folders that a killed
    writer of ``name`` left in ``folder`` (a SIGKILL runs no cleanup; a convert leaves a
    538 MB one). Only parts whose process is gone are removed: a live writer's stays. Links
    are unlinked, never followed. Returns the paths removed."""
    removed = []
    stale = _stale_parts(os.path.realpath(folder))
    for target, entry in [t for t in stale if t[0] == name]:
        stale.remove((target, entry))
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.path)
    return removed


@functools.lru_cache(maxsize=None)
def _stale_parts(folder):
    """``[(output name, entry)]`` of the ``.part`` entries of ``folder`` whose writer was gone
    when this process first wrote there. One listing per folder and process, not one per file
    written (infer writes two files an image into one folder): a dead writer's parts cannot
    appear later."""
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".")
                   and e.name.endswith(".part")]
    except OSError:
        return []
    out = []
    for entry in entries:
        target, _, tag = entry.name[1:-len(".part")].rpartition(".")
        pid = tag.split("-", 1)[0]
        if target and pid.isdigit() and not _alive(int(pid)):
            out.append((target, entry))
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _fsync_path(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder; the file itself was synced
        if not directory:
            raise
    finally:
        os.close(fd)


def _hold(tmp):
    """The test hook's pause (see :func:`atomic_output`): say where, then wait to be killed."""
    os.write(2, f"fcn-port: test hold: {tmp}\n".encode("utf-8", "replace"))
    while True:
        time.sleep(3600)


class _Held:
    """A file whose first write goes through (flushed to the temporary file), then holds."""

    def __init__(self, f, tmp):
        self._f, self._tmp = f, tmp

    def write(self, data):
        n = self._f.write(data)
        self._f.flush()
        _hold(self._tmp)
        return n

    def __getattr__(self, attr):
        return getattr(self._f, attr)


# --------------------------------------------------------------------------- mapped files

@dataclasses.dataclass(frozen=True)
class FileSpan:
    """``nbytes`` bytes at ``offset`` of the file ``path`` (device and inode as when mapped)."""

    path: str
    offset: int
    nbytes: int
    identity: tuple

    def open(self):
        """A read-only descriptor on the very file that was mapped, or -1 when ``path`` now
        names another file (replaced since) or none."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return -1
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self.identity:
            os.close(fd)
            return -1
        return fd


@dataclasses.dataclass(frozen=True)
class _Mapped:
    size: int
    path: str
    identity: tuple
    ref: weakref.ref


_MAPPED = {}  # start address -> _Mapped, for the maps made by map_file (dead ones pruned)
_MAPPED_LOCK = threading.Lock()  # no callback takes it: weakrefs here have none


def _remember(mm, path, st):
    view = np.frombuffer(mm, np.uint8)
    start = view.ctypes.data
    del view  # hold no export: the map may be closed
    entry = _Mapped(len(mm), os.path.abspath(path), (st.st_dev, st.st_ino), weakref.ref(mm))
    with _MAPPED_LOCK:
        for dead in [s for s, m in _MAPPED.items() if m.ref() is None]:
            del _MAPPED[dead]
        _MAPPED[start] = entry


def file_span(address, nbytes):
    """The :class:`FileSpan` whose bytes the memory ``[address, address + nbytes)`` holds, when
    that memory lies in a live :func:`map_file` map and no page of it has been written to;
    else None (then only the memory itself has the right bytes)."""
    if nbytes <= 0:
        return None
    with _MAPPED_LOCK:
        found = [(start, m) for start, m in _MAPPED.items()
                 if start <= address and address + nbytes <= start + m.size and m.ref() is not None]
    for start, m in found:  # one at most: live maps do not overlap
        if _unwritten(address, nbytes):
            return FileSpan(m.path, address - start, nbytes, m.identity)
    return None


_PRESENT, _SWAPPED, _FILE_PAGE = 1 << 63, 1 << 62, 1 << 61


def _unwritten(address, nbytes):
    """True when no page of the range is a private copy: in ``/proc/self/pagemap`` (Linux)
    each page is either not present (never touched: the file's) or present as a file page.
    A page written to on a copy-on-write map becomes anonymous (present, not a file page,
    or swapped out). False whenever the page table cannot be read."""
    page = mmap.PAGESIZE
    first, last = address // page, (address + nbytes - 1) // page
    want = (last - first + 1) * 8
    raw = bytearray()
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return False
    try:
        while len(raw) < want:
            got = os.pread(fd, want - len(raw), first * 8 + len(raw))
            if not got:
                return False
            raw += got
    except OSError:
        return False
    finally:
        os.close(fd)
    flags = np.frombuffer(raw, np.uint64)
    private = ((flags & np.uint64(_PRESENT)) != 0) & ((flags & np.uint64(_FILE_PAGE)) == 0)
    return not (private.any() or ((flags & np.uint64(_SWAPPED)) != 0).any())
