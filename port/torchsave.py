"""``torch.save(obj, path)``, with the tensors of a mapped caffemodel copied file to file.

Why: the tensors of ``read_weights(path).state_dict()`` are views of the mapped caffemodel.
Plain ``torch.save`` reads every page of them into the process (a 538 MB voc-fcn8s then peaks
at imports + 1.00x the file) and copies it through user space. Here the kernel copies the
bytes from the caffemodel into the output (``copy_file_range``), the floats never pass
through the process, and the CRC-32s the zip needs are summed by other threads meanwhile.

How, in four steps:

1. **Skeleton.** ``torch.save`` runs under ``torch.serialization.skip_data()``: it writes the
   pickle, the small records and the zip directory, and reserves each storage's record
   ``data/<key>`` as a hole, with CRC 0. A stand-in pickle module learns which storage torch
   gave which key (:func:`_recording_pickle_module`). The keys must be ``0..n-1`` with one
   stored record each of the storage's size; :class:`TorchLayoutError` says what differed.
2. **Sources.** :func:`.fileio.file_span` says whether a storage is, byte for byte, a span of
   a mapped file (a packed blob of a caffemodel, no page written to since); the rest (tensors
   not from a file, unpacked or split payloads, pages written to) come from memory.
3. **Fill.** File spans are copied file to file (``copy_file_range``, after ``fallocate``;
   holes of a sparse source are left as holes), memory is written with ``pwrite``. Worker
   threads meanwhile sum the CRC-32s in 16 MiB pieces (:mod:`.crc32`), file spans through a
   private read-only map whose pages are let go once summed, so the peak RSS stays near the
   interpreter's own.
4. **Patch.** :func:`.torchzip.put_crcs` writes the CRCs and the matching
   ``.data/serialization_id``: the file is, byte for byte, what ``torch.save(obj, path)``
   writes, and ``torch.load`` and ``zipfile`` both accept it. (With torch's
   ``set_crc32_options(False)`` the CRCs stay 0, as torch.save leaves them.)

The output is written under a temporary name and renamed into place only when complete
(:func:`.fileio.atomic_output`): no partial file on error. No fsync, as torch.save does none.
Where this torch lacks ``skip_data`` (before 2.6) it is plain ``torch.save``, still atomic;
a file object instead of a path goes to ``torch.save`` unchanged.
"""
import ctypes
import dataclasses
import errno
import itertools
import mmap
import os
import pickle
import re
import threading
import types
import zlib

import numpy as np

from . import crc32, fileio, torchzip
from .errors import CaffeFormatError

PIECE = 16 << 20  # bytes per CRC work item
MAX_HELPERS = 3  # CRC threads beside the writing one


class TorchLayoutError(torchzip.LayoutError):
    """``torch.save`` named or laid out its storages differently from what this module expects."""

    def __init__(self, path, what):
        import torch

        super().__init__(path, f"{what} (torch {torch.__version__}; fcn_port.port.torchsave "
                               "expects one stored record data/<key> per storage, keys 0..n-1)")


def save(obj, path):
    """Write ``obj`` to ``path`` exactly as ``torch.save(obj, path)`` does; see the module doc."""
    import torch

    if not isinstance(path, (str, os.PathLike)):
        return torch.save(obj, path)
    path = os.fspath(path)
    with fileio.atomic_output(path, mode=None, same_name=True) as tmp:
        if not hasattr(torch.serialization, "skip_data"):
            return torch.save(obj, tmp)
        storages = _write_skeleton(obj, tmp)
        fd = os.open(tmp, os.O_RDWR)
        try:
            found = torchzip.records(fd, tmp)
            slots = _pair(found, storages, tmp)
            crcs = _fill(fd, slots, torch.serialization.get_crc32_options())
            if crcs is not None:
                torchzip.put_crcs(fd, found, {slot.record.name: c for slot, c in zip(slots, crcs)})
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- 1. skeleton

def _write_skeleton(obj, path):
    """torch.save without the storage bytes; return ``{key: UntypedStorage}`` as torch keyed them."""
    import torch

    seen = []
    with torch.serialization.skip_data():
        torch.save(obj, path, pickle_module=_recording_pickle_module(seen))
    storages = {}
    for pid, storage in seen:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchLayoutError(path, f"torch.save persisted {pid!r}; expected "
                                         "('storage', type, key, location, numel)")
        untyped = getattr(storage, "_untyped_storage", storage)
        if storages.setdefault(str(pid[2]), untyped)._cdata != untyped._cdata:
            raise TorchLayoutError(path, f"torch.save gave the key {pid[2]!r} to two storages")
    if list(storages) != [str(i) for i in range(len(storages))]:
        raise TorchLayoutError(path, f"torch.save keyed the storages {list(storages)} in the order "
                                     f"it met them; expected 0..{len(storages) - 1}")
    return storages


