"""Input preprocessing exactly as the official FCN data layers, and label reading.

What the official Python data layers (voc_layers, siftflow_layers, pascalcontext_layers,
nyud_layers) and infer.py do to an image, one image per forward, batch 1:

    im = PIL.Image.open(path)
    x = np.array(im, dtype=np.float32)      # H x W x 3, range 0-255: no scaling to [0, 1]
    x = x[:, :, ::-1]                       # RGB -> BGR (not for HHA)
    x -= mean                               # mean in BGR order
    x = x.transpose((2, 0, 1))              # C x H x W; the layer adds the batch axis

No resizing, cropping or mirroring; the EXIF orientation is not applied. The dtype of the mean
matters in the last bit of the float32 result: the VOC layers take the mean as ``np.array(tuple)``
(float64, so the subtraction is done in float64 and rounded once), the SIFT Flow, PASCAL-Context
and NYUD layers build it with ``dtype=np.float32``. The constants below carry those dtypes.

VOC mean. The VOC nets pass ``mean=(104.00699, 116.66877, 122.67892)`` to their data layers; the
layer's default and infer.py use ``(104.00698793, 116.66876762, 122.67891434)``. For 8-bit pixels
the two differ by at most one float32 ulp (<= 1.5e-5) for about 40% of the values. ``VOC_MEAN``,
the default, is the nets' value: it is what the released weights were trained and scored with.
``INFER_PY_MEAN`` reproduces infer.py (demo/output.png) bit for bit.

NYUD: colour is flipped to BGR minus ``NYUD_BGR_MEAN``; HHA is **not** flipped, minus
``NYUD_HHA_MEAN``; depth (16-bit PNG, millimetres) becomes ``log(d) - 7.844`` as 1 x H x W.

Image modes (our choice; the official code only handles 8-bit RGB): RGB is used as is. Grayscale
(L, 1), paletted (P, PA), RGBA/LA, CMYK and YCbCr images are converted to RGB by PIL; alpha is
dropped, not composited. 16-bit or float images are refused as colour input (their range is not
0-255). HHA must be 8-bit RGB. Depth must be a 16-bit (I;16*), 32-bit integer (I) or float (F)
single-channel image without zeros (log 0 = -inf would poison the net).

Labels: a paletted (P) or grayscale (L) PNG read as uint8 palette indices, 255 = void, like the
VOC SegmentationClass PNGs. Errors are :class:`CaffeFormatError` naming the file and what was
expected.

Decoders: every image fcn-port reads goes through :func:`open_image`
(:mod:`fcn_port.port.fileio.images`, where Caffe's own data layers use it too), which lets
Pillow try only
JPEG and PNG (:data:`FORMATS`: the formats of every official dataset and of infer.py's photos).
``Image.open`` with no format list tries about 40 formats by content, and one of them (EPS)
runs Ghostscript on the file: a PostScript program named ``photo.jpg`` would run. A source scan
(tests/port/test_no_code.py) keeps every ``Image.open`` in this one function.
"""
import os

import numpy as np
import torch

from ..port.errors import CaffeFormatError
from ..port.fileio.images import open_image
from .zoo import MEANS

# the values are the model zoo's (models/zoo.py MEANS); the dtype is each data layer's
VOC_MEAN = np.array(MEANS["voc"])  # float64, as voc_layers' np.array(tuple)
INFER_PY_MEAN = np.array((104.00698793, 116.66876762, 122.67891434))  # float64, infer.py
PASCALCONTEXT_MEAN = np.array(MEANS["pascalcontext"], dtype=np.float32)
SIFTFLOW_MEAN = np.array(MEANS["siftflow"], dtype=np.float32)
NYUD_BGR_MEAN = np.array(MEANS["nyud-color"], dtype=np.float32)
NYUD_HHA_MEAN = np.array(MEANS["nyud-hha"], dtype=np.float32)
NYUD_LOGD_MEAN = np.array(MEANS["nyud-logd"], dtype=np.float32)

