#!/usr/bin/env python
"""The naive caffemodel -> checkpoint script, as one would write it without fcn-port:

    python _naive.py X.caffemodel OUT.pt

protobuf parses the whole file, numpy copies each blob, ``torch.save`` writes the state dict.
``_processes.py`` times it as a whole process against ``fcn-port convert``.
"""
import sys

import numpy as np
import torch

from fcn_port.port.formats.proto import caffe_pb2  # the generated caffe.proto module, nothing else


def main(src, out):
    net = caffe_pb2.NetParameter()
    with open(src, "rb") as f:
        net.ParseFromString(f.read())
    state = {f"{layer.name}.{i}": torch.from_numpy(np.array(blob.data, np.float32)
                                                   .reshape(blob.shape.dim))
             for layer in net.layer for i, blob in enumerate(layer.blobs)}
    torch.save(state, out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
