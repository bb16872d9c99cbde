"""Batches for training: a net's data layers bound by layer name to sources of batches.

How Caffe feeds a net
---------------------
A data layer is a layer without bottoms whose ``Forward`` fills its tops (``DataLayer``,
``ImageDataLayer``, and FCN's ``Python`` layers ``voc_layers.SBDDSegDataLayer`` & co., whose
``forward`` copies the next image and label into ``top[0]`` / ``top[1]``). ``Net::Forward``
runs it first, so *every forward pass draws a new batch*: with ``iter_size: 2`` the two passes
of one iteration (``Solver::Step``) see two different batches, and a test net's ``test_iter``
passes (``Solver::Test``) see ``test_iter`` batches. In ``caffe train`` with several GPUs each
solver has its own data layers; the DB readers (``DataReader``) hand the solvers successive
records in turn, so solver ``r`` of ``N`` reads records ``r, r+N, r+2N, ...``.

fcn-port
--------
fcn-port never imports the module a prototxt names (:mod:`fcn_port.port.layers.python`): an
unbound ``Python`` data layer, like an ``Input`` layer, turns its tops into net inputs, and
:class:`Feeder` fills them. A *source* serves one layer's tops; it is any of

* an **indexed** source (``len(s)`` and ``s[k] -> {top: array}``), e.g. :class:`NpzBatches`.
  Draw ``d`` reads ``s[d % len(s)]``: the batches cycle when a run draws more than there are
  (:class:`Feeder` says so once). Draw ``d`` of iteration ``it``, pass ``p``, process ``r`` of
  ``N`` is ``d = (it * iter_size + p) * N + r``: the draw follows from the iteration, so a run
  resumed from a snapshot at iteration ``k`` reads exactly the batches an uninterrupted run
  would (Caffe's own data layers restart from their beginning on resume);
  ``order="caffe"`` (``fcn-port train --data-order caffe``) draws as Caffe and the official
  scripts do instead: the draws restart at 0 at the iteration a run starts from (Caffe builds
  its data layers afresh, ``setup`` included, when it restores a snapshot), and under several
  processes a *registered reader* (the official ``Python`` layers) gives every process the same
  draws (Caffe's ``python/train.py`` seeds each process's layer with the same ``seed``), while
  other indexed sources keep ``r, r+N, ...`` (Caffe's ``DataReader``);
* a **callable** ``s() -> {top: array}``, called once per forward pass (it keeps its own
  place; in a multi-process run each process calls its own copy, so sharding is its job);
* an **iterable** of such dicts, advanced once per pass; process ``r`` of ``N`` takes items
  ``r, r+N, ...``. Running out is an error.

:class:`NpzBatches` is the built-in indexed source: an ``.npz`` in the oracle case format
(``it/<k>/<blob>``, ``k = 0, 1, ...``) serving every blob it holds, so ``fcn-port train
--batches B.npz`` needs no Python code. (The oracle *solver cases* feed one ``it/<k>`` batch to
every ``iter_size`` pass of step ``k``; :mod:`.parity` replays them that way. A training run
reads ``B.npz`` as Caffe's data layers would: one entry per pass.)

Extension point: :func:`register_source_factory` adds a ``factory(layer_param, phase, root)``
that returns a source for an unbound ``Python`` data layer it recognises (or None); the dataset
readers of the official layers (``reproduce/``) plug in there, so a net names its data and
``fcn-port train`` finds it. The sources a user gives win: by layer name first, then the
default source (``--batches``), and only then the factories; :attr:`Feeder.feeds` says which
source feeds each data layer (``fcn-port train`` logs it). Caffe's own data layers (``Data``
on LMDB, ``ImageData``, ``HDF5Data``) read their sources themselves
(:mod:`fcn_port.port.datalayers`, with the solver's ``random_seed`` for TRAIN crops and
mirrors); ``MemoryData`` is fed like ``Input``.
"""
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fcn_port.port.errors import CaffeFormatError, UserInputError

_FACTORIES = []
CAFFE_DATA = ("Data", "ImageData", "HDF5Data", "MemoryData", "WindowData")  # Caffe's own data layers


class DataWarning(UserWarning):
    """Something about the batches worth knowing (they cycle)."""