DATASET_MEANS = {"voc": VOC_MEAN, "pascalcontext": PASCALCONTEXT_MEAN,
                 "siftflow": SIFTFLOW_MEAN, "nyud": NYUD_BGR_MEAN}
MEAN_DTYPES = {"voc": np.float64, "pascalcontext": np.float32, "siftflow": np.float32,
               "nyud": np.float32}

_TO_RGB = {"RGB", "L", "1", "P", "PA", "RGBA", "RGBX", "LA", "La", "RGBa", "CMYK", "YCbCr"}
_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_IMAGE_HINT = "a JPEG or PNG image"


def _name(source):
    return os.fspath(source) if isinstance(source, (str, bytes, os.PathLike)) else "<image>"


def image_size(source, expected=_IMAGE_HINT):
    """(H, W) of an image from its header alone: nothing decoded (infer's memory check runs
    before a 12000 x 12000 PNG inflates to gigabytes)."""
    im = open_image(source, expected, decode=False)
    return im.size[1], im.size[0]


def open_rgb(source):
    """The image as an 8-bit RGB PIL image, following the mode policy in the module docstring."""
    im = open_image(source)
    if im.mode == "RGB":
        return im
    if im.mode not in _TO_RGB:
        raise CaffeFormatError(_name(source), "", f"image mode {im.mode} ({_mode_words(im.mode)}); "
                               "expected an 8-bit colour or grayscale image")
    return im.convert("RGB")


def _mode_words(mode):
    return "16-bit or float" if mode in _DEPTH_MODES else "unsupported"


def to_blob(hwc, mean, flip=True):
    """Array H x W x C (0-255) -> float32 tensor (1, C, H, W): float32, optional RGB->BGR,
    ``-= mean`` with the mean's own dtype (as the official in-place numpy subtraction), CHW."""
    x = np.array(hwc, dtype=np.float32)
    if flip:
        x = x[:, :, ::-1]
    x -= np.asarray(mean)  # numpy computes in the wider dtype and rounds to float32 once
    return torch.from_numpy(np.ascontiguousarray(x.transpose((2, 0, 1)))[None])


def mean_for(dataset=None, mean=None):
    """The BGR mean array for ``dataset``, or ``mean`` (a sequence) with that dataset's dtype."""
    if mean is None:
        return DATASET_MEANS.get(dataset, VOC_MEAN)
    if isinstance(mean, np.ndarray):
        return mean
    return np.array(tuple(float(m) for m in mean), dtype=MEAN_DTYPES.get(dataset, np.float64))


def preprocess_image(source, mean=VOC_MEAN):
    """Colour image (path or PIL image) -> (1, 3, H, W) float32 BGR minus ``mean`` (BGR)."""
    return to_blob(open_rgb(source), mean, flip=True)


def preprocess_hha(source, mean=NYUD_HHA_MEAN):
    """NYUD HHA PNG -> (1, 3, H, W) float32 minus the HHA mean; channels kept in file order."""
    im = open_image(source, "an 8-bit 3-channel HHA PNG")
    if im.mode != "RGB":
        raise CaffeFormatError(_name(source), "", f"HHA image has mode {im.mode}; "
                               "expected an 8-bit 3-channel HHA PNG (mode RGB)")
    return to_blob(im, mean, flip=False)


def preprocess_depth(source, mean_logd=NYUD_LOGD_MEAN):
    """NYUD depth PNG (millimetres) -> (1, 1, H, W) float32 ``log(d) - 7.844``."""
    im = open_image(source, "a 16-bit depth PNG")
    if im.mode not in _DEPTH_MODES:
        raise CaffeFormatError(_name(source), "", f"depth image has mode {im.mode}; "
                               "expected a 16-bit single-channel depth PNG in millimetres")
    d = np.array(im, dtype=np.float32)
    zeros = int(np.count_nonzero(d <= 0))
    if zeros:
        raise CaffeFormatError(_name(source), "", f"{zeros} depth pixels are <= 0; expected "
                               "filled depth (the official layer takes log(d), giving -inf/NaN)")
    d = np.log(d)
    d -= mean_logd
    return torch.from_numpy(np.ascontiguousarray(d[None, None]))