def _recording_pickle_module(seen):
    """A pickle module for ``torch.save`` that appends ``(persistent id, storage)`` to ``seen``.

    torch.save pickles with a subclass of ``pickle_module.Pickler`` that defines
    ``persistent_id``, the function that keys each storage. Python runs the base class's
    ``__init_subclass__`` when that subclass is made; here it wraps the method. Should torch
    stop calling it so, ``seen`` stays empty and :func:`_pair` reports the records it cannot
    account for.
    """

    class Pickler(pickle.Pickler):
        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            inner = cls.persistent_id

            def persistent_id(self, obj):
                pid = inner(self, obj)
                if pid is not None:
                    seen.append((pid, obj))
                return pid

            cls.persistent_id = persistent_id

    module = types.ModuleType("fcn_port_recording_pickle")
    module.Pickler = Pickler
    return module


@dataclasses.dataclass
class _Slot:
    record: torchzip.Record
    storage: object


def _pair(found, storages, path):
    """Each storage with its record ``<archive>/data/<key>``: one each, stored, of its size."""
    data = {m.group(1): r for r in found if (m := re.fullmatch(r"[^/]*/data/(\d+)", r.name))}
    if set(data) != set(storages):
        raise TorchLayoutError(path, f"it has the records data/{sorted(data, key=int)} for the "
                                     f"storages keyed {list(storages)}; expected one for each")
    slots = []
    for key, storage in storages.items():
        record = data[key]
        if record.method != 0 or record.size != storage.nbytes():
            raise TorchLayoutError(path, f"record {record.name} holds {record.size} bytes (zip "
                                         f"method {record.method}); expected {storage.nbytes()} "
                                         "stored (method 0)")
        slots.append(_Slot(record, storage))
    return slots


# --------------------------------------------------------------------------- 2. sources

@dataclasses.dataclass
class _Source:
    """Where a storage's bytes come from: a file span (``fd`` open on that very file, its
    ``extents`` (start, length, has data) relative to the span) or memory."""

    nbytes: int
    span: fileio.FileSpan = None
    fd: int = -1
    extents: list = ()
    memory: np.ndarray = None  # uint8, over the storage


def _source(storage):
    if storage.device.type != "cpu":
        storage = storage.cpu()  # as torch.save does
    n = storage.nbytes()
    span = fileio.file_span(storage.data_ptr(), n)
    fd = span.open() if span is not None else -1
    if fd >= 0:
        return _Source(n, span=span, fd=fd, extents=_extents(fd, span.offset, n))
    return _Source(n, memory=_bytes_of(storage))


def _bytes_of(storage):
    import torch

    if storage.nbytes() == 0:
        return np.zeros(0, np.uint8)
    return torch.empty(0, dtype=torch.uint8).set_(storage).numpy()


def _extents(fd, start, n):
    """[(offset from start, length, has data)] covering ``[start, start + n)`` of the file:
    holes of a sparse file (SEEK_HOLE) read as zeros and need no copying. Where the file
    system cannot tell, all of it is data."""
    end, pos, out = start + n, start, []
    while pos < end:
        try:
            data = min(os.lseek(fd, pos, os.SEEK_DATA), end)
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: no data after pos
                return [(0, n, True)]
            data = end
        if data > pos:
            out.append((pos - start, data - pos, False))
        if data < end:
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            out.append((data - start, hole - data, True))
            pos = hole
        else:
            pos = end
    return out


# --------------------------------------------------------------------------- 3. fill

def _fill(out, slots, crc):
    """Write every storage into its record; return the records' CRC-32s when ``crc``."""
    sources, maps, pieces = [], {}, []
    try:
        for slot in slots:
            sources.append(_source(slot.storage))
        if crc:
            pieces = _crc_pieces(sources, maps)
        results = [None] * len(pieces)
        _run_with_helpers(lambda: _write_all(out, slots, sources), pieces, results)
    finally:
        for piece in pieces:
            piece.release()
        for mm, whole in maps.values():
            whole.release()
            mm.close()
        for source in sources:
            if source.fd >= 0:
                os.close(source.fd)
    if not crc:
        return None
    crcs = [0] * len(sources)
    for piece, value in zip(pieces, results):
        crcs[piece.index] = crc32.combine(crcs[piece.index], value, piece.length)
    return crcs


def _write_all(out, slots, sources):
    for slot, source in zip(slots, sources):
        at = slot.record.data_at
        if source.span is None:
            _pwrite_all(out, memoryview(source.memory).cast("B"), at)
            continue
        for start, length, has_data in source.extents:
            if has_data:  # a hole stays a hole: the skeleton reserved the record as one
                _reserve(out, at + start, length)
                _copy(source.fd, out, source.span.offset + start, at + start, length,
                      source.span.path)


