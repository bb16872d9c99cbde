"""Images as Caffe's OpenCV build decodes and resizes them (``io.cpp``: ``ReadImageToCVMat``,
``DecodeDatumToCVMat``, ``DecodeDatumToCVMatNative``), from Pillow's JPEG and PNG decoders.

How OpenCV does it, and how it is reproduced here
-------------------------------------------------
* ``IMREAD_COLOR`` (``is_color``, ``force_color``): 3 channels in B, G, R order; a grayscale
  file is replicated. libjpeg decodes JPEG in both libraries (the oracle's JPEGs decode equal
  to the byte), PNG is lossless: Pillow's RGB reversed is OpenCV's BGR.
* ``IMREAD_GRAYSCALE`` (``is_color: false``, ``force_gray``): the codec converts, not OpenCV:
  a colour JPEG is libjpeg's Y plane (Pillow's ``draft("L")`` asks libjpeg for the same), a
  colour PNG goes through libpng's ``png_set_rgb_to_gray(0.299, 0.587)``, integer weights
  9797, 19234 and 3737 out of 32768 and the sum *truncated* (``>> 15``; a pixel with R = G = B
  is kept as it is).
* ``IMREAD_UNCHANGED`` (an encoded Datum without force_color/force_gray): the file's own
  channels: 1 for grayscale, 3 (BGR) for colour, 4 (BGRA) with alpha; a palette expands to BGR.
* ``cv::resize(INTER_LINEAR)`` on 8-bit images (ImageData's ``new_height``/``new_width``):
  half-pixel centres, ``fx = (x + 0.5) * src / dst - 0.5`` clamped at the edges, weights
  each of the two weights rounded to 11 bits on its own, a horizontal pass into ints and a
  vertical pass rounded by ``(b0 * (r0 >> 4) >> 16) + (b1 * (r1 >> 4) >> 16) + 2 >> 2``
  (``VResizeLinearVec_32s8u``, which OpenCV's scalar tail matches on these sizes). At the
  edges ``resizeGeneric_`` treats the axes differently: a column past the edge takes the edge
  pixel whole (weight 2048), while a row past it keeps its weights and reads the edge row for
  both taps, so the top and bottom rows of an upscale are ``(b0 r >> 16) + (b1 r >> 16)``,
  not ``r`` (checked against OpenCV 4.6's ``cv::resize`` pixel for pixel).

Everything is H x W x C uint8 (C = 1 for grayscale), as a ``cv::Mat``.
"""
import numpy as np

from ..fileio.images import open_image

_GRAY = (9797, 19234, 3737)  # libpng's rgb_to_gray weights for OpenCV's 0.299, 0.587


def decode(source, mode, name=None):
    """``source`` (a path or encoded bytes) as OpenCV's ``imread``/``imdecode`` with ``mode``
    'color', 'gray' or 'unchanged' would give it: H x W x C uint8."""
    im = open_image(source, name=name, gray_jpeg=mode == "gray")
    if mode == "gray":
        return _png_gray(im)[:, :, None]  # a JPEG is L already
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info and mode == "unchanged" else "RGB")
    if im.mode in ("L", "1"):
        g = np.asarray(im.convert("L"))[:, :, None]
        return g if mode == "unchanged" else np.repeat(g, 3, 2)
    if im.mode == "LA":
        im = im.convert("RGBA")
    if im.mode == "RGBA" and mode == "unchanged":
        a = np.asarray(im)
        return np.ascontiguousarray(a[:, :, [2, 1, 0, 3]])
    return np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])


def _png_gray(im):
    if im.mode in ("L", "1"):
        return np.asarray(im.convert("L"))
    rgb = np.asarray(im.convert("RGB")).astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mixed = (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b) >> 15
    return np.where((r == g) & (r == b), r, mixed).astype(np.uint8)


def resize_linear(img, height, width):
    """``cv::resize(img, (width, height), INTER_LINEAR)`` of an H x W x C uint8 image."""
    src_h, src_w = img.shape[:2]
    xs, ax = _taps(src_w, width, edge_weights=False)
    ys, ay = _taps(src_h, height, edge_weights=True)
    src = img.astype(np.int64)
    rows = src[:, xs[:, 0]] * ax[None, :, 0, None] + src[:, xs[:, 1]] * ax[None, :, 1, None]
    r0, r1 = rows[ys[:, 0]] >> 4, rows[ys[:, 1]] >> 4
    b0, b1 = ay[:, 0, None, None], ay[:, 1, None, None]
    out = (((b0 * r0) >> 16) + ((b1 * r1) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def _taps(src, dst, edge_weights):
    """(indices (dst, 2), 11-bit weights (dst, 2)) of each output along one axis. Past an
    edge the indices clamp; horizontally OpenCV also sets the weight to all on the edge pixel,
    vertically (``edge_weights``) it keeps the weights and reads the edge row twice."""
    scale = 1.0 / (dst / src)  # OpenCV: 1 / inv_scale, double; each position then float
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    f = (f - i.astype(np.float32)).astype(np.float32)
    if not edge_weights:
        low, high = i < 0, i >= src - 1
        f[low], i[low] = 0, 0
        f[high], i[high] = 0, src - 1
    w = np.rint(np.stack([np.float32(1) - f, f], 1) * np.float32(2048)).astype(np.int64)
    idx = np.clip(np.stack([i, i + 1], 1), 0, src - 1)
    return idx, w
