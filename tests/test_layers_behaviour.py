"""Caffe rules of the non-vision layers that the oracle cases cannot show: Dropout's mask and
scale, gradient routing on ties, ArgMax/Accuracy ties, SoftmaxWithLoss corner cases, BatchNorm
statistics, LRN's divisor, neuron gradients at the edges, data layers."""
import numpy as np
import pytest
import torch

from fcn_port.port.formats.proto import caffe_pb2
from test_layers_other import fails, make

def test_dropout_train_is_elementwise_inverted_and_test_is_identity():
    torch.manual_seed(0)
    layer = make('name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.3 }',
                 [(8, 16, 32, 32)], "TRAIN")
    x = torch.rand(8, 16, 32, 32) + 1
    x.requires_grad_(True)
    y = layer(x)
    kept = y != 0
    frac = kept.float().mean().item()
    assert abs(frac - 0.7) < 0.01                              # keep probability 1 - ratio
    scale = np.float32(1 / (1 - np.float32(0.3)))
    assert torch.equal(y[kept], x[kept] * scale)              # inverted scaling
    per_channel = kept.float().mean((2, 3))                    # not channel-wise
    assert ((per_channel > 0) & (per_channel < 1)).all()
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, kept.float() * scale)           # gradient through the same mask
    assert not torch.equal(layer(x), y)                        # a fresh mask each forward
    test = make('name: "d" type: "Dropout"', [(3,)], "TEST")
    v = torch.randn(3)
    assert torch.equal(test(v), v)


def test_eltwise_max_routes_gradient_like_caffe_on_ties():
    layer = make('name: "m" type: "Eltwise" eltwise_param { operation: MAX }', [(3,)] * 3)
    a = torch.tensor([1.0, 2.0, 5.0], requires_grad=True)
    b = torch.tensor([1.0, 0.0, 5.0], requires_grad=True)
    c = torch.tensor([0.0, 2.0, 5.0], requires_grad=True)
    y = layer(a, b, c)
    y.backward(torch.tensor([1.0, 10.0, 100.0]))
    # a == b: b wins; a == c above b: a wins; all equal: b wins
    assert a.grad.tolist() == [0, 10, 0]
    assert b.grad.tolist() == [1, 0, 100]
    assert c.grad.tolist() == [0, 0, 0]


def test_argmax_ties_and_shapes():
    x = torch.tensor([[[1.0, 3.0, 3.0, 0.0]]]).reshape(1, 4, 1, 1)
    am = make('name: "a" type: "ArgMax" argmax_param { axis: 1 }', [(1, 4, 1, 1)])
    assert am(x).flatten().tolist() == [2.0]                   # the highest tied index
    top2 = make('name: "a" type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }',
                [(1, 4, 1, 1)])
    assert top2.top_shapes([(1, 4, 1, 1)]) == [(1, 2, 2, 1)]
    assert top2(x).flatten().tolist() == [2.0, 1.0, 3.0, 3.0]
    flat = make('name: "a" type: "ArgMax"', [(2, 5)])
    assert flat.top_shapes([(2, 5)]) == [(2, 1, 1)]
    vals = make('name: "a" type: "ArgMax" argmax_param { axis: 1 top_k: 2 out_max_val: true }',
                [(1, 4, 1, 1)])
    assert vals(x).flatten().tolist() == [3.0, 3.0]
    fails("top_k 5 is larger than axis 1", make('name: "a" type: "ArgMax" argmax_param '
          '{ axis: 1 top_k: 5 }', [(1, 4)]).top_shapes, [(1, 4)])


def test_accuracy_top_k_ties_ignore_and_per_class():
    layer = make('name: "acc" type: "Accuracy" top: "acc" top: "per_class" '
                 'accuracy_param { top_k: 1 ignore_label: -1 }', [(4, 3), (4,)])
    assert layer.top_shapes([(4, 3), (4,)]) == [(), (3,)]
    x = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [1.0, 0.0, 0.0]])
    label = torch.tensor([0.0, 0.0, 2.0, -1.0])
    acc, per = layer(x, label)
    assert acc.item() == pytest.approx(1 / 3)                  # the tie counts against class 0
    assert per.tolist() == [0.5, 0.0, 0.0]
    top2 = make('name: "acc" type: "Accuracy" accuracy_param { top_k: 2 }', [(4, 3), (4,)])
    # row 2: two classes beat 0.1; row 3: class 2 ties with the true class 1 and counts
    assert top2(x, torch.tensor([0.0, 0.0, 2.0, 1.0])).item() == 0.5
    none = make('name: "acc" type: "Accuracy" accuracy_param { ignore_label: 0 }', [(1, 3), (1,)])
    assert none(x[:1], torch.zeros(1)).item() == 0.0


