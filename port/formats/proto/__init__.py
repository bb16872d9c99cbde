"""Caffe protobuf schema for fcn-port.

``caffe_pb2`` is generated code: it is produced from ``caffe.proto`` (this
directory) by ``python port/formats/proto/generate.py``, which runs
``grpc_tools.protoc`` (pip package ``grpcio-tools``).  Do not edit
``caffe_pb2.py`` by hand; edit ``caffe.proto`` and regenerate, and use
``python port/formats/proto/generate.py --check`` to confirm the committed file is
current.

The schema mirrors BVLC Caffe master's field names, numbers and defaults, so
``.caffemodel``, ``.solverstate`` and ``.prototxt`` files written by Caffe
parse with it.  Its protobuf package is ``fcn_port.caffe`` and its descriptor
is registered as ``fcn_port/port/formats/proto/caffe.proto``, so it can share a
process with pycaffe's own ``caffe_pb2`` without a clash.
"""

from . import caffe_pb2

__all__ = ["caffe_pb2"]