def register_source_factory(factory):
    """Add ``factory(layer_param, phase, root) -> source or None`` (see the module doc);
    returns it, so it can decorate."""
    _FACTORIES.append(factory)
    return factory


class NpzBatches:
    """Batches from an ``.npz`` in the oracle case format: ``it/<k>/<blob>``, ``k`` from 0 with
    no gaps, every ``k`` holding the same blobs. ``batches[k]`` is ``{blob: array}``."""

    def __init__(self, path):
        from fcn_port.port.formats.sniff import WORDS, sniff

        self.path = Path(path)
        kind = sniff(self.path)
        if kind != "zip":  # np.load would take a pickle's word for it (or advise allow_pickle)
            raise CaffeFormatError(path, "", f"not an .npz of batches (this is "
                                   f"{WORDS.get(kind, kind)}); expected arrays named "
                                   "it/<k>/<blob> in an .npz (numpy.savez)")
        declared = _declared_arrays(self.path)
        try:
            self._npz = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserInputError(f"{path}: cannot read batches: {e}") from None
        found = {}
        for key in self._npz.files:
            parts = key.split("/", 2)  # a blob name may hold "/"
            if len(parts) == 3 and parts[0] == "it" and parts[1].isdigit():
                found.setdefault(int(parts[1]), set()).add(parts[2])
        if not found:
            raise CaffeFormatError(path, "", "no batches: expected arrays named it/<k>/<blob>")
        if sorted(found) != list(range(len(found))):
            missing = sorted(set(range(max(found) + 1)) - set(found))
            raise CaffeFormatError(path, "", f"batches must be it/0 ... it/{max(found)} with no "
                                             f"gaps; missing it/{missing[0]}")
        self.blobs = sorted(found[0])
        for k, names in found.items():
            if names != found[0]:
                raise CaffeFormatError(path, f"it/{k}", f"holds blobs {sorted(names)}, it/0 holds "
                                                        f"{self.blobs}")
        self._n = len(found)
        per_batch = {}
        for key, nbytes in declared.items():
            parts = key.split("/", 2)  # a blob name may hold "/"
            if len(parts) == 3 and parts[0] == "it" and parts[1].isdigit():
                per_batch[parts[1]] = per_batch.get(parts[1], 0) + nbytes
        _fits_memory(path, max(per_batch.values(), default=0))

    def __len__(self):
        return self._n

    def __getitem__(self, k):
        return {b: self._npz[f"it/{k}/{b}"] for b in self.blobs}

    def __repr__(self):
        return f"NpzBatches({str(self.path)!r}, {self._n} batches of {self.blobs})"


def _declared_arrays(path):
    """``{array name: bytes}`` of an npz from each member's .npy header alone (nothing is
    inflated but the header): numeric dtypes only (an object array needs a pickle), and a
    member whose zip entry would inflate past what its header declares is refused."""
    import zipfile

    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)
                    header = f.tell() if f.seekable() else 0
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise CaffeFormatError(path, info.filename, f"an array of dtype {dtype}; expected "
                                           "numbers (an object array would need a pickle)")
                nbytes = dtype.itemsize
                for d in shape:
                    nbytes *= int(d)
                if not nbytes <= info.file_size <= nbytes + max(header, 4096):
                    raise CaffeFormatError(path, info.filename, f"inflates to {info.file_size:,} "
                                           f"bytes for an array of {nbytes:,}; expected an npz "
                                           "written by numpy.savez")
                out[info.filename[:-4] if info.filename.endswith(".npy") else info.filename] = \
                    nbytes
    except CaffeFormatError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CaffeFormatError(path, "", f"not an .npz numpy can read ({e}); expected "
                               "arrays named it/<k>/<blob> (numpy.savez)") from None
    return out


def _fits_memory(path, nbytes):
    """One batch's declared bytes against half the memory free (a deflated member inflates
    whole when its batch is drawn: 2 GB from a small file)."""
    from fcn_port.models.memory import available_bytes, gb

    have = available_bytes("cpu")
    if have is not None and nbytes > have // 2:  # the net's activations need the rest
        raise CaffeFormatError(path, "", f"a batch declares {gb(nbytes)} of arrays, more than "
                               f"half the {gb(have)} free; expected batches that fit in memory")