def test_softmax_loss_rules_the_oracle_does_not_cover():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, requires_grad=True)
    ignored = torch.full((2, 4), 255.0)
    layer = make('name: "l" type: "SoftmaxWithLoss" top: "loss" top: "prob" '
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
    plain = make('name: "l" type: "SoftmaxWithLoss" loss_param { normalization: NONE }',
                 [(1, 2), (1,)])
    loss = plain(x2, torch.tensor([1.0]))
    assert loss.item() == pytest.approx(-np.log(np.finfo(np.float32).tiny), rel=1e-6)
    loss.backward(torch.tensor(2.0))
    assert x2.grad.tolist() == [[2.0, -2.0]]
    legacy = make('name: "l" type: "SoftmaxWithLoss" loss_param { normalize: true }',
                  [(1, 2), (1,)])
    assert legacy.normalization == caffe_pb2.LossParameter.VALID


def test_batchnorm_global_stats_and_train_update():
    layer = make('name: "bn" type: "BatchNorm"', [(2, 3, 4)], "TEST")
    assert layer.use_global_stats and all(not layer.blob(i).requires_grad for i in range(3))
    x = torch.randn(2, 3, 4)
    # scale factor 0: mean and var are 0
    assert torch.allclose(layer(x), x / torch.sqrt(torch.tensor(1e-5)), rtol=1e-6)
    with torch.no_grad():
        layer.blob(0).copy_(torch.tensor([2.0, 4.0, 6.0]))
        layer.blob(1).copy_(torch.tensor([2.0, 2.0, 2.0]))
        layer.blob(2).fill_(2.0)
    want = (x - torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1)) / torch.sqrt(torch.tensor(1 + 1e-5))
    assert torch.allclose(layer(x), want, atol=1e-6)

    train = make('name: "bn" type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.5 }',
                 [(2, 3, 4)], "TRAIN")
    assert not train.use_global_stats
    with torch.no_grad():
        train.blob(0).fill_(1.0)
        train.blob(1).fill_(1.0)
        train.blob(2).fill_(1.0)
    x.requires_grad_(True)
    y = train(x)
    mean = x.detach().mean((0, 2))
    var = x.detach().var((0, 2), unbiased=False)
    assert torch.allclose(y, (x - mean.view(1, 3, 1)) / torch.sqrt(var + 1e-5).view(1, 3, 1),
                          atol=1e-5)
    assert train.blob(2).item() == 1.5
    assert torch.allclose(train.blob(0), 0.5 + mean)
    assert torch.allclose(train.blob(1), 0.5 + var * 8 / 7)
    y.backward(torch.randn(2, 3, 4))
    assert x.grad is not None and train.blob(0).grad is None
    fails("lr_mult 1", make, 'name: "bn" type: "BatchNorm" param { lr_mult: 1 }', [(2, 3)])


def test_lrn_within_channel_counts_padding_in_the_divisor():
    layer = make('name: "n" type: "LRN" lrn_param { local_size: 3 alpha: 2 beta: 0.5 k: 7 '
                 'norm_region: WITHIN_CHANNEL }', [(1, 1, 3, 3)])
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    sq = np.pad(x.numpy()[0, 0] ** 2, 1)
    corner = sq[0:3, 0:3].sum() / 9                              # 4 real values, divisor 9
    assert layer(x)[0, 0, 0, 0].item() == pytest.approx(1 * (1 + 2 * corner) ** -0.5, rel=1e-6)
    fails("local_size must be odd", make, 'name: "n" type: "LRN" lrn_param { local_size: 4 }',
          [(1, 1, 3, 3)])
    fails("4 axes", layer.top_shapes, [(1, 3)])


def test_neuron_gradients_at_the_edges():
    bnll = make('name: "b" type: "BNLL"', [(3,)])
    x = torch.tensor([0.0, 100.0, -100.0], requires_grad=True)
    y = bnll(x)
    assert y.tolist() == pytest.approx([np.log(2), 100.0, 0.0])
    y.sum().backward()
    assert x.grad.tolist() == pytest.approx([0.5, 1.0, 0.0])
    relu = make('name: "r" type: "ReLU" relu_param { negative_slope: 0.25 }', [(2,)])
    z = torch.tensor([0.0, -4.0], requires_grad=True)
    relu(z).sum().backward()
    assert z.grad.tolist() == [0.25, 0.25]
    power = make('name: "p" type: "Power" power_param { power: 3 scale: 0 shift: 2 }', [(2,)])
    assert power(torch.zeros(2)).tolist() == [8.0, 8.0]
    exp2 = make('name: "e" type: "Exp" exp_param { base: 2 scale: 3 shift: 1 }', [(2,)])
    assert exp2(torch.tensor([0.0, 1.0])).tolist() == pytest.approx([2.0, 16.0], rel=1e-6)
    log10 = make('name: "l" type: "Log" log_param { base: 10 scale: 2 shift: 1 }', [(1,)])
    assert log10(torch.tensor([4.5])).item() == pytest.approx(1.0, rel=1e-6)
    fails("base must be strictly positive", make, 'name: "e" type: "Exp" exp_param { base: -2 }',
          [(1,)])
    thr = make('name: "t" type: "Threshold" threshold_param { threshold: 0.5 }', [(3,)])
    assert thr(torch.tensor([0.5, 0.6, -1.0])).tolist() == [0.0, 1.0, 0.0]


def test_data_layers():
    inp = make('name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 1 dim: 2 } }',
               [])
    assert inp.is_source and inp.top_shapes([]) == [(1, 2), (1, 2)]
    a, b = torch.zeros(1, 2), torch.ones(3)
    assert inp(a, b) == (a, b)
    fails("once per top blob", make, 'name: "in" type: "Input" top: "a" top: "b" top: "c" '
          'input_param { shape { dim: 1 } shape { dim: 2 } }', [])
    dummy = make('name: "d" type: "DummyData" top: "x" top: "y" dummy_data_param { '
                 'data_filler { type: "constant" value: 3 } num: 2 channels: 1 height: 4 '
                 'width: 4 num: 1 }', [])
    x, y = dummy()
    assert x.shape == (2, 1, 4, 4) and y.shape == (1, 1, 4, 4) and torch.all(x == 3)
    gauss = make('name: "d" type: "DummyData" top: "x" dummy_data_param { data_filler { '
                 'type: "gaussian" std: 2 } shape { dim: 100 dim: 100 } }', [])
    g = gauss()
    assert g.shape == (100, 100) and abs(g.std().item() - 2) < 0.1
    assert not torch.equal(g, gauss())
    silence = make('name: "s" type: "Silence" bottom: "x"', [(2,)])
    assert silence.top_shapes([(2,)]) == [] and silence(torch.zeros(2)) == ()
