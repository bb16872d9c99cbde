"""Caffe's own data layers as indexed sources: ``source[d]`` is forward pass ``d``'s batch,
``{top name: array}``, as the layer (``data_layer.cpp``, ``image_data_layer.cpp``,
``hdf5_data_layer.cpp``) would give it after ``d`` passes from its start.

How Caffe reads them
--------------------
Every one reads ``batch_size`` items per forward pass, in order, and starts again at the
first item after the last (no epoch boundary inside a batch: a batch may span the end).

* ``Data``: the records of an LMDB (``data_param.source``; ``backend: LMDB``), or of a
  LevelDB (``backend: LEVELDB``, Caffe's default; read with the optional plyvel) in key order;
  each a Datum: ``channels x height x width`` uint8 ``data`` (or ``float_data``), or an
  ``encoded`` image decoded as OpenCV would (:mod:`.decode`: the file's own channels, or
  ``force_color`` / ``force_gray``); ``label`` its int label. The top's shape is the first
  item's (every item of a batch must match it). ``rand_skip`` is not supported.
* ``ImageData``: a list file of ``path label`` lines (the label after the last space), each
  path prefixed by ``root_folder`` as a plain string, read with ``is_color`` and resized to
  ``new_height`` x ``new_width`` when both are set (:func:`.decode.resize_linear`).
  ``shuffle`` is not supported (Caffe's order comes from its own generator).
* ``HDF5Data``: a list file of ``.h5`` paths; each file's datasets named like the layer's
  tops, rows concatenated over the files in list order, cast to float32. ``shuffle`` is not
  supported.

Then :class:`.transform.Transformer` (crop, mirror, mean, scale; not for HDF5Data, which Caffe
does not transform). A relative path is Caffe's: from the current folder (``caffe train`` runs
from Caffe's root, so ``examples/mnist/mnist_train_lmdb``); where nothing is there, from
``root``, the folder of the net's file (``parity`` cases, a net moved with its data).
"""
import os
import sys

import numpy as np

from ..errors import CaffeFormatError, UnsupportedError
from .decode import decode, resize_linear
from .transform import Transformer

MAX_LIST = 64 << 20  # bytes of a list file


def _path(path, root):
    """Caffe's rule first (relative to the current folder); where nothing is there, relative
    to ``root`` (the net's folder)."""
    if os.path.isabs(path) or not root or os.path.exists(path):
        return path
    return os.path.join(root, path)


def _lines(path, what):
    if not os.path.isfile(path):
        raise CaffeFormatError(path, "", f"not a regular file; expected {what}")
    if os.path.getsize(path) > MAX_LIST:
        raise CaffeFormatError(path, "", f"over {MAX_LIST >> 20} MB; expected {what}")
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f if line.strip()]


class _Batches:
    """Items in order, ``batch_size`` per pass, wrapping at the end (see the module doc)."""

    def __init__(self, lp, batch_size, tops):
        if batch_size <= 0:
            raise CaffeFormatError(lp.name, "batch_size", f"must be > 0, got {batch_size}")
        self.name, self.batch, self.tops = lp.name, batch_size, list(tops)
        self.path = None

    def __len__(self):
        return sys.maxsize  # Caffe's data layers wrap: no draw is past the end

    def __getitem__(self, d):
        n = self.count()
        if n == 0:
            raise CaffeFormatError(self.where, "", "holds no items")
        items = [self.item((d * self.batch + i) % n, d * self.batch + i)
                 for i in range(self.batch)]
        shape = items[0][0].shape
        for k, (x, _) in enumerate(items):
            if x.shape != shape:
                raise CaffeFormatError(self.where, f"item {(d * self.batch + k) % n}",
                                       f"is {x.shape}, the batch's first is {shape}")
        out = {self.tops[0]: np.stack([x for x, _ in items])}
        if len(self.tops) > 1:
            out[self.tops[1]] = np.array([y for _, y in items], np.float32)
        return out


class LMDBData(_Batches):
    def __init__(self, lp, phase, root, seed=None):
        p = lp.data_param
        super().__init__(lp, p.batch_size, lp.top)
        if p.rand_skip:
            raise UnsupportedError(f"layer '{lp.name}' (Data): rand_skip is not supported")
        self.where = self.path = _path(p.source, root)
        self.keys, self.get = (_lmdb if p.backend == p.LMDB else _leveldb)(self.where, lp.name)
        t = lp.transform_param
        self.mode = "color" if t.force_color else "gray" if t.force_gray else "unchanged"
        self.transform = Transformer(t, phase, root, seed, f"layer '{lp.name}'")

    def count(self):
        return len(self.keys)

    def item(self, i, serial):
        from ..formats.proto import caffe_pb2

        value = self.get(self.keys[i])
        datum = caffe_pb2.Datum()
        try:
            datum.ParseFromString(value)
        except Exception:  # noqa: BLE001  (protobuf's DecodeError and friends)
            raise CaffeFormatError(self.where, f"record {self.keys[i]!r}", "is no Datum") \
                from None
        where = f"{self.where} record {self.keys[i].decode(errors='replace')}"
        if datum.encoded:
            chw = decode(datum.data, self.mode, where).transpose(2, 0, 1)
        else:
            c, h, w = datum.channels, datum.height, datum.width
            values = np.frombuffer(datum.data, np.uint8) if datum.data else \
                np.array(datum.float_data, np.float32)
            if c * h * w <= 0 or values.size != c * h * w:
                raise CaffeFormatError(where, "", f"holds {values.size} values for its "
                                       f"{c} x {h} x {w}")
            chw = values.reshape(c, h, w)
        return self.transform(chw, serial), datum.label


