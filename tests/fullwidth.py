"""Full-width model-zoo nets for parity with real Caffe: deploy prototxts of CaffeNet, NIN
(ImageNet), SqueezeNet 1.1, GoogLeNet, ResNet-50 and DeepLab-LargeFOV with their published
widths, written by :func:`prototxt`, and their random weights, made by :func:`weights` from
the layer and blob names alone (so Caffe and fcn-port fill the same values without shipping
hundreds of megabytes of caffemodels). ``tests/make_fullwidth_cases.py`` runs them in Caffe.
"""
import zlib

import numpy as np

SHAPES = {"caffenet": 227, "nin_imagenet": 224, "squeezenet_v1.1": 227, "googlenet": 224,
          "resnet50": 224, "deeplab_largefov": 161}


class _Net:
    def __init__(self, name, size):
        self.lines = [f'name: "{name}"', f'input: "data" input_shape {{ dim: 1 dim: 3 '
                      f'dim: {size} dim: {size} }}']

    def add(self, name, kind, bottom, top=None, params=""):
        bottoms = [bottom] if isinstance(bottom, str) else bottom
        tops = "".join(f' top: "{t}"' for t in ([top or name] if not isinstance(top, list)
                                                   else top))
        self.lines.append(f'layer {{ name: "{name}" type: "{kind}"'
                          + "".join(f' bottom: "{b}"' for b in bottoms) + tops
                          + (f" {params}" if params else "") + " }")
        return top or name

    def conv(self, name, bottom, n, k, s=1, p=0, g=1, d=1, bias=True, relu="relu"):
        extra = (f" group: {g}" if g > 1 else "") + (f" dilation: {d}" if d > 1 else "") + \
            ("" if bias else " bias_term: false")
        top = self.add(name, "Convolution", bottom, params=f"convolution_param {{ num_output: {n}"
                       f" kernel_size: {k} stride: {s} pad: {p}{extra} }}")
        if relu:
            self.add(f"{relu}_{name}" if relu == "relu" else relu, "ReLU", top, top)
        return top

    def pool(self, name, bottom, k, s, p=0, method="MAX", global_=False):
        shape = "global_pooling: true" if global_ else f"kernel_size: {k} stride: {s} pad: {p}"
        return self.add(name, "Pooling", bottom, params=f"pooling_param {{ pool: {method} {shape} }}")

    def lrn(self, name, bottom):
        return self.add(name, "LRN", bottom, params="lrn_param { local_size: 5 alpha: 0.0001 "
                        "beta: 0.75 }")

    def fc(self, name, bottom, n, relu=True):
        top = self.add(name, "InnerProduct", bottom, params=f"inner_product_param {{ "
                       f"num_output: {n} }}")
        if relu:
            self.add(f"relu_{name}", "ReLU", top, top)
            self.add(f"drop_{name}", "Dropout", top, top)
        return top

    def text(self):
        return "\n".join(self.lines) + "\n"


def _caffenet(n):
    x = n.conv("conv1", "data", 96, 11, 4)
    x = n.lrn("norm1", n.pool("pool1", x, 3, 2))
    x = n.conv("conv2", x, 256, 5, p=2, g=2)
    x = n.lrn("norm2", n.pool("pool2", x, 3, 2))
    x = n.conv("conv3", x, 384, 3, p=1)
    x = n.conv("conv4", x, 384, 3, p=1, g=2)
    x = n.pool("pool5", n.conv("conv5", x, 256, 3, p=1, g=2), 3, 2)
    x = n.fc("fc7", n.fc("fc6", x, 4096), 4096)
    n.add("prob", "Softmax", n.fc("fc8", x, 1000, relu=False))


def _nin(n):
    x = "data"
    for i, (c, k, s, p) in enumerate([(96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1)]):
        x = n.conv(f"conv{i + 1}", x, c, k, s, p)
        x = n.conv(f"cccp{2 * i + 2}", n.conv(f"cccp{2 * i + 1}", x, c, 1), c, 1)
        x = n.pool(f"pool{i + 1}", x, 3, 2)
    x = n.conv("cccp7", n.conv("conv4-1024", x, 1024, 3, p=1), 1024, 1)
    x = n.pool("pool4", n.conv("cccp8-1000", x, 1000, 1), 6, 1, method="AVE")
    n.add("prob", "Softmax", x)


def _squeezenet(n):
    x = n.pool("pool1", n.conv("conv1", "data", 64, 3, 2), 3, 2)
    for i, (s, e) in enumerate([(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192),
                                (64, 256), (64, 256)], 2):
        sq = n.conv(f"fire{i}/squeeze1x1", x, s, 1)
        a, b = n.conv(f"fire{i}/expand1x1", sq, e, 1), n.conv(f"fire{i}/expand3x3", sq, e, 3, p=1)
        x = n.add(f"fire{i}/concat", "Concat", [a, b])
        if i in (3, 5):
            x = n.pool(f"pool{i}", x, 3, 2)
    x = n.conv("conv10", n.add("drop9", "Dropout", x, x), 1000, 1)
    n.add("prob", "Softmax", n.pool("pool10", x, 0, 0, method="AVE", global_=True))


INCEPTION = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
             "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
             "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
             "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
             "5b": (384, 192, 384, 48, 128, 128)}


