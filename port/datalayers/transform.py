"""Caffe's ``DataTransformer`` (``data_transformer.cpp``): crop, mirror, mean and scale.

How Caffe computes it
---------------------
For one item of C x H x W values (a raw Datum's uint8 ``data`` or its ``float_data``, or a
decoded image, H x W x C, read as the same C x H x W):

* ``crop_size`` k: in TEST the centre, ``h_off = (H - k) / 2``, ``w_off = (W - k) / 2``
  (integer division); in TRAIN ``h_off = Rand(H - k + 1)``, ``w_off = Rand(W - k + 1)``.
* ``mirror`` (TRAIN only has effect through ``Rand(2)``): ``do_mirror = mirror && Rand(2)``,
  drawn *before* the crop offsets; a mirrored item reads column ``W - 1 - w``.
* ``top = (x - mean) * scale`` in float: ``mean_file`` (a BlobProto of the uncropped C x H x W,
  indexed at the item's own position ``h_off + h, w_off + w``) or ``mean_value`` (one per
  channel, or one for all); without a mean ``x * scale``. ``scale`` defaults to 1.
* ``Rand(n)`` is ``rng() % n`` with the transformer's boost ``mt19937``. Caffe seeds it from
  its global generator (``caffe_rng_rand()``), itself ``mt19937(random_seed)`` when the solver
  sets ``random_seed``: in the oracle's build the transformer's seed is the 3rd output (the
  data reader thread and the two ``InitRand`` calls draw in that order).

fcn-port
--------
:class:`Transformer` computes exactly that with numpy in float32; ``draws(item)`` replays the
generator so that item ``i``'s offsets and mirror flag follow from the seed alone (a resumed run
draws what an uninterrupted one would). The oracle's seeded TRAIN case (random crops and
mirrors, ``random_seed: 1701``) comes out equal to Caffe's, value for value.
"""
import numpy as np

from ..errors import CaffeFormatError
from ..formats.blobproto import read_blob_file


class Transformer:
    def __init__(self, param, phase, root, seed=None, where="data layer"):
        self.crop, self.mirror = int(param.crop_size), bool(param.mirror)
        self.scale, self.phase, self.where = np.float32(param.scale), phase, where
        self.mean_values = np.array(list(param.mean_value), np.float32)
        self.mean = None
        if param.mean_file:
            if len(self.mean_values):
                raise CaffeFormatError(where, "transform_param", "give mean_file or mean_value, "
                                       "not both")
            blob = read_blob_file(_resolve(param.mean_file, root)).data
            self.mean = np.asarray(blob[0] if blob.ndim == 4 and blob.shape[0] == 1 else blob,
                                   np.float32)
        self.random = phase == "TRAIN" and (self.mirror or self.crop)
        self.seed = seed
        self._rng, self._drawn = None, 0

    def shape(self, c, h, w):
        return (c, self.crop, self.crop) if self.crop else (c, h, w)

    def __call__(self, chw, item=0):
        """One C x H x W item (uint8 or float) -> its float32 top of :meth:`shape`."""
        c, h, w = chw.shape
        x = chw.astype(np.float32)
        mirror, h_off, w_off = False, 0, 0
        if self.crop:
            if h < self.crop or w < self.crop:
                raise CaffeFormatError(self.where, f"item {item}", f"{h} x {w} is smaller than "
                                       f"crop_size {self.crop}")
            h_off, w_off = (h - self.crop) // 2, (w - self.crop) // 2
        if self.random:
            mirror, h_off, w_off = self._draw(item, h, w, h_off, w_off)
        k_h, k_w = (self.crop, self.crop) if self.crop else (h, w)
        win = (slice(None), slice(h_off, h_off + k_h), slice(w_off, w_off + k_w))
        x = x[win]
        if self.mean is not None:
            if self.mean.shape != (c, h, w):
                raise CaffeFormatError(self.where, "mean_file", f"the mean is "
                                       f"{self.mean.shape}, the data {(c, h, w)}")
            x = x - self.mean[win]
        elif len(self.mean_values):
            if len(self.mean_values) not in (1, c):
                raise CaffeFormatError(self.where, "mean_value", f"{len(self.mean_values)} "
                                       f"values for {c} channels (give 1 or {c})")
            x = x - self.mean_values.reshape(-1, 1, 1)
        if self.scale != 1:
            x = x * self.scale
        if mirror:
            x = x[:, :, ::-1]
        return np.ascontiguousarray(x, np.float32)

    def _draw(self, item, h, w, h_off, w_off):
        if self._rng is None or item < self._drawn:
            self._rng, self._drawn = _caffe_transformer_rng(self.seed), 0
        while True:  # replay the items before this one (their sizes are this one's: a batch)
            mirror = bool(self._rng() % 2) if self.mirror else False
            if self.crop:
                h_off = self._rng() % (h - self.crop + 1)
                w_off = self._rng() % (w - self.crop + 1)
            self._drawn += 1
            if self._drawn > item:
                return mirror, h_off, w_off


def _caffe_transformer_rng(seed):
    """The transformer's generator: ``mt19937(k)`` with ``k`` the 3rd output of
    ``mt19937(seed)`` (module doc); with no seed, one from the system, as Caffe's."""
    if seed is None or seed < 0:
        state = np.random.RandomState()
    else:
        outer = np.random.RandomState(seed)
        k = [int(outer.randint(0, 2 ** 32, dtype=np.uint32)) for _ in range(3)][2]
        state = np.random.RandomState(k)
    return lambda: int(state.randint(0, 2 ** 32, dtype=np.uint32))


def _resolve(path, root):
    import os

    return path if os.path.isabs(path) or root is None else os.path.join(root, path)
