"""Caffe's HDF5 formats: ``.caffemodel.h5`` and ``.solverstate.h5``.

Layout Caffe writes (``Net::ToHDF5``, ``SGDSolver::SnapshotSolverStateToHDF5``)::

    weights      /data/<layer>/<i>      one group per layer (also layers without params),
                                        dataset i = param blob i, float32 in the blob's shape
                 /diff/<layer>/<i>      only when snapshot_diff is set
                 a param shared by ``ParamSpec.name`` is written under its owner only: a
                 sharing layer's group lacks that dataset (empty when it shares them all),
                 and ``CopyTrainedLayersFromHDF5`` accepts a missing dataset of a shared
                 param only (:attr:`.records.Weights.absent` records them here)
    solverstate  /iter, /current_step   int32 datasets of shape (1,)
                 /learned_net           scalar fixed-length string, NUL-terminated (len + 1)
                 /history/<i>           one dataset per history blob

Caffe loads weights by layer name; the file keeps no layer order (HDF5 lists groups
alphabetically), no types and no settings, so an HDF5 file read alone gives a header net with
names only.

What a file may hold here, beyond Caffe's own checks: plain groups and datasets only (Caffe's
writers make no soft or external links; an external link reads another file, a FIFO included,
which blocks), and datasets that claim in all at most 16 times the file's size (unallocated
datasets of fill values inflate from nothing: 400 of them in 562 KB claimed 4 GB).
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
    if not os.path.isfile(path):
        raise CaffeFormatError(path, "", f"not a regular file; expected {expected}")
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise CaffeFormatError(path, "", f"unreadable HDF5 file ({e}); expected {expected}") from None


def _plain(group, name, path, where):
    """``group[name]`` if it is a plain (hard-linked) object; a soft or external link is refused
    before it is followed."""
    link = group.get(name, getlink=True)
    if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
        kind = "an external link to another file" if isinstance(link, h5py.ExternalLink) \
            else "a soft link"
        raise CaffeFormatError(path, printable(where), f"is {kind}; Caffe's HDF5 files hold "
                               "plain groups and datasets only")
    return group.get(name)


def _budget(path):
    """What the datasets of ``path`` may claim in all (see the module docstring)."""
    return [16 * os.path.getsize(path) + (1 << 20)]


MAX_BLOBS = 64  # a layer's blob indices: Caffe's layers have a handful (LSTM 3, BatchNorm 3)


def _indexed(group, path, where, room, gaps=None):
    """The datasets ``0, 1, ...`` of ``group`` as arrays, checking the names are exactly that.
    ``room``: ``[bytes]`` the file's datasets may still claim, shared by every call on it.
    ``gaps``: a set that takes the indices missing below the highest (an empty array stands in
    for each: Caffe leaves a shared param out); None: none may be missing."""
    names = list(group.keys())
    indices = sorted(int(n) for n in names if n.isdigit() and n == str(int(n)))
    if len(indices) != len(names) or (indices and indices[-1] >= MAX_BLOBS) or \
            (gaps is None and indices != list(range(len(names)))):
        raise CaffeFormatError(path, printable(where), "expected datasets named by blob "
                               f"index (0, 1, ... below {MAX_BLOBS}"
                               f"{'' if gaps is not None else ', none missing'}), found "
                               f"{printable(names, 200)}")
    top = indices[-1] + 1 if indices else 0
    if gaps is not None:
        gaps.update(set(range(top)) - set(indices))
    out = []
    for i in range(top):
        if i not in indices:
            out.append(np.empty((0,), np.float32))
            continue
        ds = _plain(group, str(i), path, f"{where}/{i}")
        if not isinstance(ds, h5py.Dataset) or ds.dtype.kind != "f":
            raise CaffeFormatError(path, printable(f"{where}/{i}"), "expected a float dataset")
        room[0] -= ds.size * ds.dtype.itemsize
        if room[0] < 0:  # Caffe writes plain datasets: no huge claims
            raise CaffeFormatError(path, f"{where}/{i}", f"dataset of shape {ds.shape} brings "
                                   f"what the datasets claim past 16 times the file's "
                                   f"{os.path.getsize(path):,} bytes; expected blobs the file "
                                   "holds")
        try:
            out.append(ds[()] if ds.shape else np.asarray(ds[()]).reshape(()))
        except OSError as e:
            raise CaffeFormatError(path, f"{where}/{i}", f"cannot read dataset ({e})") from None
    return out


def read_hdf5_weights(path):
    """Read a ``.caffemodel.h5`` into :class:`~.caffemodel.Weights`."""
    expected = "an HDF5 caffemodel with a /data group"
    with _guard(path, expected), _open(path, expected) as f:
        data, room = _plain(f, "data", path, "/data"), _budget(path)
        if not isinstance(data, h5py.Group):
            raise CaffeFormatError(path, "/data", "no /data group: not a Caffe HDF5 caffemodel")
        params, diffs, names, absent = {}, {}, list(data.keys()), set()
        for name in names:
            group = _plain(data, name, path, f"/data/{name}")
            if not isinstance(group, h5py.Group):
                raise CaffeFormatError(path, printable(f"/data/{name}"),
                                       "expected a group of param datasets")
            gaps = set()
            blobs = _indexed(group, path, f"/data/{name}", room, gaps)
            absent.update((name, i) for i in gaps)
            if blobs:
                params[name] = blobs
        diff = _plain(f, "diff", path, "/diff")
        if isinstance(diff, h5py.Group):
            for n in list(diff.keys()):
                group = _plain(diff, n, path, f"/diff/{n}")
                if isinstance(group, h5py.Group) and len(group):
                    diffs[n] = _indexed(group, path, f"/diff/{n}", room)
    net = caffe_pb2.NetParameter(layer=[caffe_pb2.LayerParameter(name=n) for n in names])
    return Weights(net, params, path=str(path), format="hdf5", diffs=diffs, absent=absent)


def write_hdf5_weights(weights, path, *, net=None, shared=()):
    """Write weights (a :class:`Weights` or ``{layer: [arrays]}``) in Caffe's HDF5 layout.
    ``shared``: the (layer, index) of params a layer shares from an earlier one, left out as
    Caffe's ``Net::ToHDF5`` leaves them (the layer's group is still made)."""
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
                if (name, i) not in shared and (name, i) not in getattr(weights, "absent", ()):
                    group.create_dataset(str(i), data=np.asarray(a))


def _int_dataset(f, name, path):
    ds = _plain(f, name, path, f"/{name}")
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "iu" or ds.size != 1:
        raise CaffeFormatError(path, f"/{name}", "expected an integer dataset of one value")
    return int(np.asarray(ds[()]).reshape(-1)[0])


def read_hdf5_solverstate(path):
    with _guard(path, "an HDF5 solverstate"), _open(path, "an HDF5 solverstate") as f:
        history = _plain(f, "history", path, "/history")
        if not isinstance(history, h5py.Group):
            raise CaffeFormatError(path, "/history", "no /history group: not a Caffe HDF5 solverstate")
        learned = _plain(f, "learned_net", path, "/learned_net")
        learned = learned[()] if isinstance(learned, h5py.Dataset) else b""
        learned = learned.decode("utf-8", "replace") if isinstance(learned, bytes) else str(learned)
        return SolverState(_int_dataset(f, "iter", path), _int_dataset(f, "current_step", path),
                           learned.rstrip("\0"), _indexed(history, path, "/history",
                                                           _budget(path)),
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
