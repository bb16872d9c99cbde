"""PASCAL VOC and SBD segmentation readers: what the official ``voc_layers`` data layers give.

How the official layers compute it (``voc_layers.VOCSegDataLayer`` and ``SBDDSegDataLayer``,
Python 2 + pycaffe; facts in ``shared/FCN_FACTS.md`` §5):

* ``setup`` reads the split file into a list of ids (``read().splitlines()``), sets ``idx = 0``,
  turns ``randomize`` (default True) off when ``'train'`` is not in the split name, and when
  random calls ``random.seed(seed)`` and sets ``idx = random.randint(0, len - 1)``;
* ``reshape`` loads the image and label of ``ids[idx]``; ``forward`` copies them into the tops
  and then moves on: ``idx = random.randint(0, len - 1)`` when random, else ``idx + 1`` wrapping
  to 0. So forward pass ``d`` (from 0) serves the ``d``-th draw after seeding (the one made in
  setup is draw 0), sampling with replacement with no epoch shuffle; or id ``d mod len``.
* image: ``PIL.Image.open``, ``float32``, RGB->BGR, ``-= mean`` (``np.array(mean)``, float64),
  CHW; top ``data`` is 1 x 3 x H x W, range 0-255. No resize, crop or mirror.
* label: VOC ``SegmentationClass/<id>.png`` as uint8 palette indices; SBD
  ``scipy.io.loadmat('cls/<id>.mat')['GTcls'][0]['Segmentation'][0]`` cast to uint8. Top
  ``label`` is 1 x 1 x H x W (float in the blob), 255 = void.
* folders: VOC images ``{voc_dir}/JPEGImages/<id>.jpg``, split
  ``{voc_dir}/ImageSets/Segmentation/<split>.txt`` (seg11valid.txt, 736 ids, is placed there by
  the user); SBD images ``{sbdd_dir}/img/<id>.jpg``, split ``{sbdd_dir}/<split>.txt`` (train:
  8,498 ids).

Where we differ:

* **Python 2's ``randint``.** The official runs ran under Python 2.7, whose ``randint(a, b)`` is
  ``a + int(random() * (b - a + 1))``; Python 3's draws ``getrandbits`` with rejection and gives
  another sequence from the same seed (the Mersenne Twister state after ``seed(1337)`` and
  ``random()`` are the same in both). ``rng="py2"`` (the default) reproduces the released
  models' training order; ``rng="py3"`` what the same layer does under Python 3.
* **Resumes.** A reader is an *indexed* source (:mod:`fcn_port.solvers.data`): ``reader[d]`` is
  forward pass ``d`` of an uninterrupted official run, replayed from the seed, so a run resumed
  from a snapshot reads what the uninterrupted run would have. (Caffe re-runs ``setup`` on
  resume and so restarts the sequence.) When random, ``len(reader)`` is ``sys.maxsize``: the
  draws never cycle; sequential readers have one entry per id and the feeder wraps them.
* ``seed=None`` seeds from the system once per reader (the official ``random.seed(None)``
  is also unrepeatable), so replays within a run agree.
* Checked up front, each one clear error naming the file: a missing split file, an empty one,
  an id that is not a plain file name (it could reach outside the folder), every id's image
  and label present; a label whose size differs from its image's. Blank lines in a split
  file are skipped (the official would read an id ``''`` and fail when it is drawn).
* Images that are not RGB (grayscale, CMYK, ...) are converted to RGB by
  :func:`fcn_port.models.preprocess.open_rgb` (the official code fails on them); the transform
  itself is that of ``fcn-port infer`` (:func:`~fcn_port.models.preprocess.preprocess_image`).

:class:`SegReader` is the base of every dataset reader: the SIFT Flow (:mod:`.siftflow`), NYUDv2
(:mod:`.nyud`) and PASCAL-Context (:mod:`.context`) layers share this setup / order logic and
differ only in files, tops and label decoding. :func:`load_mat` / :func:`mat_plane` /
:func:`to_uint8` are their shared ``.mat`` helpers.
"""
import os
import random
import sys
from pathlib import Path

import numpy as np

from ..models.preprocess import mean_for, preprocess_image, read_label
from ..port.errors import CaffeFormatError, UserInputError

RNG_KINDS = ("py2", "py3")


