"""``.solverstate`` files: where a solver stopped, so training resumes exactly.

SolverState (BVLC master): ``iter = 1``, ``learned_net = 2`` (path of the caffemodel written
with it), ``history = 3`` (BlobProto, one per learnable param: the momentum for SGD; AdaDelta
and Adam append a second set), ``current_step = 4`` (the step of the ``step`` and
``multistep`` lr policies). Caffe writes the HDF5 variant when ``snapshot_format: HDF5``; see
:mod:`.hdf5`. History blobs are read as views of the mapped file, as in :mod:`.caffemodel`.
"""
from .. import fileio
from .blobproto import blob_pieces
from .caffemodel import _checked_fields, _strip, with_hint
from ..errors import CaffeFormatError
from .proto import caffe_pb2
from .protoutil import parse_strict
from .records import SolverState
from .wire import WireError, length_delimited, split_at

EXPECTED = "a Caffe SolverState (.solverstate)"


def read_solverstate(path, *, strict=True):
    """Read a binary or HDF5 ``.solverstate``."""
    if fileio.is_hdf5(path):
        from .hdf5 import read_hdf5_solverstate

        return read_hdf5_solverstate(path)
    buf = fileio.map_file(path, EXPECTED)
    try:
        for _ in _checked_fields(buf, 0, len(buf), path, "SolverState"):
            pass  # validate the outer framing first: errors then point at the right byte
        try:
            head, blobs = _strip(buf, 0, len(buf), 3, None)
        except WireError as e:
            raise CaffeFormatError(path, f"byte {e.offset}",
                                   f"{e.what} (reading a history blob)") from None
        msg = parse_strict(caffe_pb2.SolverState, head, path, strict=strict)
    except CaffeFormatError as e:
        raise with_hint(e, path, "solverstate", EXPECTED) from None
    return SolverState(msg.iter, msg.current_step, msg.learned_net, [b.data for b in blobs],
                       path=str(path), format="binary")


def write_solverstate(state, path, *, hdf5=None):
    """Write ``state`` as Caffe would; HDF5 when ``hdf5`` is true or the name ends in ``.h5``."""
    if hdf5 is None:
        hdf5 = str(path).endswith(".h5")
    if hdf5:
        from .hdf5 import write_hdf5_solverstate

        return write_hdf5_solverstate(state, path)
    msg = caffe_pb2.SolverState(iter=state.iter, learned_net=state.learned_net,
                                current_step=state.current_step)
    before, after = split_at(msg.SerializeToString(), 3)
    with fileio.atomic_output(path) as f:
        f.write(before)
        for array in state.history:
            pieces, size = blob_pieces(array)
            f.write(length_delimited(3, size))
            for piece in pieces:
                f.write(piece if isinstance(piece, bytes) else memoryview(piece).cast("B"))
        f.write(after)
