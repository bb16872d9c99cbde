"""Caffe's ``WindowData`` layer (``window_data_layer.cpp``, R-CNN's fine-tuning input) as an
indexed source: ``source[d]`` is forward pass ``d``'s batch ``{data, label}``.

How Caffe computes it
---------------------
* The window file (``window_data_param.source``) is whitespace-separated tokens: per image
  ``# <index>``, its path (prefixed by ``root_folder`` as a plain string), ``channels height
  width``, a window count, then per window ``label overlap x1 y1 x2 y2`` (inclusive pixel
  corners). A window with ``overlap >= fg_threshold`` is foreground (its label must be > 0);
  one with ``overlap < bg_threshold`` is background (label 0); others are dropped.
* The tops: data ``batch_size x channels x crop_size x crop_size`` (channels of the file's last
  image, ``transform_param.crop_size`` > 0) and label ``batch_size``.
* Each batch (``load_batch``) takes ``batch_size - int(float(batch_size) * fg_fraction)``
  background windows, then the foreground ones, each ``windows[PrefetchRand() % n]``, then
  ``do_mirror = mirror && PrefetchRand() % 2``. ``PrefetchRand`` is a boost ``mt19937`` seeded
  at set-up with the global generator's next output: after the transformer's ``InitRand``
  when it needs one (``mirror``, or TRAIN with a crop), so the 2nd output of
  ``mt19937(random_seed)`` then, else the 1st. It samples in TEST too.
* The image is read as ``cv::imread(COLOR)`` (BGR). With ``context_pad`` > 0 or ``crop_mode:
  "square"`` the window grows around its centre by ``crop / (crop - 2 * context_pad)`` (the
  square mode first makes both halves the larger), corners rounded with C's ``round``, clipped
  to the image; the clipped part is resized to its share of the crop and placed at the
  offset the clipping left (on the right instead of the left when mirrored), in float. Else
  the window is resized to ``crop x crop``. ``cv::resize`` INTER_LINEAR, then ``cv::flip``.
* ``top = (pixel - mean) * window_data_param.scale`` (the layer's own ``scale``, not the
  transform's), the mean from ``transform_param``: a mean file indexed at ``(H_mean - crop) /
  2`` plus the pixel's place, or per-channel values. Outside the placed image the top is 0.

fcn-port computes the same in numpy with float32 where Caffe's ``Dtype`` is float; the
generator is replayed from its seed, so pass ``d`` is the same whatever came before.
"""
import sys

import numpy as np

from ..errors import CaffeFormatError
from ..formats.blobproto import read_blob_file
from .decode import decode, resize_linear
from .sources import _path, _lines

f32 = np.float32


def _c_round(v):
    """C's ``round`` of a float: half away from zero."""
    v = float(v)
    return int(np.floor(abs(v) + 0.5) * (1 if v >= 0 else -1))