def read_label(source):
    """Label PNG -> (H, W) uint8 class indices (255 = void), as the VOC data layer reads it."""
    im = open_image(source, "a paletted (mode P) label PNG")
    if im.mode not in ("P", "L"):
        hint = " (a colour rendering, not class indices)" if im.mode in ("RGB", "RGBA") else ""
        raise CaffeFormatError(_name(source), "", f"label image has mode {im.mode}{hint}; "
                               "expected a paletted (P) or grayscale (L) PNG of class indices")
    return np.array(im, dtype=np.uint8)


def input_kinds(meta):
    """What each of the model's inputs is: 'color', 'hha' or 'depth', in ``meta['inputs']`` order.

    'data' is colour, except for a NYUD net whose name ends in '-hha' (nyud-fcn32s-hha names its
    HHA top 'data')."""
    names = list(meta.get("inputs") or ["data"])
    kinds = []
    for name in names:
        if name in ("color", "hha", "depth"):
            kinds.append(name)
        elif name == "data":
            hha_net = meta.get("dataset") == "nyud" and str(meta.get("model", "")).endswith("-hha")
            kinds.append("hha" if hha_net else "color")
        else:
            raise CaffeFormatError(meta.get("model", "<model>"), "meta['inputs']",
                                   f"unknown input {name!r}; expected data, color, hha or depth")
    return kinds


def load_inputs(meta, image, hha=None, depth=None):
    """The model's input tensors for one example, in ``meta['inputs']`` order.

    The first input comes from ``image`` (for nyud-fcn32s-hha that is the HHA PNG); a further
    'hha' or 'depth' input from ``hha`` / ``depth``. Sizes must agree. Means: ``meta['means']``
    per input, else ``meta['mean']`` for a colour input, else the dataset's constant; the dtype
    is the dataset's (float64 for VOC, float32 for the others), as in the official layers."""
    kinds = input_kinds(meta)
    dataset = meta.get("dataset", "voc")
    extra = {"hha": hha, "depth": depth}
    for kind, given in extra.items():
        if given is not None and kind not in kinds[1:]:
            inputs = ", ".join(f"{n} ({k})" for n, k in zip(meta.get("inputs") or ["data"], kinds))
            raise CaffeFormatError(_name(given), "", f"a {kind} file was given but "
                                   f"{meta.get('model', 'the model')} takes only {inputs}")
    names = list(meta.get("inputs") or ["data"])
    means = dict(meta.get("means") or {})
    if meta.get("mean") is not None and kinds[0] == "color":
        means.setdefault(names[0], meta["mean"])
    tensors = []
    for i, (name, kind) in enumerate(zip(names, kinds)):
        source = image if i == 0 else extra.get(kind)
        if source is None:
            raise CaffeFormatError(_name(image), "", f"{meta.get('model', 'the model')} also "
                                   f"needs a {kind} image for this one")
        given = means.get(name)
        if kind == "color":
            t = preprocess_image(source, mean_for(dataset, given))
        elif kind == "hha":
            t = preprocess_hha(source, NYUD_HHA_MEAN if given is None else mean_for(dataset, given))
        else:
            t = preprocess_depth(source, NYUD_LOGD_MEAN if given is None else mean_for(dataset, given))
        if tensors and t.shape[2:] != tensors[0].shape[2:]:
            raise CaffeFormatError(_name(source), "", f"{kind} is {tuple(t.shape[2:])} (H, W); "
                                   f"expected the size of {_name(image)}: {tuple(tensors[0].shape[2:])}")
        tensors.append(t)
    return tensors
