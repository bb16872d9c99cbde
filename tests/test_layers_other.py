"""Neuron, Eltwise, loss/Softmax/Accuracy/ArgMax, LRN/BatchNorm/Scale/Bias, InnerProduct, shape
and data layers against real Caffe, plus Caffe's error checks and rules the oracle cannot show.

Each oracle layer is built alone from the case's (upgraded) LayerParameter and fed the bottoms
Caffe itself had (``input/<blob>`` for net inputs, else the recorded top of the layer that wrote
that blob last), so every comparison isolates one layer.
"""
import json

import numpy as np
import pytest
import torch

from conftest import case_params
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.port.layers import LayerError, lookup
from fcn_port.port.layers import types as layer_types
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import parse_text, read_net

MY_TYPES = {
    "ReLU", "Sigmoid", "TanH", "Power", "AbsVal", "BNLL", "Exp", "Log", "Dropout", "Threshold",
    "ELU", "Clip", "Swish", "Eltwise", "Softmax", "SoftmaxWithLoss", "Accuracy", "ArgMax", "LRN",
    "BatchNorm", "Scale", "Bias", "InnerProduct", "Concat", "Slice", "Split", "Flatten",
    "Reshape", "Input", "DummyData", "Silence",
}
TOL = 1e-5


def err(ours, caffe):
    ours = ours.detach().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    caffe = np.asarray(caffe)
    if caffe.size == 0:
        return 0.0
    return float(np.abs(ours.astype(np.float64) - caffe).max() / max(1.0, np.abs(caffe).max()))


def load_case(case):
    net, _ = read_net(case / "net.prototxt")
    meta = json.loads((case / "case.json").read_text())
    blobs = np.load(case / "blobs.npz")
    weights = read_weights(case / "weights.caffemodel").params
    return net, meta, blobs, weights


def layer_runs(case, types=MY_TYPES):
    """For each layer of ``types`` Caffe instantiated: (entry, layer, bottoms fed, Caffe's tops)."""
    net, meta, blobs, weights = load_case(case)
    lps = {lp.name: lp for lp in net.layer}
    source = {}                         # blob name -> npz key of the value Caffe had last
    for entry in meta["layers"]:
        name, kind = entry["name"], entry["type"]
        if kind == "Input":
            fed = [f"input/{t}" for t in entry["tops"]]
        else:
            fed = [source[b] for b in entry["bottoms"]]
        if kind in types:
            lp = lps.get(name)
            if lp is None:              # a Split Caffe inserted
                lp = caffe_pb2.LayerParameter(name=name, type=kind, bottom=entry["bottoms"],
                                              top=entry["tops"])
            bottoms = [torch.from_numpy(np.array(blobs[k])) for k in fed]
            source_layer = getattr(layer_types()[kind], "is_source", False)
            shapes = [] if source_layer else [tuple(b.shape) for b in bottoms]
            layer = layer_types()[kind](lp, shapes, meta["phase"])
            for i, w in enumerate(weights.get(name, [])):
                assert tuple(layer.blob(i).shape) == w.shape, (name, i)
                with torch.no_grad():
                    layer.blob(i).copy_(torch.from_numpy(np.array(w)))
            tops = [np.array(blobs[f"top/{name}/{i}"]) for i in range(len(entry["tops"]))]
            yield entry, layer, bottoms, tops
        for i, t in enumerate(entry["tops"]):
            source[t] = f"top/{name}/{i}"


def only_mine(group):
    out = []
    for p in case_params(group):
        meta = json.loads((p.values[0] / "case.json").read_text())
        if {l["type"] for l in meta["layers"]} <= MY_TYPES:
            out.append(p)
    return out


MINE = only_mine("layers")
FCN = case_params("fcn")


def run(layer, bottoms):
    out = layer(*bottoms)
    return list(out) if isinstance(out, tuple) else [out]


