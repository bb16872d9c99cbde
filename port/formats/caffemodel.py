"""Binary ``.caffemodel`` files (a serialized NetParameter) read and written without copies.

Reading scans the outer messages by hand (:mod:`.wire`): each layer's blobs become numpy views
of the mapped file and the rest of each layer, a few hundred bytes, is parsed by protobuf in one
call for the whole net. So a 538 MB voc-fcn8s reads in milliseconds, in no more memory than the
pages actually touched, and files past protobuf's 512 MB / 2 GB limits read like any other.

Layers live in ``layer`` (field 100, LayerParameter, blobs = 7) in current files, in ``layers``
(field 2, V1LayerParameter, blobs = 6) in V1 files such as the VGG16 ILSVRC weights, and V0
files nest a V0LayerParameter (blobs = 50) as field 1 of each V1 layer.

Writing emits bytes in Caffe's own order (``Net::ToProto`` + ``SerializeToString``): each layer
message exactly as protobuf serializes it, with its blobs spliced in at field 7; the floats go
from the arrays to the file with no intermediate copy.
"""
import hashlib

import numpy as np

from .. import fileio
from .blobproto import blob_pieces, parse_blob
from ..errors import CaffeFormatError, UnsupportedError, UserInputError
from .proto import caffe_pb2
from .protoutil import parse_strict, printable
from .sniff import hint
from .records import Weights, layer_messages  # noqa: F401  (Weights: public here too)
from .wire import LEN, WireError, fields, length_delimited, split_at

# top-level NetParameter field -> (layer format, blob field, nested (field, blob field))
_LAYER_FIELDS = {100: ("V2", 7, None), 2: ("V1", 6, (1, 50))}
_NAME_FIELD = {100: 1, 2: 4}
EXPECTED = "a binary Caffe NetParameter (.caffemodel)"


def _strip(buf, start, stop, blob_field, nested):
    """A layer message minus its blobs (bytes), and the blobs it held."""
    head, blobs = bytearray(), []
    for number, wt, at, a, b, _ in fields(buf, start, stop):
        if number == blob_field and wt == LEN:
            blobs.append(parse_blob(buf, a, b))
        elif nested and number == nested[0] and wt == LEN:
            inner, inner_blobs = _strip(buf, a, b, nested[1], None)
            head += length_delimited(number, len(inner)) + inner
            blobs += inner_blobs
        else:
            head += buf[at:b]
    return bytes(head), blobs


def _layer_name(buf, start, stop, number):
    """Best effort: the layer's name from its raw bytes, for an error message."""
    try:
        for n, wt, _, a, b, _ in fields(buf, start, stop):
            if n == _NAME_FIELD[number] and wt == LEN:
                return printable(bytes(buf[a:b]).decode("utf-8", "replace"))
    except WireError:
        pass
    return "?"


def scan_net(buf, path, strict=True):
    """Parse a binary NetParameter in ``buf``; return (header net, [(field, [Blob, ...]) per layer])."""
    header, layers = bytearray(), []
    for number, wt, at, a, b, _ in _checked_fields(buf, 0, len(buf), path, "NetParameter"):
        if number in _LAYER_FIELDS and wt == LEN:
            _, blob_field, nested = _LAYER_FIELDS[number]
            try:
                head, blobs = _strip(buf, a, b, blob_field, nested)
            except WireError as e:
                name = _layer_name(buf, a, b, number)
                raise CaffeFormatError(path, f"byte {e.offset}, layer #{len(layers)} '{name}'", e.what) from None
            header += length_delimited(number, len(head)) + head
            layers.append((number, blobs))
        else:
            header += buf[at:b]
    net = parse_strict(caffe_pb2.NetParameter, header, path, strict=strict)
    if net.layer and net.layers:
        raise CaffeFormatError(path, "", "the net has both 'layer' (V2) and 'layers' (V1) fields; "
                                         "Caffe refuses such a file")
    return net, layers


def with_hint(error, path, wanted, expected=EXPECTED):
    """``error`` with what the file seems to be instead (a prototxt, a checkpoint, ...), if
    known, else with what was expected."""
    extra = hint(path, wanted)
    if not extra:
        if "expected" in error.what:
            return error
        return CaffeFormatError(error.path, error.where, f"{error.what}; expected {expected}")
    detail = f"{error.where}: {error.what}" if error.where else error.what
    return CaffeFormatError(error.path, "", f"{extra} (read as a binary {wanted}: {detail})")


