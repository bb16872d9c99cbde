"""safetensors files: named arrays and text metadata, with no code in them, read and written
without torch (and without the ``safetensors`` package).

Not a Caffe format: the weights format of the Hugging Face ``safetensors`` project, which
fcn-port writes as a checkpoint that any program can read with ``safetensors.torch.load_file``.
The layout (the project's format description, "Format" in its README):

* 8 bytes: ``N``, the header's length, unsigned little-endian;
* ``N`` bytes: a UTF-8 JSON object ``{name: {"dtype": "F32", "shape": [...], "data_offsets":
  [begin, end]}, ..., "__metadata__": {str: str}}``, padded with spaces (this writer pads to a
  multiple of 8, so the data start 8-byte aligned, as the reference writer does);
* the data: each tensor's bytes, little-endian, row-major, at ``[begin, end)`` counted from
  the end of the header; the tensors tile the data with no gap and no overlap.

Where this differs from the reference implementation: the reference writer orders tensors by
dtype alignment then name; :func:`write` keeps the caller's order (both are valid files, the
readers accept any order that tiles the data). The checks of :func:`read` are the reference
reader's (header length within the file and at most 100 MB, known dtypes, offsets that tile the
data and match each shape, string metadata) plus duplicate names, which the JSON object of the
reference reader silently collapses; each failure is one :class:`CaffeFormatError` naming the
file and the tensor.

Zero copy: a tensor that is, byte for byte, an untouched span of a file mapped by
:func:`.files.map_file` (a caffemodel's blob) is written from that file through a private
read-only map, in 2 MiB pieces: each piece's pages are mapped with one call
(``MADV_POPULATE_READ``), ``pwrite`` copies them from the page cache to the output's, and they
are let go (``MADV_DONTNEED``), so the process never holds more than a piece of them and no
userspace copy is made. Other arrays are written from their own memory the same way; the pieces
are shared by two threads. (``copy_file_range`` was measured first: from a caffemodel's
unaligned blob offsets it was 0.41-0.48 s for the 538 MB voc-fcn8s against 0.25-0.33 s for the
pieces, on the 2-CPU VM of benchmarks/README.md.) :func:`read` maps the file copy-on-write and
gives numpy views of it: nothing is read until used, and the file never changes.
"""
import json
import math
import mmap
import os
import threading

import numpy as np

from . import files
from ..errors import CaffeFormatError

EXPECTED = "a safetensors file"
MAX_HEADER = 100_000_000  # bytes, as the reference reader
MAX_DIMS = 64  # axes of a tensor: numpy's limit (Caffe's blobs have at most 32)
MAX_ELEMENTS = 1 << 48  # the product of a shape's nonzero sizes: beyond any file's 2^63 bytes
PIECE = 2 << 20  # bytes per pwrite: stays in the cache; threads share the pieces
MAX_HELPERS = 1  # threads beside the calling one

# safetensors dtype -> numpy dtype (little-endian); BF16 and F8 have no numpy dtype
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_NAMES = {np.dtype(v).str.replace("|", "<").replace(">", "<"): k for k, v in DTYPES.items()}


def dtype_name(dtype):
    """The safetensors name of a numpy dtype (``float32`` -> ``"F32"``), or None."""
    d = np.dtype(dtype)
    return _NAMES.get(d.newbyteorder("<").str.replace("|", "<")) if d.kind in "fiub" else None


