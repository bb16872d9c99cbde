"""A generated PASCAL-VOC-like dataset in the real VOC and SBD layouts, and a random VGG16-layout
base net: the official FCN data and starting weights, small enough to train on one CPU core.

What the official recipe reads (``shared/FCN_FACTS.md`` §1, §5; ``voc-fcn*/net.py`` and
``voc_layers.py``): the train net's ``SBDDSegDataLayer`` reads ``data/sbdd/dataset``
(``img/<id>.jpg``, ``cls/<id>.mat`` holding a MATLAB struct ``GTcls`` whose ``Segmentation``
field is the class map, split ``train.txt``); the val net's ``VOCSegDataLayer`` reads
``data/pascal/VOC2011`` (``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` paletted with the
VOC colours, a 255 void band along every object boundary, split
``ImageSets/Segmentation/seg11valid.txt``). The nets start from VGG16's ILSVRC classifier
(``VGG_ILSVRC_16_layers.caffemodel``: conv1_1 .. conv5_3, fc6 / fc7 InnerProduct 4096, fc8
InnerProduct 1000) transplanted by ``surgery.transplant`` (fc6 / fc7 coerced into 7x7 / 1x1
convolutions by flat copy, fc8 dropped).

What this module writes instead:

* :func:`make_dataset` writes ``DATA_DIR/sbdd/dataset`` (the train split) and
  ``DATA_DIR/pascal/VOC2011`` (the held-out seg11valid split) in exactly those layouts, so
  ``fcn-port train --data-root DATA_DIR`` on the official voc nets reads it with no change. The
  scenes are shapes drawn on textured backgrounds: each of :data:`CLASSES` (five VOC classes)
  has its own shape and colour, jittered per object; one to four objects per image at random
  places and sizes, later ones occluding earlier ones. Everything is drawn from
  ``numpy.random.default_rng((seed, split, index))``, so a file depends only on the seed, the
  split and its index (not on how many images were asked for).
* The same as VOC: ids look like VOC's (``2008_000000`` for train, ``2011_000000`` for val),
  SBD labels have no void (SBD's ``cls`` maps have none), VOC labels have a void band of
  ``void`` pixels each side of every boundary (VOC's is about 5 pixels wide at full size).
  Where we differ: one image size for all (VOC's vary), no ``inst`` / ``SegmentationObject``
  files, no "difficult" voids, SBD's ``Boundaries`` cell holds empty edge maps.
* :func:`make_base_net` writes a VGG16-layout ILSVRC classifier caffemodel at any widths, its
  weights drawn as Caffe's ``msra`` filler draws them (normal, std ``sqrt(2 / fan_in)``; fc8
  gaussian 0.01; biases 0) with numpy from ``seed``: the layer names, types and blob shapes of
  VGG16 (fc6 ``fc x (w5 * 7 * 7)``), so ``fcn-port surgery transplant BASE --net
  voc-fcn32s/train.prototxt`` does to it what the official recipe does to VGG16. It is no
  trained classifier: the nets start from random features, not ImageNet ones.

    fcn-port synthetic DATA_DIR [--train N] [--val N] [--size H W]
        [--seed S] [--base BASE.caffemodel --widths W1 .. W5 --fc N]
"""
from pathlib import Path

import numpy as np

from ..port.errors import UserInputError
from ..port.fileio import atomic_output

# VOC class index -> (name, shape, RGB colour); every other VOC class is absent
CLASSES = {
    1: ("aeroplane", "triangle", (236, 236, 240)),
    7: ("car", "rectangle", (40, 80, 225)),
    8: ("cat", "diamond", (205, 60, 205)),
    12: ("dog", "ellipse", (235, 150, 30)),
    15: ("person", "tall ellipse", (215, 30, 40)),
}
VGG_CONVS = (2, 2, 3, 3, 3)                       # convolutions per VGG16 stage
VGG16_WIDTHS = (64, 128, 256, 512, 512)


# --------------------------------------------------------------------------- scenes

def _background(rng, h, w):
    """A dull textured background: a low-saturation base colour, smooth noise, stripes."""
    base = rng.uniform(60, 170) + rng.uniform(-18, 18, size=3)
    gh, gw = rng.integers(3, 7), rng.integers(3, 7)
    coarse = rng.normal(0, 22, size=(gh, gw, 3))
    yy = np.linspace(0, gh - 1, h)
    xx = np.linspace(0, gw - 1, w)
    y0, x0 = np.floor(yy).astype(int), np.floor(xx).astype(int)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    fy, fx = (yy - y0)[:, None, None], (xx - x0)[None, :, None]
    smooth = ((1 - fy) * ((1 - fx) * coarse[y0][:, x0] + fx * coarse[y0][:, x1])
              + fy * ((1 - fx) * coarse[y1][:, x0] + fx * coarse[y1][:, x1]))
    angle, period = rng.uniform(0, np.pi), rng.uniform(5, 16)
    Y, X = np.mgrid[0:h, 0:w]
    stripes = 12 * np.sin((X * np.cos(angle) + Y * np.sin(angle)) * 2 * np.pi / period)
    im = base + smooth + stripes[:, :, None] + rng.normal(0, 6, size=(h, w, 3))
    return im