def _googlenet(n):
    x = n.pool("pool1/3x3_s2", n.conv("conv1/7x7_s2", "data", 64, 7, 2, 3), 3, 2)
    x = n.conv("conv2/3x3_reduce", n.lrn("pool1/norm1", x), 64, 1)
    x = n.lrn("conv2/norm2", n.conv("conv2/3x3", x, 192, 3, p=1))
    x = n.pool("pool2/3x3_s2", x, 3, 2)
    for name, (a, r3, c3, r5, c5, pp) in INCEPTION.items():
        i = f"inception_{name}"
        b1 = n.conv(f"{i}/1x1", x, a, 1)
        b3 = n.conv(f"{i}/3x3", n.conv(f"{i}/3x3_reduce", x, r3, 1), c3, 3, p=1)
        b5 = n.conv(f"{i}/5x5", n.conv(f"{i}/5x5_reduce", x, r5, 1), c5, 5, p=2)
        bp = n.conv(f"{i}/pool_proj", n.pool(f"{i}/pool", x, 3, 1, 1), pp, 1)
        x = n.add(f"{i}/output", "Concat", [b1, b3, b5, bp])
        if name in ("3b", "4e"):
            x = n.pool(f"pool{name[0]}/3x3_s2", x, 3, 2)
    x = n.pool("pool5/7x7_s1", x, 7, 1, method="AVE")
    x = n.add("loss3/classifier", "InnerProduct", n.add("pool5/drop_7x7_s1", "Dropout", x, x),
              params="inner_product_param { num_output: 1000 }")
    n.add("prob", "Softmax", x)


def _bn(n, name, suffix, bottom, relu):
    n.add(f"bn{suffix}", "BatchNorm", bottom, bottom, "batch_norm_param { use_global_stats: true }")
    n.add(f"scale{suffix}", "Scale", bottom, bottom, "scale_param { bias_term: true }")
    if relu:
        n.add(f"{name}_relu", "ReLU", bottom, bottom)
    return bottom


def _resnet50(n):
    x = _bn(n, "conv1", "_conv1", n.conv("conv1", "data", 64, 7, 2, 3, relu=None), True)
    x = n.pool("pool1", x, 3, 2)
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)], 2):
        for b in range(blocks):
            s = f"{stage}{'abcdef'[b]}"
            stride = 2 if b == 0 and stage > 2 else 1
            if b == 0:
                short = n.conv(f"res{s}_branch1", x, 4 * width, 1, stride, bias=False, relu=None)
                short = _bn(n, "", f"{s}_branch1", short, False)
            else:
                short = x
            y = n.conv(f"res{s}_branch2a", x, width, 1, stride, bias=False, relu=None)
            y = _bn(n, f"res{s}_branch2a", f"{s}_branch2a", y, True)
            y = n.conv(f"res{s}_branch2b", y, width, 3, 1, 1, bias=False, relu=None)
            y = _bn(n, f"res{s}_branch2b", f"{s}_branch2b", y, True)
            y = n.conv(f"res{s}_branch2c", y, 4 * width, 1, bias=False, relu=None)
            y = _bn(n, "", f"{s}_branch2c", y, False)
            x = n.add(f"res{s}", "Eltwise", [short, y])
            n.add(f"res{s}_relu", "ReLU", x, x)
    x = n.pool("pool5", x, 7, 1, method="AVE")
    n.add("prob", "Softmax", n.add("fc1000", "InnerProduct", x,
                                   params="inner_product_param { num_output: 1000 }"))


def _deeplab(n):
    x = "data"
    for block, (count, width) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], 1):
        for i in range(1, count + 1):
            x = n.conv(f"conv{block}_{i}", x, width, 3, p=2 if block == 5 else 1,
                       d=2 if block == 5 else 1)
        x = n.pool(f"pool{block}", x, 3, 2 if block <= 3 else 1, 1)
    x = n.conv("fc6", x, 1024, 3, p=12, d=12)
    x = n.conv("fc7", n.add("drop6", "Dropout", x, x), 1024, 1)
    n.conv("fc8_voc12", n.add("drop7", "Dropout", x, x), 21, 1, relu=None)


BUILDERS = {"caffenet": _caffenet, "nin_imagenet": _nin, "squeezenet_v1.1": _squeezenet,
            "googlenet": _googlenet, "resnet50": _resnet50, "deeplab_largefov": _deeplab}


def prototxt(name):
    net = _Net(name, SHAPES[name])
    BUILDERS[name](net)
    return net.text()


def weights(layer, kind, shapes, seed=19):
    """The blobs of layer ``layer`` (Caffe type ``kind``), of ``shapes``, drawn from the names
    alone: He-scaled weights, small biases; BatchNorm mean 0 +- 0.1, variance 0.5..1.5, scale
    factor 1; Scale 0.5..1.5 and +- 0.1."""
    out = []
    for i, shape in enumerate(shapes):
        rng = np.random.default_rng([seed, zlib.crc32(f"{layer}/{i}".encode())])
        if kind == "BatchNorm":
            v = [rng.normal(0, 0.1, shape), rng.uniform(0.5, 1.5, shape), np.ones(shape)][i]
        elif kind == "Scale":
            v = rng.uniform(0.5, 1.5, shape) if i == 0 else rng.normal(0, 0.1, shape)
        elif len(shape) > 1:
            v = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        else:
            v = rng.normal(0, 0.01, shape)
        out.append(np.asarray(v, np.float32))
    return out
