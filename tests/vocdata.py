"""VOC 2011 and SBD trees in their real layouts, generated for the tests (JPEGs of drawn shapes,
palette PNG labels with void borders, SBD ``cls/*.mat`` written with scipy, split files), and
the official layers' logic transcribed: the image transform and the order of the ids."""
import random

import numpy as np
import scipy.io
from PIL import Image, ImageDraw

MEAN = (104.00699, 116.66877, 122.67892)
SIZES = [(40, 50), (36, 44), (40, 50), (30, 38), (42, 48)]  # (H, W)


def image_of(h, w, k):
    im = Image.new("RGB", (w, h), (20 + 30 * k, 90, 200 - 20 * k))
    d = ImageDraw.Draw(im)
    d.ellipse((5, 4, w // 2, h // 2 + 5), fill=(230, 40 + 10 * k, 10))
    d.rectangle((w // 2, h // 3, w - 4, h - 3), fill=(15, 200, 60 + 25 * k))
    return im


def label_array(h, w, k):
    lab = np.zeros((h, w), np.uint8)
    lab[4:h // 2 + 5, 5:w // 2] = 1 + k
    lab[h // 3:h - 3, w // 2:w - 4] = 15
    lab[0, :] = lab[-1, :] = lab[:, 0] = lab[:, -1] = 255  # void border, as VOC's boundaries
    return lab


def make_voc(voc_dir, split="seg11valid", n=5):
    """A VOC tree: JPEGImages/, SegmentationClass/ (palette PNGs), ImageSets/Segmentation/."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc_dir / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"2011_{k:06d}" for k in range(n)]
    for k, name in enumerate(ids):
        h, w = SIZES[k % len(SIZES)]
        image_of(h, w, k).save(voc_dir / "JPEGImages" / f"{name}.jpg", quality=90)
        png = Image.fromarray(label_array(h, w, k), mode="P")
        png.putpalette([(i * 37) % 256 for i in range(768)])
        png.save(voc_dir / "SegmentationClass" / f"{name}.png")
    (voc_dir / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return ids


def make_sbd(sbdd_dir, split="train", n=5):
    """An SBD tree: img/*.jpg, cls/*.mat (struct GTcls with Segmentation), <split>.txt."""
    (sbdd_dir / "img").mkdir(parents=True, exist_ok=True)
    (sbdd_dir / "cls").mkdir(exist_ok=True)
    ids = [f"2008_{k:06d}" for k in range(n)]
    for k, name in enumerate(ids):
        h, w = SIZES[k % len(SIZES)]
        image_of(h, w, k).save(sbdd_dir / "img" / f"{name}.jpg", quality=90)
        seg = label_array(h, w, k)
        seg[seg == 255] = 0                              # SBD's cls labels have no void
        bounds = np.empty((20, 1), object)               # a cell of per-class edge maps
        bounds[:, 0] = [np.zeros((h, w), np.uint8) for _ in range(20)]
        gt = {"Segmentation": seg, "Boundaries": bounds,
              "CategoriesPresent": np.unique(seg[seg > 0]).astype(np.uint8)}
        scipy.io.savemat(sbdd_dir / "cls" / f"{name}.mat", {"GTcls": gt})
    (sbdd_dir / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return ids


def official_image(path, mean=MEAN):
    x = np.array(Image.open(path), dtype=np.float32)[:, :, ::-1]
    x -= np.array(mean)
    return x.transpose((2, 0, 1))[None]


def official_order(n, split, seed, steps, randomize=True, py2=True):
    """The layers' logic: setup picks idx, reshape/forward serve it, forward picks the next."""
    def randint(a, b):  # Python 2.7's randint: a + int(random() * width); else Python 3's
        return a + int(random.random() * (b - a + 1)) if py2 else random.randint(a, b)

    state = random.getstate()
    try:
        idx, rand = 0, randomize and "train" in split
        if rand:
            random.seed(seed)
            idx = randint(0, n - 1)
        served = []
        for _ in range(steps):
            served.append(idx)
            if rand:
                idx = randint(0, n - 1)
            else:
                idx = 0 if idx + 1 == n else idx + 1
        return served
    finally:
        random.setstate(state)