def source_layers(layers, bound=()):
    """The layers (LayerParameters as Caffe keeps them for a state, ``filter_layers``) that take
    a source: ``Input`` layers, Caffe's own data layers, and ``Python`` layers without bottoms
    not in ``bound`` (the names bound to code). ``[(name, type, tops, LayerParameter)]``."""
    return [(lp.name, lp.type, list(lp.top), lp) for lp in layers
            if not lp.bottom and (lp.type in ("Input",) + CAFFE_DATA
                                  or (lp.type == "Python" and lp.name not in bound))]


def _is_indexed(source):
    return hasattr(source, "__getitem__") and hasattr(source, "__len__") and not isinstance(source, dict)


class _Bound:
    """One layer's source, with the bookkeeping of each kind."""

    def __init__(self, layer, tops, source, what, rank, world, reader=False):
        self.layer, self.tops, self.source, self.what = layer, tops, source, what
        self.rank, self.world, self.reader = rank, world, reader
        self.indexed = _is_indexed(source)
        self.iterator = None if self.indexed or callable(source) else iter(source)
        self.pending, self.cycled = None, False

    def peek(self):
        """The first batch, for the tops' shapes (kept for the first draw of a non-indexed one)."""
        if self.indexed:
            if not len(self.source):
                raise UserInputError(f"{self.what}: no batches")
            return self.source[self.rank % len(self.source)]
        if self.pending is None:
            self.pending = self._next()
        return self.pending

    def _next(self):
        if self.iterator is None:
            return self.source()
        try:  # process r of N takes items r, r+N, ...
            return [next(self.iterator) for _ in range(self.world)][self.rank]
        except StopIteration:
            raise UserInputError(f"{self.what}: the source of layer '{self.layer}' ran out of "
                                 "batches") from None

    def note(self, d):
        """Say once, from the caller's thread, that draw ``d`` cycles an indexed source."""
        n = len(self.source)
        if d >= n and not self.cycled:
            self.cycled = True
            warnings.warn(f"{self.what}: {n} batches for layer '{self.layer}'; draw {d} "
                          f"cycles back to batch {d % n} (draw = (iter * iter_size + pass) * "
                          "processes + rank)", DataWarning, stacklevel=3)

    def draw(self, d):
        if self.indexed:
            return self.source[d % len(self.source)]
        if self.pending is not None:
            batch, self.pending = self.pending, None
            return batch
        return self._next()