def looks_like(head):
    """Whether ``head`` (a file's first bytes, at least 9) starts like a safetensors file: a
    header length that is not absurd, then ``{``. Only a hint: :func:`read` decides."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= MAX_HEADER and head[8:9] == b"{"


def is_safetensors(path):
    """:func:`looks_like` for the file at ``path`` (False for one that cannot be opened)."""
    try:
        with open(path, "rb") as f:
            return looks_like(f.read(9))
    except OSError:
        return False


# --------------------------------------------------------------------------- writing

def header(tensors, metadata=None):
    """(header bytes, padded, with its 8-byte length in front; [(name, array, begin)]) for ``tensors``
    ({name: numpy array}, in the order they will be written) and ``metadata`` ({str: str})."""
    entries, placed, at = {}, [], 0
    if metadata:
        bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
        if bad:
            raise TypeError(f"safetensors metadata must map str to str; not {bad[:3]}")
        entries["__metadata__"] = dict(metadata)
    for name, a in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise TypeError(f"tensor name {name!r}: expected a str other than '__metadata__'")
        a = np.asarray(a)
        kind = dtype_name(a.dtype)
        if kind is None:
            raise TypeError(f"tensor {name!r}: dtype {a.dtype} has no safetensors name")
        entries[name] = {"dtype": kind, "shape": [int(d) for d in a.shape],
                         "data_offsets": [at, at + a.nbytes]}
        placed.append((name, a, at))
        at += a.nbytes
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return len(text).to_bytes(8, "little") + text, placed


def write(path, tensors, metadata=None, *, visit=None, before_commit=None, helpers=MAX_HELPERS):
    """Write ``tensors`` ({name: numpy array}) and ``metadata`` ({str: str}) to ``path`` as a
    safetensors file, atomically (nothing under ``path`` until complete). Arrays that are
    untouched spans of a mapped file are copied from that file. Returns the file's size.

    ``visit(name, values)`` sees every piece of every tensor (a little-endian 1-D array) right
    after it is written, while its bytes are in the cache (from two threads: keep it
    thread-safe), so a check of the values costs no pass of its own. ``before_commit()`` runs
    once all are written; it may return the final metadata, whose header must not be longer
    than the first one's (give placeholders of the final lengths: a digest computed meanwhile).
    An exception from either leaves nothing under ``path``. ``helpers``: threads that copy
    beside the calling one (0 where another thread, a hash of the source, needs a core)."""
    head, placed = header(tensors, metadata)
    size = len(head) + sum(a.nbytes for _, a, _ in placed)
    with files.atomic_output(path) as f:
        f.write(head)
        f.flush()
        fd = f.fileno()
        os.ftruncate(fd, size)
        sources, pieces = _Sources(), []
        try:
            pieces = [p for name, a, at in placed for p in sources.pieces(name, a, len(head) + at)]
            _run(fd, pieces, visit, helpers)
        finally:
            del pieces
            sources.close()
        final = before_commit() if before_commit is not None else None
        if final is not None:
            late, _ = header(tensors, final)
            if len(late) > len(head):
                raise ValueError(f"the final metadata needs {len(late) - 8} header bytes, "
                                 f"{len(head) - 8} were reserved")
            text = late[8:] + b" " * (len(head) - len(late))
            view = memoryview(len(text).to_bytes(8, "little") + text)
            while len(view):
                view = view[os.pwrite(fd, view, len(head) - len(view)):]
    return size


class _Sources:
    """The files the arrays are spans of: one descriptor and one read-only map each."""

    def __init__(self):
        self.maps = {}  # file identity -> (mmap, memoryview) or None (cannot be opened)

    def pieces(self, name, a, at):
        """[(view, output offset, (map, page start, length) to let go, or None, name, dtype)]
        of array ``a`` going to ``at``."""
        if a.nbytes == 0:
            return []
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        span = files.file_span(a.ctypes.data, a.nbytes)
        whole = self._map(span) if span is not None else None
        if whole is None:
            view = memoryview(a.reshape(-1).view(np.uint8))
            return [(view[i:j], at + i, None, name, a.dtype) for i, j in _cut(0, a.nbytes)]
        mm, view = whole
        page, lo0 = mmap.PAGESIZE, span.offset
        out = []
        for i, j in _cut(lo0, a.nbytes):
            lo, hi = i // page * page, min(-(-j // page) * page, len(mm))
            out.append((view[i:j], at + i - lo0, (mm, lo, hi - lo), name, a.dtype))
        return out

    def _map(self, span):
        if span.identity not in self.maps:
            fd, self.maps[span.identity] = span.open(), None
            if fd >= 0:
                try:
                    if span.offset + span.nbytes <= os.fstat(fd).st_size:
                        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                        self.maps[span.identity] = (mm, memoryview(mm))
                finally:
                    os.close(fd)
        return self.maps[span.identity]

    def close(self):
        for entry in self.maps.values():
            if entry is not None:
                entry[1].release()
                try:
                    entry[0].close()
                except BufferError:  # a slice kept alive by an error's traceback
                    pass


def _cut(at, n):
    return [(i, min(i + PIECE, at + n)) for i in range(at, at + n, PIECE)]


def _run(fd, pieces, visit=None, helpers=MAX_HELPERS):
    """``pwrite`` every piece, on this thread and up to ``helpers`` more (the copies
    release the GIL); ``visit`` sees each piece's values; a file span's pages are let go once
    written and visited."""
    todo, errors = iter(range(len(pieces))), []
    lock = threading.Lock()

    def work():
        try:
            while not errors:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                whole, at, drop, name, dtype = pieces[i]
                if drop is not None:
                    _populate(*drop)
                view = whole
                while len(view):
                    n = os.pwrite(fd, view, at)
                    view, at = view[n:], at + n
                if visit is not None:
                    visit(name, np.frombuffer(whole, dtype))
                if drop is not None and hasattr(mmap, "MADV_DONTNEED"):
                    drop[0].madvise(mmap.MADV_DONTNEED, drop[1], drop[2])
        except BaseException as e:  # re-raised by the calling thread
            errors.append(e)

    helpers = [threading.Thread(target=work, daemon=True)
               for _ in range(max(0, min(helpers, _cpus() - 1, len(pieces) - 1)))]
    for t in helpers:
        t.start()
    work()
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]


_POPULATE_READ = [22]  # MADV_POPULATE_READ (Linux 5.14): fault a range in with one call


def _populate(mm, at, n):
    """Map a source piece's pages in one call instead of one fault per 4 KiB page (several
    times quicker on a VM); where the kernel lacks it, the pwrite faults them as usual."""
    if _POPULATE_READ[0]:
        try:
            mm.madvise(_POPULATE_READ[0], at, n)
        except OSError:
            _POPULATE_READ[0] = 0


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- reading

def read(path, expected=EXPECTED):
    """({name: read-only-backed numpy view}, {str: str} metadata) of the safetensors file at
    ``path``, in the header's order. The views share a copy-on-write map of the file (writable,
    the file never changes). Anything that is not a valid file is one CaffeFormatError."""
    path = os.fspath(path)
    mm = files.map_file(path, expected)
    size = len(mm)
    if size < 8:
        raise CaffeFormatError(path, "", f"{size} bytes, shorter than the 8-byte header "
                               f"length; expected {expected}")
    n = int.from_bytes(mm[:8], "little")
    if n > MAX_HEADER or 8 + n > size:
        raise CaffeFormatError(path, "header", f"claims {n:,} bytes of header in a file of "
                               f"{size:,} bytes (at most {MAX_HEADER:,}); expected {expected}")
    entries, metadata = _parse_header(bytes(mm[8:8 + n]), path, expected)
    data = 8 + n
    end = max((e[3] for e in entries.values()), default=0)
    if data + end != size:
        raise CaffeFormatError(path, "data", f"the tensors end at byte {data + end:,}, the file "
                               f"at {size:,}; expected {expected} (truncated, or bytes appended)")
    arrays = {name: np.frombuffer(mm, dtype, math.prod(shape), data + begin).reshape(shape)
              for name, (dtype, shape, begin, _) in entries.items()}
    return arrays, metadata


def _unique_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the name {k!r} appears twice")
        out[k] = v
    return out


def _parse_header(raw, path, expected):
    """({name: (numpy dtype, shape, begin, end)}, metadata) of the JSON header, checked."""
    def bad(where, what):
        return CaffeFormatError(path, where, f"{what}; expected {expected}")

    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad("header", f"not a UTF-8 JSON object ({str(e)[:120]})") from None
    if not isinstance(obj, dict):
        raise bad("header", f"a JSON {type(obj).__name__}, not an object")
    metadata = obj.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("__metadata__", "not an object of strings")
    entries = {}
    for name, e in obj.items():
        where = f"tensor '{name[:80]}'"
        if not isinstance(e, dict) or set(e) - {"dtype", "shape", "data_offsets"}:
            raise bad(where, "not an object of dtype, shape and data_offsets")
        dtype, shape, offsets = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if dtype not in DTYPES:
            raise bad(where, f"dtype {str(dtype)[:20]!r} (fcn-port reads {', '.join(DTYPES)})")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise bad(where, f"shape {str(shape)[:60]}, not a list of sizes")
        if len(shape) > MAX_DIMS:
            raise bad(where, f"a shape of {len(shape):,} axes (at most {MAX_DIMS})")
        if math.prod(d for d in shape if d) > MAX_ELEMENTS:
            raise bad(where, f"shape {str(shape)[:60]}: sizes whose product passes "
                             f"{MAX_ELEMENTS:,} (2^48) values")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int and o >= 0 for o in offsets) and offsets[0] <= offsets[1]):
            raise bad(where, f"data_offsets {str(offsets)[:60]}, not [begin, end]")
        nbytes = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise bad(where, f"{offsets[1] - offsets[0]:,} bytes at {offsets} for {dtype} "
                             f"{shape} ({nbytes:,} bytes)")
        entries[name] = (np.dtype(DTYPES[dtype]), tuple(shape), offsets[0], offsets[1])
    at = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: kv[1][2:]):
        if begin != at:
            raise bad(f"tensor '{name[:80]}'", f"starts at data byte {begin:,}, where "
                      f"{'the data' if at == 0 else 'the tensor before it'} "
                      f"{'starts' if at == 0 else 'ends'} at {at:,} (a gap or an overlap)")
        at = end
    return entries, metadata