def test_every_my_type_case_is_found():
    names = {p.values[0].name for p in MINE}
    assert {"argmax_accuracy", "batchnorm_scale", "dropout_test", "eltwise", "lrn", "neurons",
            "shapes", "softmax_loss_valid"} <= names


@pytest.mark.parametrize("case", MINE)
def test_layers_match_caffe_forward(case):
    seen = 0
    for entry, layer, bottoms, tops in layer_runs(case):
        fed = [] if getattr(layer, "is_source", False) else bottoms
        shapes = layer.top_shapes([tuple(b.shape) for b in fed])
        assert [tuple(s) for s in shapes] == [t.shape for t in tops], entry["name"]
        ours = run(layer, bottoms)
        assert len(ours) == len(tops), entry["name"]
        for i, (o, t) in enumerate(zip(ours, tops)):
            assert tuple(o.shape) == t.shape, (entry["name"], i)
            assert err(o, t) <= TOL, (entry["name"], i, err(o, t))
        seen += 1
    assert seen == len(json.loads((case / "case.json").read_text())["layers"])


@pytest.mark.parametrize("case", [p for p in MINE if p.values[0].name.startswith("softmax_loss")])
def test_softmax_loss_backward_matches_caffe(case):
    blobs = np.load(case / "blobs.npz")
    meta = json.loads((case / "case.json").read_text())
    assert meta["backward"]
    runs = [r for r in layer_runs(case, {"SoftmaxWithLoss"})]
    assert len(runs) == 1
    entry, layer, (data, label), (loss_caffe,) = runs[0]
    data.requires_grad_(True)
    label.requires_grad_(True)
    loss = layer(data, label)
    assert err(loss, loss_caffe) <= TOL
    assert err(loss, meta["losses"]["loss"]) <= TOL
    weight = layer.lp.loss_weight[0] if len(layer.lp.loss_weight) else 1.0
    loss.backward(torch.tensor(weight))
    assert err(data.grad, blobs["diff/data"]) <= TOL, err(data.grad, blobs["diff/data"])
    assert label.grad is None or not label.grad.any()
    assert not np.any(blobs["diff/label"])


@pytest.mark.parametrize("case", FCN)
def test_my_layers_inside_the_fcn_nets_match_caffe(case):
    for entry, layer, bottoms, tops in layer_runs(case):
        ours = run(layer, bottoms)
        for i, (o, t) in enumerate(zip(ours, tops)):
            assert err(o, t) <= TOL, (entry["name"], i, err(o, t))


# ---------------------------------------------------------------------------- helpers for units

def make(text, bottom_shapes, phase="TEST"):
    lp, _ = parse_text(text, caffe_pb2.LayerParameter)
    if not lp.top and lp.type != "Silence":
        lp.top.append(lp.name)
    return lookup(lp)(lp, [tuple(s) for s in bottom_shapes], phase)


def fails(match, fn, *args):
    with pytest.raises(LayerError, match=match) as info:
        fn(*args)
    return str(info.value)


# ------------------------------------------------------------------------------ error messages

def test_eltwise_shape_mismatch_names_layer_and_shapes():
    layer = make('name: "fuse" type: "Eltwise" bottom: "a" bottom: "b" top: "c"',
                 [(1, 2, 3, 4), (1, 2, 3, 4)])
    msg = fails(r"bottom\[1\] is \(1, 2, 3, 5\)", layer.top_shapes, [(1, 2, 3, 4), (1, 2, 3, 5)])
    assert "'fuse' (Eltwise)" in msg and "(1, 2, 3, 4)" in msg


def test_eltwise_setting_errors():
    fails("one coefficient per bottom: 1 coeff for 2 bottoms", make,
          'name: "e" type: "Eltwise" eltwise_param { coeff: 1 }', [(2,), (2,)])
    fails("only allowed with operation SUM", make,
          'name: "e" type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 2 }',
          [(2,), (2,)])
    fails("at least 2 bottoms, got 1", make, 'name: "e" type: "Eltwise"', [(2,)])


