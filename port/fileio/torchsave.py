"""``torch.save(obj, path)``, with the tensors of a mapped caffemodel written from the file.

Why: the tensors of ``read_weights(path).state_dict()`` are views of the caffemodel, mapped
copy-on-write. Plain ``torch.save`` reads all of them through that map, so every page of the
file ends up in the process's RSS (a 538 MB voc-fcn8s peaks at imports + 1.00x the file), and
it sums the CRC-32s and writes on one thread. Here those bytes are read from the file through
a private read-only map, 2 MiB at a time, each piece summed and written while in the cache and
then let go; and the pieces are shared among threads.

How, in four steps:

1. **Skeleton.** ``torch.save`` runs under ``torch.serialization.skip_data()``: it writes the
   pickle, the small records and the zip directory, and reserves each storage's record
   ``data/<key>`` as a hole, with CRC 0. A stand-in pickle module learns which storage torch
   gave which key (:func:`_recording_pickle_module`). The keys must be ``0..n-1`` with one
   stored record each of the storage's size; :class:`TorchLayoutError` says what differed.
2. **Sources.** :func:`.files.file_span` says whether a storage is, byte for byte, a span of
   a mapped file (a packed blob of a caffemodel, no page of it written to since; float or
   double). The rest (tensors not from a file, unpacked or split payloads, pages written to)
   are written from memory.
3. **Fill.** Each storage is cut into :data:`PIECE`-byte pieces; every thread (this one and
   up to :data:`MAX_HELPERS` more) takes the next piece, sums its CRC-32, ``pwrite``s it into
   the record and, for a file span, drops its pages from the process (``MADV_DONTNEED``), so
   the peak RSS stays near the interpreter's own. Records get their blocks up front
   (``fallocate``); holes of a sparse source stay holes and their CRC is computed, not read
   (:mod:`.crc32`).
4. **Patch.** :func:`.torchzip.put_crcs` writes the CRCs and the matching
   ``.data/serialization_id``: the file is, byte for byte, what ``torch.save(obj, path)``
   writes, and ``torch.load`` and ``zipfile`` both accept it. (Under torch's
   ``set_crc32_options(False)`` the CRCs stay 0, as torch.save leaves them.)

``copy_file_range`` (the kernel copying file to file) was tried first: a caffemodel's blobs
start at arbitrary offsets, so its splice splits every output page in two, and with the CRC
pass on another thread it was 15-25 % slower than the pieces here (benchmarks/README.md).

The output is written under a temporary name and renamed into place only when complete
(:func:`.files.atomic_output`): no partial file on error. No fsync, as torch.save does none.
Where this torch lacks ``skip_data`` (before 2.6) it is plain ``torch.save``, still atomic;
a file object instead of a path goes to ``torch.save`` unchanged.
"""
import contextlib
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

from . import crc32, files, torchzip

PIECE = 2 << 20  # bytes per work item: small enough to stay in the cache between CRC and write
MAX_HELPERS = 3  # threads beside the calling one


class TorchLayoutError(torchzip.LayoutError):
    """``torch.save`` named or laid out its storages differently from what this module expects."""

    def __init__(self, path, what):
        import torch

        super().__init__(path, f"{what} (torch {torch.__version__}; fcn_port.port.fileio.torchsave "
                               "expects one stored record data/<key> per storage, keys 0..n-1)")


def save(obj, path):
    """Write ``obj`` to ``path`` exactly as ``torch.save(obj, path)`` does; see the module doc."""
    import torch

    if not isinstance(path, (str, os.PathLike)):
        return torch.save(obj, path)
    path = os.fspath(path)
    with files.atomic_output(path, mode=None, same_name=True) as tmp:
        if not hasattr(torch.serialization, "skip_data"):
            return torch.save(obj, tmp)
        storages = _write_skeleton(obj, tmp, path)
        fd = os.open(tmp, os.O_RDWR)
        try:
            found = torchzip.records(fd, path)
            slots = _pair(found, storages, path)
            crcs = _fill(fd, slots, torch.serialization.get_crc32_options())
            if crcs is not None:
                torchzip.put_crcs(fd, found, {slot.record.name: c for slot, c in zip(slots, crcs)})
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- 1. skeleton

def _write_skeleton(obj, tmp, path):
    """torch.save to ``tmp`` without the storage bytes; return ``{key: UntypedStorage}`` as
    torch keyed them. (``path``, the file asked for, names it in errors.)"""
    import torch

    seen = []
    with torch.serialization.skip_data():
        torch.save(obj, tmp, pickle_module=_recording_pickle_module(seen))
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
    """Where a storage's bytes come from: a file span (``fd`` open on that very file, shared
    by its spans; ``extents`` (start, length, has data) relative to the span) or memory."""

    nbytes: int
    span: files.FileSpan = None
    fd: int = -1
    extents: list = ()
    memory: np.ndarray = None  # uint8, over the storage


