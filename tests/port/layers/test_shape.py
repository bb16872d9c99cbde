"""Concat, Reshape, Slice and Flatten: Caffe's shape rules and the errors naming layer and shapes.
"""
import torch
from helpers import layer_fails, make_layer


def test_concat_mismatch_names_layer_axis_and_shapes():
    layer = make_layer('name: "cat" type: "Concat" concat_param { axis: 1 }', [(2, 3, 4), (2, 5, 4)])
    assert layer.top_shapes([(2, 3, 4), (2, 5, 4)]) == [(2, 8, 4)]
    msg = layer_fails(r"except at axis 1: bottom\[0\] is \(2, 3, 4\), bottom\[1\] is \(2, 5, 6\)",
                      layer.top_shapes, [(2, 3, 4), (2, 5, 6)])
    assert "'cat' (Concat)" in msg
    layer_fails("same number of axes", layer.top_shapes, [(2, 3, 4), (2, 3)])
    layer_fails("axis 3 is out of range for a 3-D bottom", make_layer('name: "c" type: "Concat" '
                'concat_param { axis: 3 }', [(1, 1, 1)]).top_shapes, [(1, 1, 1)])
    layer_fails("not both", make_layer, 'name: "c" type: "Concat" concat_param { axis: 1 concat_dim: 1 }',
                [(1, 1)])
    legacy = make_layer('name: "c" type: "Concat" concat_param { concat_dim: 0 }', [(1, 2), (3, 2)])
    assert legacy.top_shapes([(1, 2), (3, 2)]) == [(4, 2)]


def test_reshape_rules_and_errors():
    def shape(param, bottom):
        layer = make_layer(f'name: "r" type: "Reshape" reshape_param {{ {param} }}', [bottom])
        return layer.top_shapes([bottom])[0]

    assert shape("shape { dim: 0 dim: -1 dim: 2 }", (2, 4, 3, 2)) == (2, 12, 2)
    assert shape("shape { dim: -1 }", (2, 3, 4)) == (24,)
    assert shape("shape { dim: 2 dim: 2 } axis: 1 num_axes: 1", (3, 4, 5)) == (3, 2, 2, 5)
    assert shape("shape { dim: 1 } axis: -1 num_axes: 0", (3, 4)) == (3, 4, 1)
    assert shape("shape { dim: 0 dim: 0 dim: -1 } axis: 0 num_axes: 2", (2, 3, 4)) == (2, 3, 1, 4)
    assert shape("shape { } axis: 1 num_axes: 1", (3, 1, 4)) == (3, 4)
    msg = layer_fails(r"cannot infer the -1 in shape \[-1, 5\]: bottom count 24", shape,
                      "shape { dim: -1 dim: 5 }", (2, 3, 4))
    assert "'r' (Reshape)" in msg
    layer_fails("more than one -1", shape, "shape { dim: -1 dim: -1 }", (2, 3))
    layer_fails("output count must match input count", shape, "shape { dim: 5 }", (2, 3))
    layer_fails("no axis 2 to copy", shape, "shape { dim: 0 dim: 0 dim: 0 }", (2, 3))
    layer_fails("axis 3 out of range", shape, "shape { dim: 1 } axis: 3", (2, 3))


def test_slice_and_flatten():
    layer = make_layer('name: "s" type: "Slice" top: "a" top: "b" top: "c" '
                       'slice_param { axis: 1 slice_point: 1 slice_point: 3 }', [(2, 5)])
    assert layer.top_shapes([(2, 5)]) == [(2, 1), (2, 2), (2, 2)]
    x = torch.arange(10.0).reshape(2, 5)
    a, b, c = layer(x)
    assert torch.equal(torch.cat([a, b, c], 1), x)
    layer_fails("strictly increasing", make_layer('name: "s" type: "Slice" top: "a" top: "b" top: "c" '
                'slice_param { slice_point: 3 slice_point: 2 }', [(2, 5)]).top_shapes, [(2, 5)])
    layer_fails("2 slice_point for 2 tops", make_layer('name: "s" type: "Slice" top: "a" top: "b" '
                'slice_param { slice_point: 1 slice_point: 2 }', [(2, 5)]).top_shapes, [(2, 5)])
    even = make_layer('name: "s" type: "Slice" top: "a" top: "b" slice_param { slice_dim: 1 }',
                      [(2, 6)])
    assert even.top_shapes([(2, 6)]) == [(2, 3), (2, 3)]
    layer_fails(r"2 tops do not evenly divide axis 1 \(5\)", even.top_shapes, [(2, 5)])
    flat = make_layer('name: "f" type: "Flatten" flatten_param { axis: 1 end_axis: 2 }', [(2, 3, 4, 5)])
    assert flat.top_shapes([(2, 3, 4, 5)]) == [(2, 12, 5)]
    assert flat(torch.zeros(2, 3, 4, 5)).shape == (2, 12, 5)