def _lmdb(path, name):
    """(keys in order, get) of the LMDB at ``path``, opened read-only without a lock."""
    import lmdb

    if not os.path.isfile(os.path.join(path, "data.mdb")):
        raise CaffeFormatError(path, "", f"no LMDB here (a folder with data.mdb); expected "
                               f"layer '{name}''s data_param.source")
    try:
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, max_readers=8)
        with env.begin() as txn:
            keys = [k for k in txn.cursor().iternext(keys=True, values=False)]
    except lmdb.Error as e:
        raise CaffeFormatError(path, "", f"unreadable LMDB ({e})") from None

    def get(key):
        with env.begin() as txn:
            return txn.get(key)
    return keys, get


def _leveldb(path, name):
    """(keys in order, get) of the LevelDB at ``path`` (plyvel, an optional package; LevelDB's
    byte-wise key order is the order Caffe's LevelDB cursor reads)."""
    try:
        import plyvel
    except ImportError:
        raise UnsupportedError(f"layer '{name}' (Data): backend LEVELDB needs the plyvel "
                               "package: pip install 'fcn-port[leveldb]' (or convert the "
                               "database to LMDB)") from None
    if not os.path.isfile(os.path.join(path, "CURRENT")):
        raise CaffeFormatError(path, "", f"no LevelDB here (a folder with CURRENT); expected "
                               f"layer '{name}''s data_param.source")
    try:
        db = plyvel.DB(path, create_if_missing=False)
        keys = list(db.iterator(include_value=False))
    except plyvel.Error as e:
        raise CaffeFormatError(path, "", f"unreadable LevelDB ({e})") from None
    return keys, db.get


class ImageData(_Batches):
    def __init__(self, lp, phase, root, seed=None):
        p = lp.image_data_param
        super().__init__(lp, p.batch_size, lp.top)
        if p.shuffle or p.rand_skip:
            raise UnsupportedError(f"layer '{lp.name}' (ImageData): shuffle and rand_skip are "
                                   "not supported (Caffe's order comes from its own generator)")
        if (p.new_height > 0) != (p.new_width > 0):
            raise CaffeFormatError(lp.name, "image_data_param", "give both new_height and "
                                   "new_width, or neither")
        self.where = self.path = _path(p.source, root)
        self.items = []
        for n, line in enumerate(_lines(self.where, "a list of 'image label' lines"), 1):
            name, _, label = line.rpartition(" ")
            try:
                self.items.append((_path(p.root_folder + name, root), int(label)))
            except ValueError:
                raise CaffeFormatError(self.where, f"line {n}", f"{line[:80]!r} is not "
                                       "'path label'") from None
        self.size = (p.new_height, p.new_width) if p.new_height > 0 else None
        self.mode = "color" if p.is_color else "gray"
        self.transform = Transformer(lp.transform_param, phase, root, seed, f"layer '{lp.name}'")

    def count(self):
        return len(self.items)

    def item(self, i, serial):
        path, label = self.items[i]
        img = decode(path, self.mode)
        if self.size:
            img = resize_linear(img, *self.size)
        return self.transform(img.transpose(2, 0, 1), serial), label


class HDF5Data(_Batches):
    def __init__(self, lp, phase, root, seed=None):
        p = lp.hdf5_data_param
        super().__init__(lp, p.batch_size, lp.top)
        if p.shuffle:
            raise UnsupportedError(f"layer '{lp.name}' (HDF5Data): shuffle is not supported")
        self.where = self.path = _path(p.source, root)
        files = [_path(f, root) for f in _lines(self.where, "a list of .h5 files")]
        if not files:
            raise CaffeFormatError(self.where, "", "lists no .h5 file")
        self.arrays = {t: [] for t in lp.top}
        for f in files:
            for t, part in _read_h5(f, lp.top).items():
                self.arrays[t].append(part)
        self.arrays = {t: np.concatenate(parts) for t, parts in self.arrays.items()}
        if not self.count():
            raise CaffeFormatError(self.where, "", "its files hold no rows")

    def count(self):
        return len(self.arrays[self.tops[0]])

    def __getitem__(self, d):
        n = self.count()
        rows = [(d * self.batch + i) % n for i in range(self.batch)]
        return {t: a[rows] for t, a in self.arrays.items()}


def _read_h5(path, tops):
    from ..formats.hdf5 import _guard, _open, _plain

    expected = "an HDF5 file with one dataset per top"
    with _guard(path, expected), _open(path, expected) as f:
        out = {}
        for t in tops:
            if t not in f:
                raise CaffeFormatError(path, t, f"no dataset named after top '{t}'")
            ds = _plain(f, t, path, t)
            if ds.ndim < 1 or ds.dtype.kind not in "fiu":
                raise CaffeFormatError(path, t, f"a numeric dataset of at least 1 axis, got "
                                       f"{ds.dtype} {ds.shape}")
            out[t] = np.asarray(ds[()], np.float32)
        rows = {a.shape[0] for a in out.values()}
        if len(rows) != 1:
            raise CaffeFormatError(path, "", f"datasets have different row counts "
                                   f"{sorted(rows)}")
        return out
