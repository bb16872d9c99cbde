"""A full-size VOC FCN-8s caffemodel with random weights, for benchmarks.

The net header follows the official ``voc-fcn8s/train.prototxt`` of fcn.berkeleyvision.org
(V2 ``layer`` messages, every layer with ``phase: TRAIN`` as ``Net::Init`` sets it before
``Net::ToProto`` writes the file); the weights are float32 from ``numpy.random.default_rng``,
drawn one layer at a time (seeded per layer) so that writing never holds more than one
layer's arrays: the largest, fc6, is 411 MB.
"""
import os
from collections.abc import Mapping

import numpy as np

from fcn_port.port.caffemodel import write_weights
from fcn_port.port.proto import caffe_pb2
from fcn_port.port.wire import length_delimited, varint

NUM_PARAMS = 134_489_759
NUM_CLASSES = 21
FILENAME = "voc-fcn8s-random.caffemodel"

_TRAIN = caffe_pb2.TRAIN
_VGG = [  # (block, convs, width)
    (1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]


def _layer(net, name, type_, bottom, top, **params):
    layer = net.layer.add(name=name, type=type_, bottom=bottom, top=top, phase=_TRAIN)
    for field, value in params.items():
        if field == "param":
            for spec in value:
                layer.param.add(**spec)
        else:
            getattr(layer, field).CopyFrom(value)
    return layer


_LEARN = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
_FROZEN = [dict(lr_mult=0)]


def _conv(net, name, bottom, num_output, kernel, pad=0, stride=1):
    _layer(net, name, "Convolution", [bottom], [name], param=_LEARN,
           convolution_param=caffe_pb2.ConvolutionParameter(
               num_output=num_output, pad=[pad], kernel_size=[kernel], stride=[stride]))


def _deconv(net, name, bottom, kernel, stride):
    _layer(net, name, "Deconvolution", [bottom], [name], param=_FROZEN,
           convolution_param=caffe_pb2.ConvolutionParameter(
               num_output=NUM_CLASSES, bias_term=False, kernel_size=[kernel], stride=[stride]))


def _crop(net, name, bottom, like, offset):
    _layer(net, name, "Crop", [bottom, like], [name],
           crop_param=caffe_pb2.CropParameter(axis=2, offset=[offset]))


def net_parameter():
    """The voc-fcn8s NetParameter (no blobs) and ``{layer: [blob shapes]}`` in file order."""
    net = caffe_pb2.NetParameter(name="voc-fcn8s")
    _layer(net, "data", "Python", [], ["data", "label"],
           python_param=caffe_pb2.PythonParameter(
               module="voc_layers", layer="SBDDSegDataLayer",
               param_str="{'sbdd_dir': '../data/sbdd/dataset', 'seed': 1337, 'split': 'train', "
                         "'mean': (104.00699, 116.66877, 122.67892)}"))
    shapes, bottom, channels = {}, "data", 3
    for block, convs, width in _VGG:
        for i in range(1, convs + 1):
            name = f"conv{block}_{i}"
            _conv(net, name, bottom, width, 3, pad=100 if name == "conv1_1" else 1)
            _layer(net, f"relu{block}_{i}", "ReLU", [name], [name])
            shapes[name] = [(width, channels, 3, 3), (width,)]
            bottom, channels = name, width
        _layer(net, f"pool{block}", "Pooling", [bottom], [f"pool{block}"],
               pooling_param=caffe_pb2.PoolingParameter(
                   pool=caffe_pb2.PoolingParameter.MAX, kernel_size=2, stride=2))
        bottom = f"pool{block}"
    for n, kernel, prev_c in ((6, 7, 512), (7, 1, 4096)):
        _conv(net, f"fc{n}", bottom, 4096, kernel)
        _layer(net, f"relu{n}", "ReLU", [f"fc{n}"], [f"fc{n}"])
        _layer(net, f"drop{n}", "Dropout", [f"fc{n}"], [f"fc{n}"],
               dropout_param=caffe_pb2.DropoutParameter(dropout_ratio=0.5))
        shapes[f"fc{n}"] = [(4096, prev_c, kernel, kernel), (4096,)]
        bottom = f"fc{n}"
    k = NUM_CLASSES
    _conv(net, "score_fr", "fc7", k, 1)
    _deconv(net, "upscore2", "score_fr", 4, 2)
    _conv(net, "score_pool4", "pool4", k, 1)
    _crop(net, "score_pool4c", "score_pool4", "upscore2", 5)
    _layer(net, "fuse_pool4", "Eltwise", ["upscore2", "score_pool4c"], ["fuse_pool4"],
           eltwise_param=caffe_pb2.EltwiseParameter(operation=caffe_pb2.EltwiseParameter.SUM))
    _deconv(net, "upscore_pool4", "fuse_pool4", 4, 2)
    _conv(net, "score_pool3", "pool3", k, 1)
    _crop(net, "score_pool3c", "score_pool3", "upscore_pool4", 9)
    _layer(net, "fuse_pool3", "Eltwise", ["upscore_pool4", "score_pool3c"], ["fuse_pool3"],
           eltwise_param=caffe_pb2.EltwiseParameter(operation=caffe_pb2.EltwiseParameter.SUM))
    _deconv(net, "upscore8", "fuse_pool3", 16, 8)
    _crop(net, "score", "upscore8", "data", 31)
    _layer(net, "loss", "SoftmaxWithLoss", ["score", "label"], ["loss"],
           loss_param=caffe_pb2.LossParameter(ignore_label=255, normalize=False))
    shapes.update({
        "score_fr": [(k, 4096, 1, 1), (k,)],
        "upscore2": [(k, k, 4, 4)],
        "score_pool4": [(k, 512, 1, 1), (k,)],
        "upscore_pool4": [(k, k, 4, 4)],
        "score_pool3": [(k, 256, 1, 1), (k,)],
        "upscore8": [(k, k, 16, 16)],
    })
    order = [layer.name for layer in net.layer if layer.name in shapes]
    shapes = {name: shapes[name] for name in order}
    count = sum(int(np.prod(s)) for blobs in shapes.values() for s in blobs)
    assert count == NUM_PARAMS, f"voc-fcn8s has {count:,} parameters, expected {NUM_PARAMS:,}"
    return net, shapes


class RandomParams(Mapping):
    """``{layer: [float32 arrays]}`` drawn on access (the same arrays every time, per ``seed``)."""

    def __init__(self, shapes, seed=0):
        self.shapes, self.seed = shapes, seed
        self._index = {name: i for i, name in enumerate(shapes)}

    def __getitem__(self, name):
        rng = np.random.default_rng([self.seed, self._index[name]])
        blobs = []
        for shape in self.shapes[name]:
            fan_in = int(np.prod(shape[1:])) or 1
            a = rng.standard_normal(shape, dtype=np.float32)
            a *= np.float32(1 / np.sqrt(fan_in))
            blobs.append(a)
        return blobs

    def __iter__(self):
        return iter(self.shapes)

    def __len__(self):
        return len(self.shapes)


def expected_size(net, shapes):
    """The file size Caffe (and ``write_weights``) gives this net with float32 blobs of ``shapes``."""
    size = len(_without_layers(net).SerializeToString())
    for layer in net.layer:
        bare = len(layer.SerializeToString())  # the header net holds no blobs
        for shape in shapes.get(layer.name, ()):
            n = int(np.prod(shape)) * 4
            packed = b"".join(varint(d) for d in shape)
            dim = len(length_delimited(1, len(packed))) + len(packed)
            blob = len(length_delimited(5, n)) + n + len(length_delimited(7, dim)) + dim
            bare += len(length_delimited(7, blob)) + blob
        size += len(length_delimited(100, bare)) + bare
    return size


def _without_layers(net):
    top = caffe_pb2.NetParameter()
    top.CopyFrom(net)
    del top.layer[:]
    return top


def make_caffemodel(path, seed=0):
    """Write the random voc-fcn8s to ``path``; return its size in bytes (checked)."""
    net, shapes = net_parameter()
    write_weights(RandomParams(shapes, seed), path, net=net)
    size = os.path.getsize(path)
    want = expected_size(net, shapes)
    assert size == want, f"{path}: {size:,} bytes written, expected {want:,}"
    return size
