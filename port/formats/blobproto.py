"""BlobProto, decoded into numpy views and encoded the way Caffe's ``Blob::ToProto`` writes it.

Caffe's BlobProto (field numbers of BVLC master)::

    num=1 channels=2 height=3 width=4   legacy 4-D dims (V1-era files), int32
    data=5 diff=6                       packed float32
    shape=7                             BlobShape { dim=1 packed int64 }
    double_data=8 double_diff=9         packed float64

How Caffe reads one (``Blob::FromProto``): if any legacy dim is present the shape is
``(num, channels, height, width)`` with absent dims 0, otherwise ``shape.dim``; then, when
``double_data`` is non-empty it must hold exactly count values, else ``data`` must. The same
rule applies to diffs. How Caffe writes one (``Blob<float>::ToProto``): ``shape`` with every dim
and ``data`` packed; serialization puts ``data`` (5) before ``shape`` (7), and an empty packed
field is not written at all.

Here the payload of a packed field becomes a numpy view of the caller's buffer (a mapped file):
no per-element Python work, no copy. Unpacked repeated floats (legal protobuf, written by some
old tools) are gathered with one vectorised numpy pass.
"""
import numpy as np

from ..errors import UserInputError
from .wire import I32, I64, LEN, VARINT, WireError, key, length_delimited, read_field, read_varint, varint

_F32, _F64 = np.dtype("<f4"), np.dtype("<f8")
# field number -> (role, element dtype, wire type of one unpacked element)
_PAYLOAD = {5: ("data", _F32, I32), 6: ("diff", _F32, I32),
            8: ("double_data", _F64, I64), 9: ("double_diff", _F64, I64)}
_LEGACY = {1: "num", 2: "channels", 3: "height", 4: "width"}


class Blob:
    """One decoded BlobProto: ``data`` (and ``diff`` when the file has one) as numpy arrays."""

    __slots__ = ("data", "diff", "legacy")

    def __init__(self, data, diff=None, legacy=False):
        self.data, self.diff, self.legacy = data, diff, legacy


def _unpacked_run(buf, at, end, tag, dtype):
    """Gather a run of unpacked elements ``[tag][value]...`` starting at ``at``: the run's end is
    found in windows that double (64, 128, ... records), so the work is linear in the run's
    length, not in what is left of the blob (runs of one value each, alternating data and
    diff, were quadratic: 3 MB took minutes)."""
    width = 1 + dtype.itemsize
    rows, run, window = (end - at) // width, 0, 64
    while run < rows:
        n = min(window, rows - run)
        tags = np.frombuffer(buf, np.uint8, n * width, at + run * width)[::width]
        mismatch = tags != tag
        if mismatch.any():
            run += int(np.argmax(mismatch))
            break
        run, window = run + n, window * 2
    records = np.frombuffer(buf, np.uint8, run * width, at).reshape(run, width)
    values = np.ascontiguousarray(records[:, 1:]).view(dtype).reshape(-1)
    return values, at + run * width


MAX_AXES = 32  # Caffe's kMaxBlobAxes (blob.hpp): Blob::Reshape refuses more


def _dims(buf, start, stop):
    """BlobShape.dim, packed or not; more than :data:`MAX_AXES` is refused as it is read."""
    dims, pos = [], start
    while pos < stop:
        if len(dims) > MAX_AXES:
            raise WireError(start, f"BlobShape has more than {MAX_AXES} dims (Caffe's "
                                   "kMaxBlobAxes); corrupt shape")
        number, wt, at, a, b, value = read_field(buf, pos, stop)
        if number != 1:
            raise WireError(at, f"BlobShape has no field {number}; only dim = 1 exists")
        if wt == LEN:
            p = a
            while p < b and len(dims) <= MAX_AXES:
                d, p = read_varint(buf, p, b)
                dims.append(d - (1 << 64) if d >> 63 else d)
        elif wt == VARINT:
            dims.append(value - (1 << 64) if value >> 63 else value)
        else:
            raise WireError(at, "BlobShape.dim must be int64 (varint), found another wire type")
        pos = b
    return dims