def check_name(name, path, where, what="id"):
    """``name`` must be a plain file name (no folder part), or CaffeFormatError naming ``path``."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name
            or "\0" in name):
        raise CaffeFormatError(path, where, f"{what} {name!r} is not a plain file name (a folder "
                                            "part could reach outside the dataset folder)")
    return name


def read_split(path):
    """The ids of a split file, one a line (blank lines skipped); errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such split file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CaffeFormatError(path, "", f"cannot read the split file ({e})") from None
    ids = []
    for k, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if name:
            ids.append(check_name(name, path, f"line {k}"))
    if not ids:
        raise CaffeFormatError(path, "", "the split file lists no ids")
    return ids


class Order:
    """Which id forward pass ``d`` reads, as the official layers pick them (module doc).

    Random: draw ``d`` (0 = the one made in ``setup``) of ``randint(0, n - 1)`` after seeding;
    the draws are replayed from the seed when asked out of order, so any ``d`` is exact.
    Sequential: ``d mod n``."""

    def __init__(self, n, randomize, seed, rng="py2"):
        if rng not in RNG_KINDS:
            raise UserInputError(f"rng {rng!r}: expected one of {', '.join(RNG_KINDS)}")
        self.n, self.random, self.rng = n, bool(randomize), rng
        self.seed = random.SystemRandom().randrange(2 ** 32) if seed is None else seed
        self._restart()

    def _restart(self):
        self._gen, self._made, self._last = random.Random(self.seed), 0, None

    def _draw(self):
        if self.rng == "py2":  # Python 2.7 randrange, width < 2**53: int(random() * width)
            return int(self._gen.random() * self.n)
        return self._gen.randint(0, self.n - 1)

    def __call__(self, d):
        if d < 0:
            raise IndexError(f"draw {d}: draws count from 0")
        if not self.random:
            return d % self.n
        if d < self._made - 1:
            self._restart()
        while self._made <= d:
            self._last, self._made = self._draw(), self._made + 1
        return self._last


