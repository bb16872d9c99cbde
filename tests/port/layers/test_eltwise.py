"""Eltwise: Caffe's shape and setting checks, and MAX's gradient routing on ties.
"""

import torch
from helpers import layer_fails, make_layer


def test_eltwise_shape_mismatch_names_layer_and_shapes():
    layer = make_layer('name: "fuse" type: "Eltwise" bottom: "a" bottom: "b" top: "c"',
                       [(1, 2, 3, 4), (1, 2, 3, 4)])
    msg = layer_fails(r"bottom\[1\] is \(1, 2, 3, 5\)", layer.top_shapes, [(1, 2, 3, 4), (1, 2, 3, 5)])
    assert "'fuse' (Eltwise)" in msg and "(1, 2, 3, 4)" in msg


def test_eltwise_setting_errors():
    layer_fails("one coefficient per bottom: 1 coeff for 2 bottoms", make_layer,
                'name: "e" type: "Eltwise" eltwise_param { coeff: 1 }', [(2,), (2,)])
    layer_fails("only allowed with operation SUM", make_layer,
                'name: "e" type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 2 }',
                [(2,), (2,)])
    layer_fails("at least 2 bottoms, got 1", make_layer, 'name: "e" type: "Eltwise"', [(2,)])


def test_eltwise_max_routes_gradient_like_caffe_on_ties():
    layer = make_layer('name: "m" type: "Eltwise" eltwise_param { operation: MAX }', [(3,)] * 3)
    a = torch.tensor([1.0, 2.0, 5.0], requires_grad=True)
    b = torch.tensor([1.0, 0.0, 5.0], requires_grad=True)
    c = torch.tensor([0.0, 2.0, 5.0], requires_grad=True)
    y = layer(a, b, c)
    y.backward(torch.tensor([1.0, 10.0, 100.0]))
    # a == b: b wins; a == c above b: a wins; all equal: b wins
    assert a.grad.tolist() == [0, 10, 0]
    assert b.grad.tolist() == [1, 0, 100]
    assert c.grad.tolist() == [0, 0, 0]