def _mask(shape, h, w, cy, cx, ry, rx):
    Y, X = np.mgrid[0:h, 0:w]
    dy, dx = (Y - cy) / ry, (X - cx) / rx
    if shape in ("ellipse", "tall ellipse"):
        return dy ** 2 + dx ** 2 <= 1
    if shape == "rectangle":
        return (np.abs(dy) <= 1) & (np.abs(dx) <= 1)
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= 1
    if shape == "triangle":  # apex up, base at the bottom
        return (dy <= 1) & (np.abs(dx) <= (dy + 1) / 2)
    raise ValueError(shape)


def make_scene(rng, h, w):
    """One scene: (H x W x 3 uint8 RGB image, H x W uint8 class map without void)."""
    im = _background(rng, h, w)
    lab = np.zeros((h, w), np.uint8)
    classes = list(CLASSES)
    for _ in range(int(rng.integers(1, 5))):
        c = classes[int(rng.integers(len(classes)))]
        _, shape, colour = CLASSES[c]
        r = rng.uniform(0.12, 0.3) * min(h, w)
        ry, rx = (1.7 * r, 0.8 * r) if shape == "tall ellipse" else \
            (0.7 * r, 1.5 * r) if shape == "rectangle" else (r, r * rng.uniform(0.85, 1.2))
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
        m = _mask(shape, h, w, cy, cx, ry, rx)
        if m.sum() < 16:
            continue
        tint = np.clip(np.array(colour) + rng.uniform(-20, 20, size=3), 0, 255)
        shade = 1 + 0.12 * (np.mgrid[0:h, 0:w][0] - cy) / max(ry, 1)  # a light gradient
        im[m] = tint * shade[m][:, None] + rng.normal(0, 8, size=(int(m.sum()), 3))
        lab[m] = c
    return np.clip(im, 0, 255).round().astype(np.uint8), lab


def void_band(lab, width=1):
    """VOC's void: pixels within ``width`` of a boundary between two labels become 255."""
    from scipy import ndimage

    size = 2 * width + 1
    edge = ndimage.maximum_filter(lab, size) != ndimage.minimum_filter(lab, size)
    out = lab.copy()
    out[edge] = 255
    return out


# --------------------------------------------------------------------------- files

def _rng(seed, split, k):
    return np.random.default_rng([int(seed), {"train": 0, "val": 1}[split], int(k)])


def _save_jpg(rgb, path):
    from PIL import Image

    with atomic_output(path) as f:
        Image.fromarray(rgb, "RGB").save(f, format="JPEG", quality=95)


def save_label_png(lab, path):
    """A VOC SegmentationClass PNG: mode P with the VOC palette (void 255 in its colour)."""
    from PIL import Image

    from ..models.vis import VOC_PALETTE

    png = Image.fromarray(lab, "P")
    png.putpalette(VOC_PALETTE.reshape(-1).tolist())
    with atomic_output(path) as f:
        png.save(f, format="PNG")


def save_sbd_mat(lab, path):
    """An SBD ``cls/<id>.mat``: struct GTcls with Segmentation, Boundaries (a 20 x 1 cell of
    edge maps, empty here) and CategoriesPresent, as scipy.io.loadmat reads SBD's files."""
    import scipy.io

    h, w = lab.shape
    bounds = np.empty((20, 1), object)
    bounds[:, 0] = [np.zeros((h, w), np.uint8) for _ in range(20)]
    gt = {"Segmentation": lab, "Boundaries": bounds,
          "CategoriesPresent": np.unique(lab[lab > 0]).astype(np.uint8)}
    with atomic_output(path) as f:
        scipy.io.savemat(f, {"GTcls": gt})