def _copy(src, out, src_at, out_at, n, src_path):
    """``n`` bytes from ``src`` to ``out`` in the kernel, or through a small buffer where the
    file systems will not (``copy_file_range`` refused: another device, no support)."""
    done = 0
    while done < n and hasattr(os, "copy_file_range"):
        try:
            step = os.copy_file_range(src, out, n - done, src_at + done, out_at + done)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
            break
        if step == 0:
            raise CaffeFormatError(src_path, f"byte {src_at + done}",
                                   f"the file ends; expected {n - done} more bytes")
        done += step
    buf = memoryview(bytearray(min(n - done, 8 << 20)))
    while done < n:
        got = os.preadv(src, [buf[:n - done]], src_at + done)
        if got == 0:
            raise CaffeFormatError(src_path, f"byte {src_at + done}",
                                   f"the file ends; expected {n - done} more bytes")
        _pwrite_all(out, buf[:got], out_at + done)
        done += got


def _pwrite_all(fd, view, at):
    while len(view):
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n


_fallocate = None


def _reserve(fd, at, n):
    """Allocate ``[at, at + n)`` up front (Linux ``fallocate``): ext4 fills preallocated blocks
    quicker than it allocates them page by page. Best effort, and never emulated by writing
    zeros (as glibc's ``posix_fallocate`` would be where the file system lacks it)."""
    global _fallocate
    if _fallocate is None:
        try:
            _fallocate = ctypes.CDLL(None, use_errno=True).fallocate
            _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        except (OSError, AttributeError):
            _fallocate = False
    if _fallocate:
        _fallocate(fd, 0, at, n)  # on failure (no support, disk full) the writes will tell


# --------------------------------------------------------------------------- CRC-32 pieces

class _Piece:
    """``length`` bytes of source ``index``: a view to sum, or None for a run of zeros.
    ``drop`` = (map, start, length): pages to let go once summed."""

    def __init__(self, index, length, view=None, drop=None):
        self.index, self.length, self.view, self.drop = index, length, view, drop

    def crc(self):
        if self.view is None:
            return crc32.zeros(self.length)
        value = zlib.crc32(self.view)
        if self.drop is not None:
            mm, lo, size = self.drop
            mm.madvise(mmap.MADV_DONTNEED, lo, size)  # a read-only shared map: nothing is lost
        return value

    def release(self):
        if self.view is not None:
            self.view.release()


def _crc_pieces(sources, maps):
    """Cut every source into pieces of at most :data:`PIECE` bytes, in order. File spans are
    read through one read-only map per file (kept in ``maps``): the page cache in place."""
    pieces = []
    for index, source in enumerate(sources):
        if source.span is None:
            whole = memoryview(source.memory).cast("B")
            pieces += [_Piece(index, j - i, whole[i:j]) for i, j in _cut(0, source.nbytes)]
            continue
        if source.span.identity not in maps:
            mm = mmap.mmap(source.fd, 0, access=mmap.ACCESS_READ)
            maps[source.span.identity] = (mm, memoryview(mm))
        mm, whole = maps[source.span.identity]
        for start, length, has_data in source.extents:
            if not has_data:
                pieces.append(_Piece(index, length))
                continue
            for i, j in _cut(source.span.offset + start, length):
                pieces.append(_Piece(index, j - i, whole[i:j], _pages(mm, i, j)))
    return pieces


def _cut(at, length):
    return [(i, min(i + PIECE, at + length)) for i in range(at, at + length, PIECE)]


def _pages(mm, lo, hi):
    """(map, start, length) of the whole pages of ``mm`` under ``[lo, hi)``."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    page = mmap.PAGESIZE
    lo = lo // page * page
    hi = min(-(-hi // page) * page, len(mm))
    return mm, lo, hi - lo


def _run_with_helpers(main, pieces, results):
    """Run ``main`` while helper threads sum ``pieces`` into ``results``; then help them."""
    todo = itertools.count()  # next() on it is atomic under the GIL
    stop, errors = threading.Event(), []

    def work():
        try:
            while not stop.is_set() and (i := next(todo)) < len(pieces):
                results[i] = pieces[i].crc()
        except BaseException as e:  # re-raised in the calling thread
            errors.append(e)
            stop.set()

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(_helper_count(pieces))]
    for t in helpers:
        t.start()
    try:
        main()
        work()
    except BaseException:
        stop.set()
        raise
    finally:
        for t in helpers:
            t.join()
    if errors:
        raise errors[0]


def _helper_count(pieces):
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(0, min(MAX_HELPERS, cpus - 1, len(pieces) - 1))
