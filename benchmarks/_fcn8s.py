"""A full-size VOC FCN-8s caffemodel with random weights, for benchmarks.

The net header is the official ``voc-fcn8s/train.prototxt`` of fcn.berkeleyvision.org as the
model zoo generates it (V2 ``layer`` messages, every layer with ``phase: TRAIN`` as ``Net::Init`` sets it before
``Net::ToProto`` writes the file); the weights are float32 from ``numpy.random.default_rng``,
drawn one layer at a time (seeded per layer) so that writing never holds more than one
layer's arrays: the largest, fc6, is 411 MB.
"""
import os
from collections.abc import Mapping

import numpy as np

from fcn_port.port.formats.caffemodel import write_weights
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.wire import length_delimited, varint

NUM_PARAMS = 134_489_759
FILENAME = "voc-fcn8s-random.caffemodel"

def net_parameter():
    """The voc-fcn8s NetParameter (no blobs) and ``{layer: [blob shapes]}`` in file order: the
    model zoo's official train net (``fcn_port.models.net_param``), each layer in phase TRAIN."""
    from fcn_port.models import OFFICIAL, net_param
    from fcn_port.models.checkpoint import expected_shapes

    cfg = OFFICIAL["voc-fcn8s"]
    net = net_param(cfg, "train")
    net.name = "voc-fcn8s"
    for layer in net.layer:
        layer.phase = caffe_pb2.TRAIN
    blobs = expected_shapes(cfg)  # {"<layer>.<i>": shape}
    shapes = {}
    for layer in net.layer:
        for i in range(sum(k.rsplit(".", 1)[0] == layer.name for k in blobs)):
            shapes.setdefault(layer.name, []).append(blobs[f"{layer.name}.{i}"])
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