class SegReader:
    """One official segmentation data layer: ``reader[d] -> {top: float32 array}`` for forward
    pass ``d`` (VOC/SBD: ``data`` 1x3xHxW and ``label`` 1x1xHxW); :meth:`image` / :meth:`label`
    read one id by position. The subclasses of :mod:`.siftflow`, :mod:`.nyud` and
    :mod:`.context` serve the other datasets' layers through the same hooks.

    ``folder``: the layer's main folder (``voc_dir``, ``sbdd_dir``, ...); ``mean`` in BGR (None:
    the dataset's; its dtype as :func:`~fcn_port.models.preprocess.mean_for` gives it: float64
    for VOC, as the layer's ``np.array(mean)``, float32 for the others); ``randomize`` and
    ``seed`` as the layer's param_str; ``tops``: the layer's top names (data first, label
    last; None: :attr:`default_tops`); ``check``: look for every id's files now.

    Subclass hooks: :meth:`split_file` (or :meth:`read_ids`), :meth:`files` (every file of one
    id, for the check), :meth:`arrays` (the blobs of one id, in top order) or, for the two-top
    layers, :meth:`image_path` / :meth:`label_path` / :meth:`read_label`."""

    kind = "segmentation"
    dataset = "voc"
    default_tops = ("data", "label")

    def __init__(self, folder, split, *, mean=None, randomize=True, seed=None, rng="py2",
                 tops=None, check=True):
        self.folder = Path(folder)
        self.split = check_name(split, self.folder, "", "split")
        if not self.folder.is_dir():
            raise UserInputError(f"{self.folder}: no such {self.kind} folder")
        self.mean = mean_for(self.dataset, mean)
        self.setup()
        self.ids = self.read_ids()
        self.order = Order(len(self.ids), randomize and "train" in split, seed, rng)
        self.tops = tuple(self.default_tops if tops is None else tops)
        if len(self.tops) != self.n_tops():
            raise UserInputError(f"{type(self).__name__}: tops {list(self.tops)}; the official "
                                 f"layer has {self.n_tops()} ({', '.join(self.default_tops)})")
        if check:
            self.check_files()

    # the layout, per dataset
    def setup(self):
        """Anything to read before the split (PASCAL-Context's label lists); nothing here."""

    def split_file(self):
        raise NotImplementedError

    def read_ids(self):
        """The split's ids; sets :attr:`path` (the split file, for messages)."""
        self.path = str(self.split_file())
        return read_split(self.path)

    def n_tops(self):
        return len(self.default_tops)

    def image_path(self, name):
        raise NotImplementedError

    def label_path(self, name):
        raise NotImplementedError

    def read_label(self, path):
        """(H, W) uint8 class indices, 255 void."""
        raise NotImplementedError

    def files(self, name):
        """Every file the layer opens for id ``name``."""
        return [self.image_path(name), self.label_path(name)]

    def arrays(self, i):
        """The blobs of ``ids[i]`` in top order."""
        return [self.image(i), self.label(i)]

    @property
    def random(self):
        return self.order.random

    @property
    def seed(self):
        return self.order.seed

    def check_files(self):
        """Every id's files must exist: one error naming the first missing file."""
        missing = [p for name in self.ids for p in self.files(name) if not Path(p).is_file()]
        if missing:
            raise UserInputError(f"{missing[0]}: no such file ({len(missing)} files missing for "
                                 f"the {len(self.ids)} ids of {self.path})")

    def image(self, i):
        """Image of ``ids[i]``: (1, 3, H, W) float32, BGR minus the mean (``fcn-port infer``'s
        transform)."""
        return preprocess_image(self.image_path(self.ids[i]), self.mean).numpy()

    def label(self, i):
        """Label of ``ids[i]``: (1, 1, H, W) float32 of the uint8 values, 255 void."""
        lab = self.read_label(self.label_path(self.ids[i]))
        return lab[None, None].astype(np.float32)

    def __len__(self):
        return sys.maxsize if self.random else len(self.ids)

    def __getitem__(self, d):
        if not isinstance(d, (int, np.integer)):
            raise TypeError(f"draw {d!r}: expected an integer")
        if not self.random and d >= len(self.ids):
            raise IndexError(f"draw {d}: {len(self.ids)} ids in {self.path}")
        i = self.order(int(d))
        arrays = self.arrays(i)
        size = arrays[0].shape[2:]
        for k in range(1, len(arrays)):
            if arrays[k].shape[2:] != size:
                files = self.files(self.ids[i])
                raise CaffeFormatError(files[min(k, len(files) - 1)], "", f"top "
                                       f"'{self.tops[k]}' is {arrays[k].shape[2:]} (H, W), top "
                                       f"'{self.tops[0]}' ({files[0]}) {size}")
        return dict(zip(self.tops, arrays))

    def __repr__(self):
        how = f"random, seed {self.seed}, {self.order.rng}" if self.random else "sequential"
        return (f"{type(self).__name__}({str(self.folder)!r}, {self.split!r}: {len(self.ids)} "
                f"ids, {how})")


class VOCSeg(SegReader):
    """``voc_layers.VOCSegDataLayer``: PASCAL VOC ``JPEGImages`` and palette PNG labels in
    ``SegmentationClass``, split ``ImageSets/Segmentation/<split>.txt``."""

    kind = "PASCAL VOC (voc_dir)"

    def split_file(self):
        return self.folder / "ImageSets" / "Segmentation" / f"{self.split}.txt"

    def image_path(self, name):
        return self.folder / "JPEGImages" / f"{name}.jpg"

    def label_path(self, name):
        return self.folder / "SegmentationClass" / f"{name}.png"

    def read_label(self, path):
        return read_label(path)


class SBDSeg(SegReader):
    """``voc_layers.SBDDSegDataLayer``: SBD ``img/<id>.jpg`` and ``cls/<id>.mat`` labels
    (``GTcls.Segmentation``), split ``<split>.txt`` in the dataset folder."""

    kind = "SBD (sbdd_dir)"

    def split_file(self):
        return self.folder / f"{self.split}.txt"

    def image_path(self, name):
        return self.folder / "img" / f"{name}.jpg"

    def label_path(self, name):
        return self.folder / "cls" / f"{name}.mat"

    def read_label(self, path):
        return read_sbd_mat(path)


MAT_INFLATE_LIMIT = 1 << 26  # 64 MB: a dataset's label .mat inflates to a few MB at most