def test_concat_mismatch_names_layer_axis_and_shapes():
    layer = make('name: "cat" type: "Concat" concat_param { axis: 1 }', [(2, 3, 4), (2, 5, 4)])
    assert layer.top_shapes([(2, 3, 4), (2, 5, 4)]) == [(2, 8, 4)]
    msg = fails(r"except at axis 1: bottom\[0\] is \(2, 3, 4\), bottom\[1\] is \(2, 5, 6\)",
                layer.top_shapes, [(2, 3, 4), (2, 5, 6)])
    assert "'cat' (Concat)" in msg
    fails("same number of axes", layer.top_shapes, [(2, 3, 4), (2, 3)])
    fails("axis 3 is out of range for a 3-D bottom", make('name: "c" type: "Concat" '
          'concat_param { axis: 3 }', [(1, 1, 1)]).top_shapes, [(1, 1, 1)])
    fails("not both", make, 'name: "c" type: "Concat" concat_param { axis: 1 concat_dim: 1 }',
          [(1, 1)])
    legacy = make('name: "c" type: "Concat" concat_param { concat_dim: 0 }', [(1, 2), (3, 2)])
    assert legacy.top_shapes([(1, 2), (3, 2)]) == [(4, 2)]


def test_reshape_rules_and_errors():
    def shape(param, bottom):
        layer = make(f'name: "r" type: "Reshape" reshape_param {{ {param} }}', [bottom])
        return layer.top_shapes([bottom])[0]

    assert shape("shape { dim: 0 dim: -1 dim: 2 }", (2, 4, 3, 2)) == (2, 12, 2)
    assert shape("shape { dim: -1 }", (2, 3, 4)) == (24,)
    assert shape("shape { dim: 2 dim: 2 } axis: 1 num_axes: 1", (3, 4, 5)) == (3, 2, 2, 5)
    assert shape("shape { dim: 1 } axis: -1 num_axes: 0", (3, 4)) == (3, 4, 1)
    assert shape("shape { dim: 0 dim: 0 dim: -1 } axis: 0 num_axes: 2", (2, 3, 4)) == (2, 3, 1, 4)
    assert shape("shape { } axis: 1 num_axes: 1", (3, 1, 4)) == (3, 4)
    msg = fails(r"cannot infer the -1 in shape \[-1, 5\]: bottom count 24", shape,
                "shape { dim: -1 dim: 5 }", (2, 3, 4))
    assert "'r' (Reshape)" in msg
    fails("more than one -1", shape, "shape { dim: -1 dim: -1 }", (2, 3))
    fails("output count must match input count", shape, "shape { dim: 5 }", (2, 3))
    fails("no axis 2 to copy", shape, "shape { dim: 0 dim: 0 dim: 0 }", (2, 3))
    fails("axis 3 out of range", shape, "shape { dim: 1 } axis: 3", (2, 3))


def test_slice_and_flatten():
    layer = make('name: "s" type: "Slice" top: "a" top: "b" top: "c" '
                 'slice_param { axis: 1 slice_point: 1 slice_point: 3 }', [(2, 5)])
    assert layer.top_shapes([(2, 5)]) == [(2, 1), (2, 2), (2, 2)]
    x = torch.arange(10.0).reshape(2, 5)
    a, b, c = layer(x)
    assert torch.equal(torch.cat([a, b, c], 1), x)
    fails("strictly increasing", make('name: "s" type: "Slice" top: "a" top: "b" top: "c" '
          'slice_param { slice_point: 3 slice_point: 2 }', [(2, 5)]).top_shapes, [(2, 5)])
    fails("2 slice_point for 2 tops", make('name: "s" type: "Slice" top: "a" top: "b" '
          'slice_param { slice_point: 1 slice_point: 2 }', [(2, 5)]).top_shapes, [(2, 5)])
    even = make('name: "s" type: "Slice" top: "a" top: "b" slice_param { slice_dim: 1 }',
                [(2, 6)])
    assert even.top_shapes([(2, 6)]) == [(2, 3), (2, 3)]
    fails(r"2 tops do not evenly divide axis 1 \(5\)", even.top_shapes, [(2, 5)])
    flat = make('name: "f" type: "Flatten" flatten_param { axis: 1 end_axis: 2 }', [(2, 3, 4, 5)])
    assert flat.top_shapes([(2, 3, 4, 5)]) == [(2, 12, 5)]
    assert flat(torch.zeros(2, 3, 4, 5)).shape == (2, 12, 5)