def make_dataset(data_dir, n_train=200, n_val=20, size=(96, 128), seed=0, *, void=1,
                 progress=False):
    """Write the train split as SBD (``sbdd/dataset``) and the val split as VOC
    (``pascal/VOC2011``, split seg11valid) under ``data_dir``; returns {split: [ids]}."""
    h, w = (int(v) for v in size)
    if n_train < 1 or n_val < 0 or h < 16 or w < 16:
        raise UserInputError(f"synthetic data: need --train >= 1, --val >= 0 and --size of at "
                             f"least 16 x 16; got {n_train}, {n_val}, {h} x {w}")
    data_dir = Path(data_dir)
    sbd, voc = data_dir / "sbdd" / "dataset", data_dir / "pascal" / "VOC2011"
    for d in (sbd / "img", sbd / "cls", voc / "JPEGImages", voc / "SegmentationClass",
              voc / "ImageSets" / "Segmentation"):
        d.mkdir(parents=True, exist_ok=True)
    ids = {"train": [f"2008_{k:06d}" for k in range(n_train)],
           "val": [f"2011_{k:06d}" for k in range(n_val)]}
    jobs = [("train", k, name) for k, name in enumerate(ids["train"])] + \
        [("val", k, name) for k, name in enumerate(ids["val"])]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="synthetic images", unit="img")
    for split, k, name in jobs:
        rgb, lab = make_scene(_rng(seed, split, k), h, w)
        if split == "train":
            _save_jpg(rgb, sbd / "img" / f"{name}.jpg")
            save_sbd_mat(lab, sbd / "cls" / f"{name}.mat")
        else:
            _save_jpg(rgb, voc / "JPEGImages" / f"{name}.jpg")
            save_label_png(void_band(lab, void), voc / "SegmentationClass" / f"{name}.png")
    for path, names in ((sbd / "train.txt", ids["train"]),
                        (voc / "ImageSets" / "Segmentation" / "seg11valid.txt", ids["val"])):
        with atomic_output(path) as f:
            f.write("".join(f"{i}\n" for i in names).encode())
    return ids


# --------------------------------------------------------------------------- base net

def base_net_param(widths=VGG16_WIDTHS, fc=4096):
    """The VGG16 ILSVRC classifier's layers (deploy form, 224 x 224 input) at these widths."""
    from ..port.formats.proto import caffe_pb2

    net = caffe_pb2.NetParameter(name="VGG_ILSVRC_16_layers")
    inp = net.layer.add(name="data", type="Input", top=["data"])
    inp.input_param.shape.add(dim=[1, 3, 224, 224])
    bottom = "data"
    for s, (n, width) in enumerate(zip(VGG_CONVS, widths), 1):
        for i in range(1, n + 1):
            name = f"conv{s}_{i}"
            conv = net.layer.add(name=name, type="Convolution", bottom=[bottom], top=[name])
            conv.convolution_param.num_output = int(width)
            conv.convolution_param.pad.append(1)
            conv.convolution_param.kernel_size.append(3)
            conv.convolution_param.weight_filler.type = "msra"
            net.layer.add(name=f"relu{s}_{i}", type="ReLU", bottom=[name], top=[name])
            bottom = name
        pool = net.layer.add(name=f"pool{s}", type="Pooling", bottom=[bottom], top=[f"pool{s}"])
        pool.pooling_param.pool = caffe_pb2.PoolingParameter.MAX
        pool.pooling_param.kernel_size, pool.pooling_param.stride = 2, 2
        bottom = f"pool{s}"
    for name, out in (("fc6", fc), ("fc7", fc), ("fc8", 1000)):
        ip = net.layer.add(name=name, type="InnerProduct", bottom=[bottom], top=[name])
        ip.inner_product_param.num_output = int(out)
        ip.inner_product_param.weight_filler.type = "msra" if name != "fc8" else "gaussian"
        if name == "fc8":
            ip.inner_product_param.weight_filler.std = 0.01
        bottom = name
        if name != "fc8":
            net.layer.add(name=f"relu{name[2:]}", type="ReLU", bottom=[name], top=[name])
            drop = net.layer.add(name=f"drop{name[2:]}", type="Dropout", bottom=[name],
                                 top=[name])
            drop.dropout_param.dropout_ratio = 0.5
    net.layer.add(name="prob", type="Softmax", bottom=["fc8"], top=["prob"])
    return net


def base_net_params(widths=VGG16_WIDTHS, fc=4096, seed=0):
    """{layer: [weight, bias]} float32, drawn as the fillers of :func:`base_net_param` say."""
    rng = np.random.default_rng(int(seed))
    shapes, c = {}, 3
    for s, (n, width) in enumerate(zip(VGG_CONVS, widths), 1):
        for i in range(1, n + 1):
            shapes[f"conv{s}_{i}"] = (int(width), c, 3, 3)
            c = int(width)
    shapes["fc6"] = (int(fc), c * 7 * 7)
    shapes["fc7"] = (int(fc), int(fc))
    shapes["fc8"] = (1000, int(fc))
    params = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        std = 0.01 if name == "fc8" else np.sqrt(2.0 / fan_in)
        params[name] = [(rng.standard_normal(shape) * std).astype(np.float32),
                        np.zeros(shape[0], np.float32)]
    return params


def make_base_net(path, widths=VGG16_WIDTHS, fc=4096, seed=0):
    """Write the VGG16-layout classifier (:func:`base_net_param`, :func:`base_net_params`) as a
    binary caffemodel at ``path``; returns its sha256."""
    from ..port.formats.caffemodel import write_weights

    widths = tuple(int(v) for v in widths)
    if len(widths) != 5 or min(widths) < 1 or int(fc) < 1:
        raise UserInputError(f"base net: need five positive --widths and a positive --fc; got "
                             f"{list(widths)}, {fc}")
    return write_weights(base_net_params(widths, fc, seed), path, net=base_net_param(widths, fc))