class WindowData:
    def __init__(self, lp, phase, root, seed=None):
        p, t = lp.window_data_param, lp.transform_param
        self.name, self.tops, self.p = lp.name, list(lp.top), p
        self.where = self.path = _path(p.source, root)
        if p.batch_size <= 0 or t.crop_size <= 0:
            raise CaffeFormatError(lp.name, "window_data_param", f"batch_size ({p.batch_size}) "
                                   f"and transform_param.crop_size ({t.crop_size}) must be > 0")
        self.crop, self.mirror = t.crop_size, t.mirror
        if (p.context_pad > 0 or p.crop_mode == "square") and 2 * p.context_pad >= t.crop_size:
            raise CaffeFormatError(lp.name, "window_data_param", f"context_pad {p.context_pad} "
                                   f"leaves nothing of crop_size {t.crop_size}")
        self.images, self.fg, self.bg, self.channels = self._read(p, root)
        if not self.fg or not self.bg:
            raise CaffeFormatError(self.where, "", f"{len(self.fg)} foreground and "
                                   f"{len(self.bg)} background windows; each batch needs both")
        self.mean = self.mean_values = None
        if t.mean_file and t.mean_value:
            raise CaffeFormatError(lp.name, "transform_param", "give mean_file or mean_value, "
                                   "not both")
        if t.mean_file:
            self.mean = np.asarray(read_blob_file(_path(t.mean_file, root)).data, f32)
        elif t.mean_value:
            self.mean_values = np.resize(np.array(t.mean_value, f32), self.channels)
        needs = t.mirror or (phase == "TRAIN" and t.crop_size)  # the transformer's InitRand
        self.seed = None if seed is None or seed < 0 else \
            _outputs(np.random.RandomState(seed), 2)[1 if needs else 0]
        self._rng, self._drawn = None, 0

    def _read(self, p, root):
        tokens = " ".join(_lines(self.where, "a window file ('# index', path, C H W, windows)"))
        tokens, images, fg, bg, channels = tokens.split(), [], [], [], 0
        k = 0
        try:
            while k < len(tokens):
                if tokens[k] != "#":
                    raise ValueError(f"token {k + 1} is {tokens[k][:40]!r}, expected '#'")
                index, path = int(tokens[k + 1]), tokens[k + 2]
                channels = int(tokens[k + 3])
                images.append((index, _path(p.root_folder + path, root)))
                count, k = int(tokens[k + 6]), k + 7
                for _ in range(count):
                    label, overlap = int(tokens[k]), f32(tokens[k + 1])
                    box = tuple(int(v) for v in tokens[k + 2:k + 6])
                    if len(box) != 4:
                        raise ValueError("the file ends inside a window")
                    k += 6
                    if overlap >= f32(p.fg_threshold):
                        if label <= 0:
                            raise ValueError(f"foreground window {box} has label {label} <= 0")
                        fg.append((index, label, box))
                    elif overlap < f32(p.bg_threshold):
                        bg.append((index, 0, box))
        except (ValueError, IndexError) as e:
            raise CaffeFormatError(self.where, f"image {len(images)}", str(e)) from None
        return dict(images), fg, bg, channels

    def __len__(self):
        return sys.maxsize  # Caffe samples for ever

    def _draw(self, k):
        """The ``k``-th output of the prefetch generator (replayed from the seed)."""
        if self._rng is None or k < self._drawn:
            state = np.random.RandomState(self.seed) if self.seed is not None else \
                np.random.RandomState()
            self._rng, self._drawn, self._last = state, 0, None
        while self._drawn <= k:
            self._last = _outputs(self._rng, 1)[0]
            self._drawn += 1
        return self._last

    def __getitem__(self, d):
        batch, per = self.p.batch_size, 2 if self.mirror else 1
        n_fg = int(f32(batch) * f32(self.p.fg_fraction))
        data = np.zeros((batch, self.channels, self.crop, self.crop), f32)
        labels = np.zeros(batch, f32)
        k = d * batch * per
        for item, fg in enumerate([False] * (batch - n_fg) + [True] * n_fg):
            windows = self.fg if fg else self.bg
            index, label, box = windows[self._draw(k) % len(windows)]
            mirror = bool(self.mirror and self._draw(k + 1) % 2)
            k += per
            self._place(data[item], index, box, mirror)
            labels[item] = label
        return {self.tops[0]: data, self.tops[1]: labels} if len(self.tops) > 1 else \
            {self.tops[0]: data}

    def _place(self, out, index, box, mirror):
        if index not in self.images:
            raise CaffeFormatError(self.where, f"image {index}", "no such image in the file")
        img = decode(self.images[index], "color")
        if img.shape[2] != self.channels:
            raise CaffeFormatError(self.images[index], "", f"has {img.shape[2]} channels, the "
                                   f"window file says {self.channels}")
        crop, pad, (x1, y1, x2, y2) = self.crop, self.p.context_pad, box
        size, pad_w, pad_h = (crop, crop), 0, 0
        if pad > 0 or self.p.crop_mode == "square":
            context = f32(crop) / f32(crop - 2 * pad)
            half_h, half_w = f32((y2 - y1 + 1) / 2.0), f32((x2 - x1 + 1) / 2.0)
            cx, cy = f32(x1) + half_w, f32(y1) + half_h
            if self.p.crop_mode == "square":
                half_h = half_w = max(half_h, half_w)
            x1, x2 = _c_round(cx - half_w * context), _c_round(cx + half_w * context)
            y1, y2 = _c_round(cy - half_h * context), _c_round(cy + half_h * context)
            width, height = x2 - x1 + 1, y2 - y1 + 1
            px1, py1 = max(0, -x1), max(0, -y1)
            px2, py2 = max(0, x2 - img.shape[1] + 1), max(0, y2 - img.shape[0] + 1)
            x1, x2, y1, y2 = x1 + px1, x2 - px2, y1 + py1, y2 - py2
            sx, sy = f32(crop) / f32(width), f32(crop) / f32(height)
            size = (_c_round(f32(y2 - y1 + 1) * sy), _c_round(f32(x2 - x1 + 1) * sx))
            pad_h = _c_round(f32(py1) * sy)
            pad_w = _c_round(f32(px2 if mirror else px1) * sx)
            size = (min(size[0], crop - pad_h), min(size[1], crop - pad_w))
        if x1 < 0 or y1 < 0 or x2 >= img.shape[1] or y2 >= img.shape[0] or x2 < x1 or y2 < y1:
            raise CaffeFormatError(self.where, f"window {box} of image {index}",
                                   f"lies outside the {img.shape[1]} x {img.shape[0]} image")
        part = resize_linear(img[y1:y2 + 1, x1:x2 + 1], *size)
        if mirror:
            part = part[:, ::-1]
        pixels = part.transpose(2, 0, 1).astype(f32)
        h, w = pixels.shape[1:]
        if self.mean is not None:
            mh, mw = self.mean.shape[-2:]
            off = (mw - crop) // 2  # Caffe's mean_off, from the width for both axes
            mean = self.mean.reshape(-1, mh, mw)[:, off + pad_h:off + pad_h + h,
                                                 off + pad_w:off + pad_w + w]
            pixels = pixels - mean
        elif self.mean_values is not None:
            pixels = pixels - self.mean_values[:, None, None]
        out[:, pad_h:pad_h + h, pad_w:pad_w + w] = pixels * f32(self.p.scale)


def _outputs(state, n):
    return [int(v) for v in state.randint(0, 2 ** 32, size=n, dtype=np.uint32)]