def test_inner_product_size_and_axis():
    layer = make('name: "fc" type: "InnerProduct" inner_product_param { num_output: 3 axis: 2 '
                 'weight_filler { type: "gaussian" } bias_filler { type: "constant" value: 0.5 } }',
                 [(2, 4, 5, 6)])
    assert layer.blob(0).shape == (3, 30) and torch.all(layer.blob(1) == 0.5)
    assert layer.top_shapes([(2, 4, 5, 6)]) == [(2, 4, 3)]
    x = torch.randn(2, 4, 5, 6)
    want = x.reshape(8, 30) @ layer.blob(0).T + layer.blob(1)
    assert torch.allclose(layer(x), want.reshape(2, 4, 3), atol=1e-5)
    msg = fails(r"bottom \(2, 4, 5, 7\) has 35 values from axis 2, the layer was set up for 30",
                layer.top_shapes, [(2, 4, 5, 7)])
    assert "'fc' (InnerProduct)" in msg


def test_scale_bias_shapes_and_errors():
    layer = make('name: "sc" type: "Scale" scale_param { axis: 1 num_axes: 2 bias_term: true '
                 'bias_filler { type: "constant" value: 2 } }', [(2, 3, 4, 5)])
    assert layer.blob(0).shape == (3, 4) and torch.all(layer.blob(0) == 1)
    assert layer.blob(1).shape == (3, 4) and torch.all(layer.blob(1) == 2)
    with torch.no_grad():
        layer.blob(0).copy_(torch.arange(12.0).reshape(3, 4))
    x = torch.randn(2, 3, 4, 5)
    assert torch.allclose(layer(x), x * torch.arange(12.0).reshape(1, 3, 4, 1) + 2)
    fails(r"bottom\[0\] shape \(2, 3, 6, 5\) \(axis 2: 6\) and scale shape \(3, 4\)",
          layer.top_shapes, [(2, 3, 6, 5)])
    # scale as a second bottom, bias blob shaped like it
    two = make('name: "s2" type: "Scale" scale_param { axis: 0 bias_term: true }',
               [(2, 3, 4), (2, 3)])
    assert two.n_blobs == 1 and two.blob(0).shape == (2, 3)
    s = torch.randn(2, 3)
    assert torch.allclose(two(x[:, :, :, 0].reshape(2, 3, 4), s)[..., 0],
                          x[:, :, 0, 0] * s)
    scalar = make('name: "s0" type: "Scale" scale_param { num_axes: 0 }', [(2, 3)])
    assert scalar.blob(0).shape == ()
    bias = make('name: "b" type: "Bias" bias_param { axis: -1 num_axes: 1 }', [(2, 3)])
    assert bias.blob(0).shape == (3,)
    fails("extends past", make, 'name: "b" type: "Bias" bias_param { axis: 1 num_axes: 3 }',
          [(2, 3)])


def test_softmax_loss_label_checks():
    layer = make('name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" top: "loss"',
                 [(2, 3, 4), (2, 4)])
    assert layer.top_shapes([(2, 3, 4), (2, 1, 4)]) == [()]
    msg = fails(r"label shape \(2, 5\) has 10", layer.top_shapes, [(2, 3, 4), (2, 5)])
    assert "'loss' (SoftmaxWithLoss)" in msg
    fails("same first dimension", layer.top_shapes, [(2, 3, 4), (8,)])
    fails(r"label value 3 is outside \[0, 3\)", layer, torch.zeros(2, 3, 4),
          torch.full((2, 4), 3.0))
