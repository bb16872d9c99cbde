"""The PASCAL VOC colour palette, label PNGs and the official overlay.

``make_palette(n)`` is the standard VOC colormap: the bits of the class index are dealt out
round-robin to R, G, B from the most significant bit down (bit 0 -> R bit 7, bit 1 -> G bit 7,
bit 2 -> B bit 7, bit 3 -> R bit 6, ...). Class 0 is black, 1 (128, 0, 0), 2 (0, 128, 0),
15 (person) (192, 128, 128) and 255 (void) (224, 224, 192), the colours in the VOC
SegmentationClass PNGs. The official vis.make_palette(21) is the first 21 rows of it.

``overlay`` is the official vis_seg: in float32, pixels whose label is > 0 become
``(1 - alpha) * image + alpha * colour``, then the result is truncated (not rounded) to uint8;
background (label 0) pixels are left exactly as they were.

``with_legend`` adds what the official overlay lacks, a key to its colours: a strip below the
image (the image's pixels untouched) with a swatch and the name of every class present.
"""
import numpy as np
from PIL import Image

from ..port.errors import UserInputError
from ..port.fileio import atomic_output


def make_palette(n=256):
    """(n, 3) uint8 RGB array: the VOC bit-shuffle colours of classes 0 .. n-1."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        label, bit = k, 7
        while label:
            for channel in range(3):
                palette[k, channel] |= ((label >> channel) & 1) << bit
            label >>= 3
            bit -= 1
    return palette


VOC_PALETTE = make_palette(256)
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor")


def names_for(n, names=None):
    """``names`` checked against ``n``; by default the VOC names for 21 classes, else '0'..'n-1'."""
    if names is None:
        return list(VOC_CLASSES) if n == len(VOC_CLASSES) else [str(k) for k in range(n)]
    names = [str(s) for s in names]
    if len(names) != n:
        raise UserInputError(f"{len(names)} class names for {n} classes")
    return names


def _labels(labels):
    a = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if a.ndim != 2:
        raise UserInputError(f"labels must be H x W; got shape {a.shape}")
    return a


def color_seg(labels, palette=VOC_PALETTE):
    """H x W labels -> H x W x 3 uint8 colour image (the official vis.color_seg)."""
    a = _labels(labels)
    palette = np.asarray(palette, dtype=np.uint8)
    if a.size and (a.min() < 0 or a.max() >= len(palette)):
        raise UserInputError(f"labels span {a.min()}..{a.max()}; the palette has {len(palette)} colours")
    return palette[a]


def label_image(labels, palette=VOC_PALETTE):
    """H x W labels (0..255) -> mode 'P' PIL image carrying ``palette`` (padded to 256 colours)."""
    a = _labels(labels)
    if a.size and (a.min() < 0 or a.max() > 255):
        raise UserInputError(f"labels span {a.min()}..{a.max()}; a paletted PNG holds 0..255")
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
    full = np.zeros((256, 3), dtype=np.uint8)
    full[: len(palette)] = palette
    im = Image.fromarray(a.astype(np.uint8))  # mode L; putpalette makes it P, values kept
    im.putpalette(full.tobytes())
    return im


def save_label_png(labels, path, palette=VOC_PALETTE):
    """Write ``labels`` as a paletted PNG that opens like a VOC SegmentationClass PNG.
    All or nothing: a failure leaves no partial file."""
    im = label_image(labels, palette)
    with atomic_output(path) as f:
        im.save(f, format="PNG")


def overlay(image_rgb, labels, palette=VOC_PALETTE, alpha=0.5):
    """Blend the colours of non-background labels into an RGB image, as the official vis_seg.

    ``image_rgb``: H x W x 3 uint8 array or RGB PIL image. Returns an H x W x 3 uint8 array."""
    if not 0.0 <= alpha <= 1.0:
        raise UserInputError(f"alpha must be in [0, 1]; got {alpha}")
    seg = _labels(labels)
    vis = np.array(image_rgb, dtype=np.float32)
    if vis.ndim != 3 or vis.shape[2] != 3 or vis.shape[:2] != seg.shape:
        raise UserInputError(f"image {vis.shape} and labels {seg.shape} do not match (H x W x 3, H x W)")
    colours = color_seg(seg, palette)
    mask = seg > 0
    vis[mask] *= 1.0 - alpha
    vis[mask] += alpha * colours[mask]  # float64 products added into float32, as vis_seg does
    return vis.astype(np.uint8)


def present(*label_maps, skip=(0, 255)):
    """The sorted classes found in any of ``label_maps``, less ``skip`` (background, void)."""
    found = set()
    for a in label_maps:
        found.update(int(v) for v in np.unique(_labels(a)))
    return sorted(found - set(skip))


LEGEND_MIN_WIDTH = 64


def with_legend(image_rgb, classes, names, palette=VOC_PALETTE):
    """``image_rgb`` (H x W x 3 uint8) with a legend strip below it: a swatch and the name of
    each class in ``classes`` (e.g. :func:`present`), wrapped to the image's width; the image
    itself unchanged. No classes, or an image under :data:`LEGEND_MIN_WIDTH` pixels wide (no
    room for a name): the image as it is."""
    from PIL import ImageDraw, ImageFont

    image = np.asarray(image_rgb, dtype=np.uint8)
    if not classes or image.shape[1] < LEGEND_MIN_WIDTH:
        return image
    font = ImageFont.load_default()
    row_h, pad, width = 16, 4, image.shape[1]
    items, rows, x = [], 0, pad
    for c in classes:
        label = names[c] if c < len(names) else str(c)
        w = 12 + 4 + int(font.getlength(label)) + 10
        if x + w > width and x > pad:
            rows, x = rows + 1, pad
        items.append((x, rows, c, label))
        x += w
    strip = Image.new("RGB", (width, (rows + 1) * row_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for x, r, c, label in items:
        y = pad + r * row_h
        draw.rectangle([x, y, x + 11, y + 11], fill=tuple(int(v) for v in palette[c]),
                       outline=(0, 0, 0))
        draw.text((x + 16, y), label, fill=(0, 0, 0), font=font)
    return np.concatenate([image, np.asarray(strip)], axis=0)