def parse_blob(buf, start, stop):
    """Decode the BlobProto in ``buf[start:stop]``; raise WireError on anything Caffe would reject."""
    chunks = {role: [] for role, _, _ in _PAYLOAD.values()}
    legacy, shape, pos = {}, None, start
    while pos < stop:
        number, wt, at, a, b, value = read_field(buf, pos, stop)
        pos = b
        if number in _PAYLOAD:
            role, dtype, elem_wt = _PAYLOAD[number]
            if wt == LEN:
                if (b - a) % dtype.itemsize:
                    raise WireError(at, f"BlobProto.{role} holds {b - a} bytes, not a whole number "
                                        f"of {dtype.itemsize}-byte values")
                chunks[role].append(np.frombuffer(buf, dtype, (b - a) // dtype.itemsize, a))
            elif wt == elem_wt:
                values, pos = _unpacked_run(buf, at, stop, buf[at], dtype)
                chunks[role].append(values)
            else:
                raise WireError(at, f"BlobProto.{role} has the wrong wire type")
        elif number in _LEGACY and wt == VARINT:
            legacy[_LEGACY[number]] = value - (1 << 64) if value >> 63 else value
        elif number == 7 and wt == LEN:
            shape = _dims(buf, a, b)
        else:
            raise WireError(at, f"BlobProto has no field {number} with wire type {wt} "
                                "(corrupt blob, or a Caffe fork's extension)")
    if legacy:
        shape = [legacy.get(k, 0) for k in ("num", "channels", "height", "width")]
    shape = tuple(shape or ())
    if len(shape) > MAX_AXES:
        raise WireError(start, f"BlobShape has more than {MAX_AXES} dims (Caffe's kMaxBlobAxes); "
                               "corrupt shape")
    if any(d < 0 for d in shape):
        raise WireError(start, f"blob shape {shape} has a negative dimension")
    count = int(np.prod(shape, dtype=object))  # 1 for shape (): Caffe's scalar blob
    arrays = {role: (parts[0] if len(parts) == 1 else np.concatenate(parts)) if parts else None
              for role, parts in chunks.items()}
    data = arrays["double_data"] if arrays["double_data"] is not None else arrays["data"]
    diff = arrays["double_diff"] if arrays["double_diff"] is not None else arrays["diff"]
    if data is None:
        data = np.zeros(0, _F32)
    if data.size != count:
        raise WireError(start, f"blob shape {shape} holds {count} values but the blob has {data.size} "
                               "(blob count disagrees with its shape)")
    if diff is not None and diff.size != count:
        raise WireError(start, f"blob shape {shape} holds {count} values but its diff has {diff.size}")
    data = data.reshape(shape)
    return Blob(data, None if diff is None else diff.reshape(shape), bool(legacy))


def blob_pieces(array, legacy=False):
    """Encode ``array`` as a BlobProto the way Caffe writes it; return (pieces, total length).

    ``pieces`` is a list of bytes and numpy arrays to write in order, so the floats go to the
    file straight from the array's memory. float64 arrays become ``double_data`` (as
    ``Blob<double>`` writes); everything else is stored as float32 ``data``.
    """
    array = np.asarray(array)
    double = array.dtype == np.float64
    values = np.ascontiguousarray(array, dtype=_F64 if double else _F32).reshape(-1)
    if legacy:
        if array.ndim != 4:
            raise UserInputError(f"legacy blob dims need a 4-D array, got shape {array.shape}")
        dims = b"".join(key(n, VARINT) + varint(d) for n, d in zip((1, 2, 3, 4), array.shape))
        before, after = [dims], []
    else:
        packed = b"".join(varint(d) for d in array.shape)
        dim = length_delimited(1, len(packed)) + packed if array.shape else b""
        shape = length_delimited(7, len(dim)) + dim
        # field order: data (5) < shape (7) < double_data (8)
        before, after = ([shape], []) if double else ([], [shape])
    payload = [length_delimited(8 if double else 5, values.nbytes), values] if values.size else []
    pieces = before + payload + after
    return pieces, sum(len(p) if isinstance(p, bytes) else p.nbytes for p in pieces)


BLOB_FILE = "a BlobProto (.binaryproto, e.g. a mean image written by compute_image_mean)"


def read_blob_file(path):
    """The one BlobProto of a ``.binaryproto`` file (Caffe's ``ReadProtoFromBinaryFile`` of a
    mean file), its data a float array of the blob's shape viewing the mapped file (no copy:
    memory is bounded by the file). CaffeFormatError naming the file and byte otherwise."""
    import os
    import stat

    from ..errors import CaffeFormatError
    from ..fileio import map_file

    path = os.fspath(path)
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        regular = True  # map_file names the problem
    if not regular:
        raise CaffeFormatError(path, "", f"not a regular file; expected {BLOB_FILE}")
    buf = map_file(path, BLOB_FILE)
    try:
        return parse_blob(buf, 0, len(buf))
    except WireError as e:
        raise CaffeFormatError(path, f"byte {e.offset}", f"{e.what}; expected {BLOB_FILE}") \
            from None


def channel_means(blob, path="mean file"):
    """The per-channel means of a mean image (C x H x W, or 1 x C x H x W): what
    ``fcn-port infer``/``eval --mean-file`` subtract, as pycaffe's examples do with
    ``mean.mean(1).mean(1)``."""
    from ..errors import CaffeFormatError

    data = blob.data
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 3 or data.shape[0] < 1 or data.size == 0:
        raise CaffeFormatError(path, "", f"a mean image is C x H x W (or 1 x C x H x W), this "
                               f"blob is {tuple(blob.data.shape)}")
    return [float(v) for v in data.reshape(data.shape[0], -1).mean(1, dtype=np.float64)]