def _source(storage, fds):
    """The source of ``storage``; ``fds`` ({file identity: fd or -1}) opens each file once."""
    if storage.device.type != "cpu":
        storage = storage.cpu()  # as torch.save does
    n = storage.nbytes()
    span = files.file_span(storage.data_ptr(), n)
    if span is not None and span.identity not in fds:
        fds[span.identity] = span.open()
    fd = fds[span.identity] if span is not None else -1
    if fd >= 0 and span.offset + n <= os.fstat(fd).st_size:
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
    if not hasattr(os, "SEEK_DATA"):
        return [(0, n, True)]
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
    sources, fds, maps, pieces = [], {}, {}, []
    try:
        for slot in slots:
            sources.append(_source(slot.storage, fds))
        for slot, source in zip(slots, sources):
            _reserve_extents(out, slot.record.data_at, source)
        pieces = _pieces(slots, sources, maps)
        results = _run_pieces(out, pieces, crc)
    finally:
        for piece in pieces:
            piece.release()
        for mm, whole in maps.values():
            whole.release()
            with contextlib.suppress(BufferError):  # a slice kept by an error's traceback:
                mm.close()  # the map closes when that goes
        for fd in fds.values():
            if fd >= 0:
                os.close(fd)
    if not crc:
        return None
    crcs = [0] * len(sources)
    for piece, value in zip(pieces, results):
        crcs[piece.index] = crc32.combine(crcs[piece.index], value, piece.length)
    return crcs


class _Piece:
    """``length`` bytes of storage ``index``, going to ``out_at`` in the output: ``view`` holds
    them, or is None for a run of zeros (a hole of a sparse source: nothing to write).
    ``drop`` = (map, start, length): pages of a source map to let go once done."""

    def __init__(self, index, length, out_at, view=None, drop=None):
        self.index, self.length, self.out_at, self.view, self.drop = index, length, out_at, view, drop

    def run(self, out, crc):
        """Write the piece (the CRC first, while the bytes are in the cache); return its CRC."""
        if self.view is None:
            return crc32.zeros(self.length) if crc else 0
        value = zlib.crc32(self.view) if crc else 0
        _pwrite_all(out, self.view, self.out_at)
        if self.drop is not None:
            mm, lo, size = self.drop
            mm.madvise(mmap.MADV_DONTNEED, lo, size)  # a read-only shared map: nothing is lost
        return value

    def release(self):
        if self.view is not None:
            self.view.release()


def _pieces(slots, sources, maps):
    """Cut every storage into pieces of at most :data:`PIECE` bytes, in file order. File spans
    are read through one read-only map per file (kept in ``maps``), so the bytes come from the
    file (its page cache), never from the caller's copy-on-write map."""
    pieces = []
    for index, (slot, source) in enumerate(zip(slots, sources)):
        out_at = slot.record.data_at
        if source.span is None:
            whole = memoryview(source.memory).cast("B")
            pieces += [_Piece(index, j - i, out_at + i, whole[i:j]) for i, j in _cut(0, source.nbytes)]
            continue
        if source.span.identity not in maps:
            mm = mmap.mmap(source.fd, 0, access=mmap.ACCESS_READ)
            maps[source.span.identity] = (mm, memoryview(mm))
        mm, whole = maps[source.span.identity]
        base = source.span.offset
        for start, length, has_data in source.extents:
            if not has_data:
                pieces.append(_Piece(index, length, out_at + start))
                continue
            for i, j in _cut(base + start, length):
                pieces.append(_Piece(index, j - i, out_at + i - base, whole[i:j], _pages(mm, i, j)))
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


def _pwrite_all(fd, view, at):
    while len(view):
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n


def _run_pieces(out, pieces, crc):
    """Run every piece, on this thread and up to :data:`MAX_HELPERS` more; their CRCs in order."""
    results = [None] * len(pieces)
    todo = itertools.count()  # next() on it is atomic under the GIL
    stop, errors = threading.Event(), []

    def work():
        try:
            while not stop.is_set() and (i := next(todo)) < len(pieces):
                results[i] = pieces[i].run(out, crc)
        except BaseException as e:  # re-raised in the calling thread
            errors.append(e)
            stop.set()

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(_helper_count(pieces))]
    for t in helpers:
        t.start()
    try:
        work()
    finally:
        for t in helpers:
            t.join()
    if errors:
        raise errors[0]
    return results


def _helper_count(pieces):
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(0, min(MAX_HELPERS, cpus - 1, len(pieces) - 1))


_fallocate = None


def _reserve_extents(out, at, source):
    """Allocate the blocks a file span's data will fill (Linux ``fallocate``): ext4 fills
    preallocated blocks quicker than it allocates them page by page. Holes stay holes."""
    if source.span is None:
        return
    for start, length, has_data in source.extents:
        if has_data:
            _reserve(out, at + start, length)


def _reserve(fd, at, n):
    """Best effort, and never emulated by writing zeros (as glibc's ``posix_fallocate`` would
    be where the file system lacks it); a failure (no support, disk full) is the writes' to report."""
    global _fallocate
    if _fallocate is None:
        try:
            _fallocate = ctypes.CDLL(None, use_errno=True).fallocate
            _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        except (OSError, AttributeError):
            _fallocate = False
    if _fallocate:
        _fallocate(fd, 0, at, n)