class Feeder:
    """Fills the source layers of ``net`` (a :class:`~fcn_port.port.net.CaffeNet`) from sources.

    ``sources``: ``{layer name: source}`` and/or one default source (key None, or pass a source
    instead of a dict) for every source layer no name or factory binds; ``root``: the folder the
    net's own paths are relative to (for factories). Every source layer must get a source, and
    each source must hold all its layer's tops (checked on every batch). Layers bound to the
    same source (e.g. the Input layers ``data`` and ``label`` and one npz) share each draw."""

    ORDERS = ("continuous", "caffe")

    def __init__(self, layers, sources, *, phase="TRAIN", root=None, rank=0, world=1,
                 iter_size=1, what="net", order="continuous", prefetch=True, seed=None):
        if sources is None or not isinstance(sources, dict):
            sources = {None: sources} if sources is not None else {}
        if order not in self.ORDERS:
            raise UserInputError(f"data order {order!r}: expected one of {', '.join(self.ORDERS)}")
        self.rank, self.world, self.iter_size, self.order = rank, world, iter_size, order
        self.start = 0  # order "caffe": the iteration the run started from (draw 0 there)
        default = sources.get(None)
        names = {name for name, *_ in layers}
        unknown = sorted(k for k in sources if k is not None and k not in names)
        if unknown:
            raise UserInputError(f"{what}: no data layer named {', '.join(map(repr, unknown))} "
                                 f"(its data layers: {', '.join(sorted(names)) or 'none'})")
        self.bound, self.feeds = [], []
        for name, ltype, tops, lp in layers:
            source, how = sources.get(name), "bound by name"
            if source is None and default is not None:
                source, how = default, "the given default source"
            if source is None and ltype in CAFFE_DATA and ltype != "MemoryData":
                from fcn_port.port.datalayers import source_for  # MemoryData: the caller feeds

                source, how = source_for(lp, phase, root, seed), "Caffe's data layer"
            if source is None and ltype == "Python":
                for factory in _FACTORIES:
                    source = factory(lp, phase, root)
                    if source is not None:
                        how = "a registered reader"
                        break
            target = (f" {lp.python_param.module}.{lp.python_param.layer}"
                      if ltype == "Python" else "")
            if source is None:
                raise UserInputError(f"{what}: data layer '{name}' ({ltype}{target}, tops "
                                     f"{', '.join(tops)}) has no source of batches; give one "
                                     "(fcn-port train --batches B.npz), or for an official data "
                                     "layer its data folder (relative to the net, or "
                                     "--data-root DIR)")
            path = getattr(source, "path", None)
            label = path or f"source of '{name}' ({how})"
            self.feeds.append(f"data layer '{name}' ({ltype}{target}; tops {', '.join(tops)}) "
                              f"<- {type(source).__name__} {path or ''} ({how})")
            same = [b for b in self.bound if b.source is source]
            if same:  # layers sharing a source share each draw (one batch per pass)
                same[0].layer += f"', '{name}"
                same[0].tops += tops
                continue
            self.bound.append(_Bound(name, list(tops), source, f"{what}: {label}", rank, world,
                                     reader=how == "a registered reader"))
        for b in self.bound:
            self._check(b, b.peek())
        self.ahead = _Ahead() if prefetch and any(b.indexed for b in self.bound) else None

    def _check(self, b, batch):
        missing = [t for t in b.tops if t not in batch]
        if missing:
            raise UserInputError(f"{b.what}: no blob {', '.join(map(repr, missing))} for data "
                                 f"layer '{b.layer}' (it serves {', '.join(sorted(batch)) or 'none'})")

    def draw_index(self, b, it, p):
        """Which draw of its source bound layer ``b`` reads for pass ``p`` of iteration ``it``
        (see the module doc: ``continuous``, or Caffe's restart and shared reader draws)."""
        if self.order == "caffe":
            local = (it - self.start) * self.iter_size + p
            return local if b.reader else local * self.world + self.rank
        return (it * self.iter_size + p) * self.world + self.rank

    def shapes(self):
        """``{top: shape}`` of the first batch (the net is built with these input shapes)."""
        out = {}
        for b in self.bound:
            batch = b.peek()
            out.update({t: tuple(np.shape(batch[t])) for t in b.tops})
        return out

    def __call__(self, it, p=0, device="cpu"):
        """The tops for pass ``p`` of iteration ``it``: ``{top: float32 tensor on device}``."""
        feed = {}
        following = (it, p + 1) if p + 1 < self.iter_size else (it + 1, 0)
        for b in self.bound:
            d = self.draw_index(b, it, p)
            if b.indexed:
                b.note(d)
            if self.ahead is not None and b.indexed:  # read the next pass's draw meanwhile
                batch = self.ahead.take(b, d, self.draw_index(b, *following))
            else:
                batch = b.draw(d)
            self._check(b, batch)
            for t in b.tops:
                v = batch[t]
                v = v.detach() if torch.is_tensor(v) else torch.from_numpy(np.asarray(v))
                feed[t] = v.to(device=device, dtype=torch.float32)
        return feed


class _Ahead:
    """Reads an indexed source's next draw on one worker thread while the step computes.

    The draw a pass reads follows from the iteration and pass alone (:meth:`Feeder.draw_index`),
    so the draw after ``d`` is known when ``d`` is served: the worker reads it meanwhile (JPEG
    decoding, ``.mat`` inflation and numpy release the GIL). Every read of a source runs on the
    worker, one at a time and in the order asked, so a reader's state (the official layers'
    replayed random order) sees what it would see with no prefetch; a guess that the next call
    does not take (a resume, a test net's restart) is dropped, and its errors with it."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="fcn-port-prefetch")
        self.pending = {}  # (bound, draw) -> future

    def take(self, b, d, following):
        key = (id(b), d)
        future = self.pending.pop(key, None) or self.pool.submit(b.draw, d)
        for other in [k for k in self.pending if k[0] == id(b)]:
            self.pending.pop(other).cancel()
        batch = future.result()
        if following != d:
            self.pending[(id(b), following)] = self.pool.submit(b.draw, following)
        return batch
