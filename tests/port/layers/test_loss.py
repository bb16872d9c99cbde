"""SoftmaxWithLoss, ArgMax and Accuracy: label checks, normalization and loss-weight rules,
and ties, where the oracle cases cannot show them.
"""
import numpy as np
import pytest
import torch

from fcn_port.port.formats.proto import caffe_pb2
from helpers import layer_fails, make_layer


def test_softmax_loss_label_checks():
    layer = make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" top: "loss"',
                       [(2, 3, 4), (2, 4)])
    assert layer.top_shapes([(2, 3, 4), (2, 1, 4)]) == [()]
    msg = layer_fails(r"label shape \(2, 5\) has 10", layer.top_shapes, [(2, 3, 4), (2, 5)])
    assert "'loss' (SoftmaxWithLoss)" in msg
    layer_fails("same first dimension", layer.top_shapes, [(2, 3, 4), (8,)])
    layer_fails(r"label value 3 is outside \[0, 3\)", layer, torch.zeros(2, 3, 4),
          torch.full((2, 4), 3.0))


def test_softmax_loss_rules_the_oracle_does_not_cover():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, requires_grad=True)
    ignored = torch.full((2, 4), 255.0)
    layer = make_layer('name: "l" type: "SoftmaxWithLoss" top: "loss" top: "prob" '
                       'loss_param { ignore_label: 255 normalization: VALID normalize: false }',
                       [(2, 3, 4), (2, 4)])
    assert layer.normalization == caffe_pb2.LossParameter.VALID   # normalization wins
    loss, prob = layer(x, ignored)
    assert loss.item() == 0 and torch.allclose(prob, torch.softmax(x, 1))
    assert not prob.requires_grad                               # the prob top passes no gradient
    loss.backward(torch.tensor(3.0))
    assert not x.grad.any()                                     # max(1, 0 valid) and no terms
    # loss weight scales the gradient; FLT_MIN clamp keeps the loss finite
    x2 = torch.tensor([[200.0, -200.0]], requires_grad=True)
    plain = make_layer('name: "l" type: "SoftmaxWithLoss" loss_param { normalization: NONE }',
                       [(1, 2), (1,)])
    loss = plain(x2, torch.tensor([1.0]))
    assert loss.item() == pytest.approx(-np.log(np.finfo(np.float32).tiny), rel=1e-6)
    loss.backward(torch.tensor(2.0))
    assert x2.grad.tolist() == [[2.0, -2.0]]
    legacy = make_layer('name: "l" type: "SoftmaxWithLoss" loss_param { normalize: true }',
                        [(1, 2), (1,)])
    assert legacy.normalization == caffe_pb2.LossParameter.VALID


def test_argmax_ties_and_shapes():
    x = torch.tensor([[[1.0, 3.0, 3.0, 0.0]]]).reshape(1, 4, 1, 1)
    am = make_layer('name: "a" type: "ArgMax" argmax_param { axis: 1 }', [(1, 4, 1, 1)])
    assert am(x).flatten().tolist() == [2.0]                   # the highest tied index
    top2 = make_layer('name: "a" type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }',
                      [(1, 4, 1, 1)])
    assert top2.top_shapes([(1, 4, 1, 1)]) == [(1, 2, 2, 1)]
    assert top2(x).flatten().tolist() == [2.0, 1.0, 3.0, 3.0]
    flat = make_layer('name: "a" type: "ArgMax"', [(2, 5)])
    assert flat.top_shapes([(2, 5)]) == [(2, 1, 1)]
    vals = make_layer('name: "a" type: "ArgMax" argmax_param { axis: 1 top_k: 2 out_max_val: true }',
                      [(1, 4, 1, 1)])
    assert vals(x).flatten().tolist() == [3.0, 3.0]
    layer_fails("top_k 5 is larger than axis 1", make_layer('name: "a" type: "ArgMax" argmax_param '
                '{ axis: 1 top_k: 5 }', [(1, 4)]).top_shapes, [(1, 4)])


def test_accuracy_top_k_ties_ignore_and_per_class():
    layer = make_layer('name: "acc" type: "Accuracy" top: "acc" top: "per_class" '
                       'accuracy_param { top_k: 1 ignore_label: -1 }', [(4, 3), (4,)])
    assert layer.top_shapes([(4, 3), (4,)]) == [(), (3,)]
    x = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [1.0, 0.0, 0.0]])
    label = torch.tensor([0.0, 0.0, 2.0, -1.0])
    acc, per = layer(x, label)
    assert acc.item() == pytest.approx(1 / 3)                  # the tie counts against class 0
    assert per.tolist() == [0.5, 0.0, 0.0]
    top2 = make_layer('name: "acc" type: "Accuracy" accuracy_param { top_k: 2 }', [(4, 3), (4,)])
    # row 2: two classes beat 0.1; row 3: class 2 ties with the true class 1 and counts
    assert top2(x, torch.tensor([0.0, 0.0, 2.0, 1.0])).item() == 0.5
    none = make_layer('name: "acc" type: "Accuracy" accuracy_param { ignore_label: 0 }', [(1, 3), (1,)])
    assert none(x[:1], torch.zeros(1)).item() == 0.0