def check_mat(path, expected, limit=MAT_INFLATE_LIMIT):
    """Bound what a MATLAB v5 file inflates to before scipy reads it: each compressed element
    (``miCOMPRESSED``, a zlib stream) is inflated into nothing, counting, and refused past
    ``limit`` (a zlib bomb of 1000:1 took 7 GB in ``loadmat``). Uncompressed elements hold what
    the file holds. Files that are not v5 are left to scipy."""
    import mmap
    import struct
    import zlib

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 136:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            order = {b"IM": "<", b"MI": ">"}.get(bytes(data[126:128]))
            pos = 128
            while order and pos + 8 <= size:
                kind, nbytes = struct.unpack_from(order + "II", data, pos)
                if kind >> 16:  # a small element: tag and data in 8 bytes
                    pos += 8
                    continue
                if kind == 15:
                    inflate, total = zlib.decompressobj(), 0
                    for at in range(pos + 8, min(pos + 8 + nbytes, size), 1 << 16):
                        piece = data[at:min(at + (1 << 16), pos + 8 + nbytes)]
                        while piece:
                            try:
                                total += len(inflate.decompress(piece, 1 << 20))
                            except zlib.error:
                                return  # broken: scipy says so
                            if total > limit:
                                raise CaffeFormatError(path, f"byte {pos}", f"a compressed "
                                                       f"element inflating past {limit >> 20} "
                                                       f"MB; {expected}")
                            piece = inflate.unconsumed_tail
                    pos += 8 + nbytes
                else:
                    pos += 8 + nbytes + (-nbytes % 8)


def load_mat(path, expected):
    """``scipy.io.loadmat(path)`` after :func:`check_mat`; a missing or unreadable file is a
    CaffeFormatError naming it and ``expected`` (what the file should be)."""
    import scipy.io

    try:
        check_mat(path, expected)
        return scipy.io.loadmat(str(path))
    except CaffeFormatError:
        raise
    except FileNotFoundError:
        raise CaffeFormatError(path, "", f"cannot open (no such file); {expected}") from None
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as e:
        raise CaffeFormatError(path, "", f"not a MATLAB file scipy can read ({e}); "
                                         f"{expected}") from None


def _plane(seg, path, where):
    seg = np.asarray(seg)
    if seg.ndim != 2 or not (np.issubdtype(seg.dtype, np.number) or seg.dtype == bool):
        raise CaffeFormatError(path, where, f"a {seg.dtype} array of shape {seg.shape}; expected "
                               "an H x W array of class indices")
    return seg


def mat_plane(path, key, expected):
    """``loadmat(path)[key]``, which must be an H x W numeric array (errors name the file)."""
    mat = load_mat(path, expected)
    if key not in mat:
        raise CaffeFormatError(path, "", f"no variable {key!r}; {expected}")
    return _plane(mat[key], path, key)


def to_uint8(seg, path, where):
    """``seg.astype(np.uint8)`` as the official layers cast, refusing values that are not whole
    numbers in 0-255 (the cast would wrap or truncate them silently)."""
    seg = np.asarray(seg)
    bad = ~np.isfinite(seg) | (seg < 0) | (seg > 255) | (seg != np.round(seg)) \
        if seg.dtype.kind == "f" else (seg < 0) | (seg > 255)
    if np.any(bad):
        value = seg[bad].flat[0]
        raise CaffeFormatError(path, where, f"{int(np.count_nonzero(bad))} values outside the "
                               f"whole numbers 0-255 (e.g. {value}); expected class indices")
    return seg.astype(np.uint8)


def read_sbd_mat(path, struct="GTcls"):
    """``loadmat(path)[struct][0]['Segmentation'][0]`` as uint8 (H, W), as the official layer
    (and convert_sbdd.py, with ``GTinst`` for instances) index it; errors name the file."""
    expected = f"expected SBD's cls/<id>.mat: a struct {struct} with a field Segmentation"
    mat = load_mat(path, expected)
    try:
        seg = np.asarray(mat[struct][0]["Segmentation"][0])
    except (KeyError, IndexError, ValueError, TypeError):
        raise CaffeFormatError(path, "", f"no {struct}.Segmentation; {expected}") from None
    return _plane(seg, path, f"{struct}.Segmentation").astype(np.uint8)
