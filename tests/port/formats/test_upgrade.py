"""Caffe's on-load net upgrades (port/formats/upgrade.py, upgrade_v0.py) and the solver
upgrades (``solver_type`` -> ``type``, snapshot prefixes); refusals are in
test_upgrade_refusals.py.

The expected messages below are written by hand from what BVLC Caffe master's
upgrade_proto.cpp does, never from this module's output.
"""
import json

from google.protobuf import text_format
import pytest

from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.upgrade import V1_PARAM_MESSAGES, net_needs_upgrade, upgrade_net
from fcn_port.port.errors import CaffeFormatError
from fcn_port.port.formats.upgrade import upgrade_snapshot_prefix, upgrade_solver
from helpers import ORACLE


V1_LEGACY = ORACLE / "formats" / "v1_legacy"


def net(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def assert_upgrades_to(source, expected):
    got, want = net(source), net(expected)
    notes = upgrade_net(got)
    assert text_format.MessageToString(got) == text_format.MessageToString(want)
    assert got == want
    assert not net_needs_upgrade(got)
    return notes


def test_v1_legacy_matches_real_caffe():
    case = json.loads((V1_LEGACY / "case.json").read_text())
    msg = net((V1_LEGACY / "net.prototxt").read_text())
    assert net_needs_upgrade(msg)
    notes = upgrade_net(msg, path=str(V1_LEGACY / "net.prototxt"))

    assert len(msg.layers) == 0 and len(msg.input) == 0 and len(msg.input_dim) == 0
    got = [{"name": l.name, "type": l.type, "bottoms": list(l.bottom), "tops": list(l.top)}
           for l in msg.layer]
    assert got == case["layers"]
    assert list(msg.layer[0].input_param.shape[0].dim) == [1, 3, 19, 23]
    conv1 = msg.layer[1]
    assert [(p.lr_mult, p.decay_mult) for p in conv1.param] == [(1, 1), (2, 0)]
    assert all(len(l.param) == 0 for l in msg.layer if l.name != "conv1")
    assert conv1.convolution_param.num_output == 5
    assert list(conv1.convolution_param.pad) == [100]
    assert "V1 layers -> V2 layer (5 layers)" in notes
    assert "input/input_dim -> Input layer 'input' (data)" in notes
    assert "blobs_lr -> param.lr_mult on conv1" in notes
    assert "weight_decay -> param.decay_mult on conv1" in notes


V0_NET = """
name: "v0net"
layers {
  layer { name: "data" type: "data" source: "train_lmdb" batchsize: 64 rand_skip: 10
          scale: 0.00390625 meanfile: "mean.binaryproto" cropsize: 227 mirror: true }
  top: "data" top: "label"
}
layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers {
  layer { name: "conv1" type: "conv" num_output: 16 kernelsize: 5 stride: 1 group: 2
          biasterm: false weight_filler { type: "gaussian" std: 0.01 }
          blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 }
  bottom: "pad1" top: "conv1"
}
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pad2" type: "padding" pad: 1 } bottom: "conv1" top: "pad2" }
layers {
  layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 2 }
  bottom: "pad2" top: "pool1"
}
layers {
  layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.0001 beta: 0.75 k: 2 }
  bottom: "pool1" top: "norm1"
}
layers {
  layer { name: "fc" type: "innerproduct" num_output: 10
          bias_filler { type: "constant" value: 0.1 } }
  bottom: "norm1" top: "fc"
}
layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.3 } bottom: "fc" top: "fc" }
layers { layer { name: "loss" type: "softmax_loss" } bottom: "fc" bottom: "label" top: "loss" }
"""


V0_NET_V2 = """
name: "v0net"
layer {
  name: "data" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.00390625 mean_file: "mean.binaryproto" crop_size: 227 mirror: true }
  data_param { source: "train_lmdb" batch_size: 64 rand_skip: 10 }
}
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 }
  param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 16 bias_term: false pad: 2 kernel_size: 5 group: 2 stride: 1
                      weight_filler { type: "gaussian" std: 0.01 } }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer {
  name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }
}
layer {
  name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
  lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 k: 2 }
}
layer {
  name: "fc" type: "InnerProduct" bottom: "norm1" top: "fc"
  inner_product_param { num_output: 10 bias_filler { type: "constant" value: 0.1 } }
}
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def test_v0_net_with_padding_and_data_fields():
    notes = assert_upgrades_to(V0_NET, V0_NET_V2)
    assert notes[0] == "V0 layers -> V1 layers (8 layers)"
    assert "V0 padding layers folded into conv/pool pad (2 layers)" in notes
    assert "V1 layers -> V2 layer (8 layers)" in notes


def test_v0_net_with_inputs_blobs_and_dropped_fields():
    notes = assert_upgrades_to("""
        name: "v0in"
        input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
        layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "padded" }
        layers {
          layer { name: "conv" type: "conv" num_output: 4 kernelsize: 3 pad: 7
                  blobs { shape { dim: 2 } data: 1 data: 2 } }
          bottom: "padded" top: "conv"
        }
        layers { layer { name: "relu" type: "relu" num_output: 3 new_num: 2 }
                 bottom: "conv" top: "conv" }
        """, """
        name: "v0in"
        layer { name: "input" type: "Input" top: "data"
                input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                blobs { shape { dim: 2 } data: 1 data: 2 }
                convolution_param { num_output: 4 pad: 1 kernel_size: 3 } }
        layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
        """)
    # the padding layer's pad replaces the conv's own; unusable fields are reported
    assert any("num_output" in n and "'relu'" in n for n in notes)
    assert any("new_num" in n for n in notes)


def test_v0_other_types_and_net_fields():
    assert_upgrades_to("""
        name: "v0misc"
        force_backward: true
        state { phase: TEST }
        layers { layer { name: "win" type: "window_data" source: "w.txt" batchsize: 8
                         det_fg_threshold: 0.6 det_bg_threshold: 0.4 det_fg_fraction: 0.3
                         det_context_pad: 16 det_crop_mode: "square" mirror: true }
                 top: "win" top: "label" }
        layers { layer { name: "img" type: "images" source: "list.txt" batchsize: 2
                         shuffle_images: true new_height: 10 new_width: 12 rand_skip: 3 }
                 top: "img" top: "l2" }
        layers { layer { name: "cat" type: "concat" concat_dim: 0 }
                 bottom: "win" bottom: "img" top: "cat" }
        layers { layer { name: "out" type: "hdf5_output"
                         hdf5_output_param { file_name: "out.h5" } } bottom: "cat" }
        layers { layer { name: "ig" type: "infogain_loss" source: "H.binaryproto" }
                 bottom: "cat" bottom: "label" }
        """, """
        name: "v0misc"
        force_backward: true
        layer { name: "win" type: "WindowData" top: "win" top: "label"
                transform_param { mirror: true }
                window_data_param { source: "w.txt" batch_size: 8 fg_threshold: 0.6
                                    bg_threshold: 0.4 fg_fraction: 0.3 context_pad: 16
                                    crop_mode: "square" } }
        layer { name: "img" type: "ImageData" top: "img" top: "l2"
                image_data_param { source: "list.txt" batch_size: 2 shuffle: true
                                   new_height: 10 new_width: 12 rand_skip: 3 } }
        layer { name: "cat" type: "Concat" bottom: "win" bottom: "img" top: "cat"
                concat_param { concat_dim: 0 } }
        layer { name: "out" type: "HDF5Output" bottom: "cat"
                hdf5_output_param { file_name: "out.h5" } }
        layer { name: "ig" type: "InfogainLoss" bottom: "cat" bottom: "label"
                infogain_loss_param { source: "H.binaryproto" } }
        """)  # V0 keeps only name, layers, input, input_dim, force_backward: `state` goes


def test_v1_net_all_features():
    notes = assert_upgrades_to("""
        name: "v1"
        force_backward: true
        state { phase: TEST }
        layers { name: "data" type: DATA top: "data" top: "label" include { phase: TRAIN }
                 data_param { source: "db" batch_size: 4 scale: 0.5 mean_file: "m.binaryproto"
                              crop_size: 10 mirror: true } }
        layers { name: "data" type: DATA top: "data" top: "label" include { phase: TEST } }
        layers { name: "img" type: IMAGE_DATA top: "img" top: "lab2"
                 image_data_param { source: "list.txt" mirror: false } }
        layers { name: "win" type: WINDOW_DATA top: "win" top: "lab3"
                 window_data_param { source: "w.txt" crop_size: 5 } transform_param { scale: 2 } }
        layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
                 param: "w" param: "b" blob_share_mode: PERMISSIVE
                 blobs_lr: 1 weight_decay: 1 weight_decay: 0
                 blobs { shape { dim: 2 } data: 0.5 data: -0.5 }
                 convolution_param { num_output: 2 kernel_size: 1 } }
        layers { name: "deconv" type: DECONVOLUTION bottom: "conv" top: "up"
                 exclude { stage: "deploy" }
                 convolution_param { num_output: 2 kernel_size: 4 stride: 2 } }
        layers { name: "loss" type: SOFTMAX_LOSS bottom: "up" bottom: "label" top: "loss"
                 loss_weight: 2 loss_param { ignore_label: 255 normalize: false } }
        layers { name: "silence" type: SILENCE bottom: "lab2" bottom: "lab3" }
        layers { name: "untyped" bottom: "loss" }
        layers { name: "none" type: NONE }
        """, """
        name: "v1"
        force_backward: true
        state { phase: TEST }
        layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
                transform_param { scale: 0.5 mean_file: "m.binaryproto" crop_size: 10
                                  mirror: true }
                data_param { source: "db" batch_size: 4 } }
        layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
                transform_param { } data_param { } }
        layer { name: "img" type: "ImageData" top: "img" top: "lab2"
                transform_param { mirror: false } image_data_param { source: "list.txt" } }
        layer { name: "win" type: "WindowData" top: "win" top: "lab3"
                transform_param { scale: 2 crop_size: 5 } window_data_param { source: "w.txt" } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                param { name: "w" share_mode: PERMISSIVE lr_mult: 1 decay_mult: 1 }
                param { name: "b" decay_mult: 0 }
                blobs { shape { dim: 2 } data: 0.5 data: -0.5 }
                convolution_param { num_output: 2 kernel_size: 1 } }
        layer { name: "deconv" type: "Deconvolution" bottom: "conv" top: "up"
                exclude { stage: "deploy" }
                convolution_param { num_output: 2 kernel_size: 4 stride: 2 } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "up" bottom: "label" top: "loss"
                loss_weight: 2 loss_param { ignore_label: 255 normalize: false } }
        layer { name: "silence" type: "Silence" bottom: "lab2" bottom: "lab3" }
        layer { name: "untyped" bottom: "loss" }
        layer { name: "none" type: "" }
        """)
    assert notes[0] == "data_param.{scale, mean_file, crop_size, mirror} -> transform_param on data"
    assert "V1 layers -> V2 layer (10 layers)" in notes
    assert "param -> param.name on conv" in notes
    assert "blob_share_mode -> param.share_mode on conv" in notes


def test_v1_copies_every_param_message():
    v1_messages = {f.name for f in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields
                   if f.message_type is not None} - {"include", "exclude", "blobs", "layer"}
    assert set(V1_PARAM_MESSAGES) == v1_messages
    v2_fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert all(name in v2_fields for name in V1_PARAM_MESSAGES)


def test_current_net_is_left_alone():
    text = 'name: "n" layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }'
    msg = net(text)
    assert not net_needs_upgrade(msg)
    assert upgrade_net(msg) == []
    assert msg == net(text)


def test_input_shape_becomes_input_layer():
    notes = assert_upgrades_to("""
        input: "a" input_shape { dim: 2 dim: 3 }
        input: "b" input_shape { dim: 4 }
        input_dim: 9
        layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "s" }
        """, """
        layer { name: "input" type: "Input" top: "a" top: "b"
                input_param { shape { dim: 2 dim: 3 } shape { dim: 4 } } }
        layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "s" }
        """)  # input_shape wins over input_dim, and both are cleared
    assert notes == ["input/input_shape -> Input layer 'input' (a, b)"]


def test_input_dim_two_inputs():
    assert_upgrades_to("""
        input: "a" input: "b"
        input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4
        input_dim: 5 input_dim: 6 input_dim: 7 input_dim: 8
        layer { name: "x" type: "Concat" bottom: "a" bottom: "b" top: "x" }
        layer { name: "y" type: "ReLU" bottom: "x" top: "x" }
        """, """
        layer { name: "input" type: "Input" top: "a" top: "b"
                input_param { shape { dim: 1 dim: 2 dim: 3 dim: 4 }
                              shape { dim: 5 dim: 6 dim: 7 dim: 8 } } }
        layer { name: "x" type: "Concat" bottom: "a" bottom: "b" top: "x" }
        layer { name: "y" type: "ReLU" bottom: "x" top: "x" }
        """)


def test_input_without_shape_is_only_cleared():
    assert_upgrades_to('input: "data" layer { name: "r" type: "ReLU" bottom: "data" top: "r" }',
                       'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')


def test_batchnorm_with_three_param_specs():
    notes = assert_upgrades_to("""
        layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
                param { lr_mult: 1 } param { name: "var" lr_mult: 1 decay_mult: 1 } param { } }
        layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" param { lr_mult: 1 } }
        """, """
        layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
                param { lr_mult: 0 decay_mult: 0 }
                param { name: "var" lr_mult: 0 decay_mult: 0 }
                param { lr_mult: 0 decay_mult: 0 } }
        layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" param { lr_mult: 1 } }
        """)  # Caffe master only touches BatchNorm layers with exactly 3 specs
    assert notes == ["BatchNorm bn: 3 param specs -> lr_mult/decay_mult 0"]


def test_v0_net_keeps_only_bottom_top_of_a_v1_layer():
    # Caffe's V0 upgrade rebuilds every layer from its nested V0 `layer`; one without it
    # keeps nothing but its bottoms and tops.
    notes = assert_upgrades_to("""
        input: "x"
        layers { layer { name: "a" type: "relu" } bottom: "x" top: "y" }
        layers { name: "plain" type: RELU bottom: "y" top: "z" }
        """, """
        layer { name: "a" type: "ReLU" bottom: "x" top: "y" }
        layer { bottom: "y" top: "z" }
        """)
    assert any("'plain'" in n for n in notes)


@pytest.mark.parametrize("old,new", [("SGD", "SGD"), ("NESTEROV", "Nesterov"),
                                     ("ADAGRAD", "AdaGrad"), ("RMSPROP", "RMSProp"),
                                     ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_solver_type(old, new):
    solver = text_format.Parse(f"base_lr: 0.01 solver_type: {old}", caffe_pb2.SolverParameter())
    assert upgrade_solver(solver) == [f"solver_type {old} -> type '{new}'"]
    assert solver == text_format.Parse(f'base_lr: 0.01 type: "{new}"', caffe_pb2.SolverParameter())


def test_solver_current_and_conflicting():
    solver = text_format.Parse('type: "Adam"', caffe_pb2.SolverParameter())
    assert upgrade_solver(solver) == [] and solver.type == "Adam"
    both = text_format.Parse('type: "SGD" solver_type: SGD', caffe_pb2.SolverParameter())
    with pytest.raises(CaffeFormatError, match="cannot both be specified"):
        upgrade_solver(both, path="solver.prototxt")


def test_snapshot_prefix(tmp_path):
    solver = caffe_pb2.SolverParameter()
    upgrade_snapshot_prefix(solver, "models/fcn/solver.prototxt")
    assert solver.snapshot_prefix == "models/fcn/solver"
    solver.snapshot_prefix = str(tmp_path)
    upgrade_snapshot_prefix(solver, "models/fcn/solver.prototxt")
    assert solver.snapshot_prefix == str(tmp_path / "solver")
    assert upgrade_snapshot_prefix(solver, "models/fcn/solver.prototxt") == []
