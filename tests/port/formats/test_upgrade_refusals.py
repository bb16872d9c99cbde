"""Upgrades that Caffe refuses: each a CaffeFormatError naming the file and the layer.

Expected messages are written by hand from BVLC Caffe master's upgrade_proto.cpp."""
import pytest
from google.protobuf import text_format

from fcn_port.port.errors import CaffeFormatError
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.upgrade import upgrade_net


def raises(text_or_msg, *fragments):
    msg = text_or_msg
    if isinstance(msg, str):
        msg = text_format.Parse(msg, caffe_pb2.NetParameter())
    with pytest.raises(CaffeFormatError) as info:
        upgrade_net(msg, path="bad.prototxt")
    text = str(info.value)
    assert text.startswith("bad.prototxt: ")
    for fragment in fragments:
        assert fragment in text, text
    return info.value


def test_padding_not_followed_by_conv_or_pool():
    raises("""input: "data"
        layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "p" }
        layers { layer { name: "relu1" type: "relu" } bottom: "p" top: "r" }""",
           "'relu1'", "'pad1'", "'conv' or 'pool'")


def test_padding_into_conv_with_two_bottoms():
    raises("""input: "data" input: "other"
        layers { layer { name: "pad1" type: "padding" } bottom: "data" top: "p" }
        layers { layer { name: "c" type: "conv" } bottom: "p" bottom: "other" top: "c" }""",
           "'c'", "exactly 1 bottom")


def test_padding_with_two_tops():
    raises("""input: "data"
        layers { layer { name: "pad1" type: "padding" } bottom: "data" top: "p" top: "q" }
        layers { layer { name: "c" type: "conv" } bottom: "p" top: "c" }""",
           "'pad1'", "1 bottom and 1 top")


def test_v0_unknown_bottom_and_unknown_type():
    raises("""layers { layer { name: "c" type: "conv" } bottom: "nowhere" top: "c" }""",
           "layers[0] 'c'", "'nowhere'")
    raises("""layers { layer { name: "f" type: "fancy" } top: "f" }""",
           "layers[0] 'f'", "unknown V0 layer type 'fancy'")


def test_v1_unknown_enum_type():
    # layers { name: "bad" type: 99 }: 99 is no LayerType, so protobuf keeps it as unknown
    body = b"\x22\x03bad" + b"\x28\x63"
    msg = caffe_pb2.NetParameter.FromString(b"\x12" + bytes([len(body)]) + body)
    raises(msg, "layers[0] 'bad'", "unknown V1 layer type")


def test_v1_unknown_blob_share_mode():
    # layers { name: "c" type: CONVOLUTION blob_share_mode: 7 }
    body = b"\x22\x01c" + b"\x28\x04" + b"\xd0\x3e\x07"
    msg = caffe_pb2.NetParameter.FromString(b"\x12" + bytes([len(body)]) + body)
    raises(msg, "layers[0] 'c'", "blob_share_mode")


def test_mixed_layer_and_layers():
    raises("""layer { name: "a" type: "ReLU" }
              layers { name: "b" type: RELU }""", "'layer'", "'layers'")


def test_input_dim_count():
    raises('input: "a" input: "b" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4',
           "input_dim", "8 input_dim")
    raises('input: "a" input: "b" input_shape { dim: 1 }', "input_shape", "found 1")
