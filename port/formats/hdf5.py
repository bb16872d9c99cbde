"""Caffe's HDF5 formats: ``.caffemodel.h5`` and ``.solverstate.h5``.

Layout Caffe writes (``Net::ToHDF5``, ``SGDSolver::SnapshotSolverStateToHDF5``)::

    weights      /data/<layer>/<i>      one group per layer (also layers without params),
                                        dataset i = param blob i, float32 in the blob's shape
                 /diff/<layer>/<i>      only when snapshot_diff is set
    solverstate  /iter, /current_step   int32 datasets of shape (1,)
                 /learned_net           scalar fixed-length string, NUL-terminated (len + 1)
                 /history/<i>           one dataset per history blob

Caffe loads weights by layer name; the file keeps no layer order (HDF5 lists groups
alphabetically), no types and no settings, so an HDF5 file read alone gives a header net with
names only.
"""
import contextlib
import os

import h5py
import numpy as np

from .. import fileio
from ..errors import CaffeFormatError
from .proto import caffe_pb2
from .protoutil import printable
from .records import SolverState, Weights, layer_messages


@contextlib.contextmanager
def _guard(path, expected):
    """libhdf5 reports a damaged file from wherever it notices (opening a group, reading a
    dataset) as OSError, RuntimeError, KeyError, ValueError or TypeError: all become one
    CaffeFormatError naming the file."""
    try:
        yield
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        if isinstance(e, CaffeFormatError):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200].strip("'\"")
        raise CaffeFormatError(path, "", f"corrupt HDF5 file ({first}); expected "
                               f"{expected}") from None


def _open(path, expected):
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise CaffeFormatError(path, "", f"unreadable HDF5 file ({e}); expected {expected}") from None


def _indexed(group, path, where):
    """The datasets ``0, 1, ...`` of ``group`` as arrays, checking the names are exactly that."""
    names = list(group.keys())
    if sorted(names, key=lambda n: (len(n), n)) != [str(i) for i in range(len(names))]:
        raise CaffeFormatError(path, printable(where), f"expected datasets named "
                               f"0..{len(names) - 1}, found {printable(names, 200)}")
    out, room = [], 16 * os.path.getsize(path) + (1 << 20)
    for i in range(len(names)):
        ds = group[str(i)]
        if not isinstance(ds, h5py.Dataset) or ds.dtype.kind != "f":
            raise CaffeFormatError(path, printable(f"{where}/{i}"), "expected a float dataset")
        if ds.size * ds.dtype.itemsize > room:  # Caffe writes plain datasets: no huge claims
            raise CaffeFormatError(path, f"{where}/{i}", f"dataset of shape {ds.shape} claims "
                                   f"{ds.size * ds.dtype.itemsize:,} bytes in a file of "
                                   f"{os.path.getsize(path):,}; expected a blob the file holds")
        try:
            out.append(ds[()] if ds.shape else np.asarray(ds[()]).reshape(()))
        except OSError as e:
            raise CaffeFormatError(path, f"{where}/{i}", f"cannot read dataset ({e})") from None
    return out


def read_hdf5_weights(path):
    """Read a ``.caffemodel.h5`` into :class:`~.caffemodel.Weights`."""
    expected = "an HDF5 caffemodel with a /data group"
    with _guard(path, expected), _open(path, expected) as f:
        data = f.get("data")
        if not isinstance(data, h5py.Group):
            raise CaffeFormatError(path, "/data", "no /data group: not a Caffe HDF5 caffemodel")
        params, diffs, names = {}, {}, list(data.keys())
        for name in names:
            if not isinstance(data[name], h5py.Group):
                raise CaffeFormatError(path, printable(f"/data/{name}"),
                                       "expected a group of param datasets")
            blobs = _indexed(data[name], path, f"/data/{name}")
            if blobs:
                params[name] = blobs
        if isinstance(f.get("diff"), h5py.Group):
            diffs = {n: _indexed(g, path, f"/diff/{n}") for n, g in f["diff"].items() if len(g)}
    net = caffe_pb2.NetParameter(layer=[caffe_pb2.LayerParameter(name=n) for n in names])
    return Weights(net, params, path=str(path), format="hdf5", diffs=diffs)


def write_hdf5_weights(weights, path, *, net=None):
    """Write weights (a :class:`Weights` or ``{layer: [arrays]}``) in Caffe's HDF5 layout."""
    params = weights.params if isinstance(weights, Weights) else weights
    if net is None and isinstance(weights, Weights):
        net = weights.net
    names = list(dict.fromkeys(name for _, _, name in layer_messages(net))) if net is not None else []
    names += [n for n in params if n not in names]
    with fileio.atomic_output(path, mode=None) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for name in names:
            group = data.create_group(name)
            for i, a in enumerate(params.get(name, ())):
                group.create_dataset(str(i), data=np.asarray(a))


def _int_dataset(f, name, path):
    ds = f.get(name)
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "iu" or ds.size != 1:
        raise CaffeFormatError(path, f"/{name}", "expected an integer dataset of one value")
    return int(np.asarray(ds[()]).reshape(-1)[0])


def read_hdf5_solverstate(path):
    with _guard(path, "an HDF5 solverstate"), _open(path, "an HDF5 solverstate") as f:
        history = f.get("history")
        if not isinstance(history, h5py.Group):
            raise CaffeFormatError(path, "/history", "no /history group: not a Caffe HDF5 solverstate")
        learned = f.get("learned_net")
        learned = learned[()] if isinstance(learned, h5py.Dataset) else b""
        learned = learned.decode("utf-8", "replace") if isinstance(learned, bytes) else str(learned)
        return SolverState(_int_dataset(f, "iter", path), _int_dataset(f, "current_step", path),
                           learned.rstrip("\0"), _indexed(history, path, "/history"),
                           path=str(path), format="hdf5")


def write_hdf5_solverstate(state, path):
    with fileio.atomic_output(path, mode=None) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("iter", data=np.array([state.iter], np.int32))
        raw = state.learned_net.encode("utf-8")
        string = h5py.h5t.C_S1.copy()  # what H5LTmake_dataset_string makes: NUL-terminated, len + 1
        string.set_size(len(raw) + 1)
        string.set_strpad(h5py.h5t.STR_NULLTERM)
        space = h5py.h5s.create(h5py.h5s.SCALAR)
        h5py.h5d.create(f.id, b"learned_net", string, space).write(
            space, space, np.array(raw + b"\0", dtype=f"S{len(raw) + 1}"))
        f.create_dataset("current_step", data=np.array([state.current_step], np.int32))
        group = f.create_group("history")
        for i, a in enumerate(state.history):
            group.create_dataset(str(i), data=np.asarray(a))