def _checked_fields(buf, start, stop, path, what):
    try:
        yield from fields(buf, start, stop)
    except WireError as e:
        raise CaffeFormatError(path, f"byte {e.offset}", f"{e.what} (reading {what})") from None


def net_version(net):
    if any(v1.HasField("layer") for v1 in net.layers):
        return "V0"
    return "V1" if net.layers else "V2"


def read_weights(path, *, upgrade=True, strict=True):
    """Read a ``.caffemodel`` (binary or HDF5) into :class:`Weights`.

    With ``upgrade`` (the default) the net header is brought to the current format the way
    Caffe does on load (V0/V1 layers, legacy inputs, ...); ``Weights.upgrades`` says what changed.
    """
    if fileio.is_hdf5(path):
        from .hdf5 import read_hdf5_weights

        return read_hdf5_weights(path)
    buf = fileio.map_file(path, EXPECTED)
    try:
        net, layers = scan_net(buf, path, strict)
    except CaffeFormatError as e:
        raise with_hint(e, path, "caffemodel") from None
    version = net_version(net)
    v2 = iter(net.layer)
    v1 = iter(net.layers)
    params, legacy, diffs = {}, set(), {}
    for number, blobs in layers:
        msg = next(v2) if number == 100 else next(v1)
        name = msg.layer.name if version == "V0" else msg.name
        if not blobs:
            continue
        params[name] = [b.data for b in blobs]
        legacy |= {(name, i) for i, b in enumerate(blobs) if b.legacy}
        if any(b.diff is not None for b in blobs):
            diffs[name] = [b.diff for b in blobs]
    upgrades = []
    if upgrade:
        from .upgrade import upgrade_net

        upgrades = upgrade_net(net)
    return Weights(net, params, path=str(path), version=version, upgrades=upgrades,
                   legacy=legacy, diffs=diffs)


def write_weights(weights, path, *, net=None):
    """Write ``weights`` (a :class:`Weights`, or ``{layer: [arrays]}`` with ``net``) as a binary
    caffemodel, in the byte order Caffe itself uses. Returns the file's sha256.

    Layers of ``net`` without params are written as they are (Caffe writes every layer); a
    params entry naming no layer of ``net`` is an error. Nothing is left behind on failure.
    """
    if isinstance(weights, Weights):
        net, params, legacy = net or weights.net, weights.params, weights.legacy
    else:
        params, legacy = weights, set()
        if net is None:
            net = caffe_pb2.NetParameter(layer=[caffe_pb2.LayerParameter(name=n) for n in params])
    if any(m.HasField("layer") for m in net.layers):
        raise UnsupportedError(f"{path}: writing V0 nets is not supported; upgrade the net first")
    layers = list(layer_messages(net))
    missing = set(params) - {name for _, _, name in layers}
    if missing:
        raise UserInputError(f"{path}: params for layers the net does not have: {sorted(missing)}")

    top = caffe_pb2.NetParameter()
    top.CopyFrom(net)
    del top.layer[:], top.layers[:]
    before_v1, rest = split_at(top.SerializeToString(), 2)
    before_v2, after = split_at(rest, 100)

    digest = hashlib.sha256()
    with fileio.atomic_output(path) as f:
        def emit(piece):
            view = memoryview(piece).cast("B")
            digest.update(view)
            f.write(view)

        emit(before_v1)
        for number, msg, name in layers:
            if number == 100 and before_v2 is not None:
                emit(before_v2)
                before_v2 = None
            _emit_layer(emit, number, msg, name, params.get(name, ()), legacy)
        if before_v2 is not None:
            emit(before_v2)
        emit(after)
    return digest.hexdigest()


def _emit_layer(emit, number, msg, name, blobs, legacy):
    blob_field = _LAYER_FIELDS[number][1]
    bare = type(msg)()
    bare.CopyFrom(msg)
    del bare.blobs[:]
    head, tail = split_at(bare.SerializeToString(), blob_field)
    encoded = [blob_pieces(a, (name, i) in legacy) for i, a in enumerate(blobs)]
    body = [length_delimited(blob_field, size) for _, size in encoded]
    total = len(head) + len(tail) + sum(len(k) + size for k, (_, size) in zip(body, encoded))
    emit(length_delimited(number, total))
    emit(head)
    for k, (pieces, _) in zip(body, encoded):
        emit(k)
        for piece in pieces:
            emit(piece if isinstance(piece, bytes) else np.ascontiguousarray(piece).view(np.uint8))
    emit(tail)
