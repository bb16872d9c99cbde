"""Scale, Bias, BatchNorm and LRN: blob shapes, fillers, global statistics and the moving
average, LRN's divisor, and Caffe's checks.
"""

import numpy as np
import pytest
import torch
from helpers import layer_fails, make_layer


def test_scale_bias_shapes_and_errors():
    layer = make_layer('name: "sc" type: "Scale" scale_param { axis: 1 num_axes: 2 bias_term: true '
                       'bias_filler { type: "constant" value: 2 } }', [(2, 3, 4, 5)])
    assert layer.blob(0).shape == (3, 4) and torch.all(layer.blob(0) == 1)
    assert layer.blob(1).shape == (3, 4) and torch.all(layer.blob(1) == 2)
    with torch.no_grad():
        layer.blob(0).copy_(torch.arange(12.0).reshape(3, 4))
    x = torch.randn(2, 3, 4, 5)
    assert torch.allclose(layer(x), x * torch.arange(12.0).reshape(1, 3, 4, 1) + 2)
    layer_fails(r"bottom\[0\] shape \(2, 3, 6, 5\) \(axis 2: 6\) and scale shape \(3, 4\)",
                layer.top_shapes, [(2, 3, 6, 5)])
    # scale as a second bottom, bias blob shaped like it
    two = make_layer('name: "s2" type: "Scale" scale_param { axis: 0 bias_term: true }',
                     [(2, 3, 4), (2, 3)])
    assert two.n_blobs == 1 and two.blob(0).shape == (2, 3)
    s = torch.randn(2, 3)
    assert torch.allclose(two(x[:, :, :, 0].reshape(2, 3, 4), s)[..., 0],
                          x[:, :, 0, 0] * s)
    scalar = make_layer('name: "s0" type: "Scale" scale_param { num_axes: 0 }', [(2, 3)])
    assert scalar.blob(0).shape == ()
    bias = make_layer('name: "b" type: "Bias" bias_param { axis: -1 num_axes: 1 }', [(2, 3)])
    assert bias.blob(0).shape == (3,)
    layer_fails("extends past", make_layer, 'name: "b" type: "Bias" bias_param { axis: 1 num_axes: 3 }',
                [(2, 3)])


def test_batchnorm_global_stats_and_train_update():
    layer = make_layer('name: "bn" type: "BatchNorm"', [(2, 3, 4)], "TEST")
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

    train = make_layer('name: "bn" type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.5 }',
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
    layer_fails("lr_mult 1", make_layer, 'name: "bn" type: "BatchNorm" param { lr_mult: 1 }', [(2, 3)])


def test_lrn_within_channel_counts_padding_in_the_divisor():
    layer = make_layer('name: "n" type: "LRN" lrn_param { local_size: 3 alpha: 2 beta: 0.5 k: 7 '
                       'norm_region: WITHIN_CHANNEL }', [(1, 1, 3, 3)])
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    sq = np.pad(x.numpy()[0, 0] ** 2, 1)
    corner = sq[0:3, 0:3].sum() / 9                              # 4 real values, divisor 9
    assert layer(x)[0, 0, 0, 0].item() == pytest.approx(1 * (1 + 2 * corner) ** -0.5, rel=1e-6)
    layer_fails("local_size must be odd", make_layer, 'name: "n" type: "LRN" lrn_param { local_size: 4 }',
                [(1, 1, 3, 3)])
    layer_fails("4 axes", layer.top_shapes, [(1, 3)])
