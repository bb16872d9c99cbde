"""Neuron layers: Dropout's mask and scale, and gradients at the edges (BNLL, leaky ReLU,
Power, Exp, Log, Threshold).
"""

import numpy as np
import pytest
import torch
from helpers import layer_fails, make_layer


def test_dropout_train_is_elementwise_inverted_and_test_is_identity():
    torch.manual_seed(0)
    layer = make_layer('name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.3 }',
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
    test = make_layer('name: "d" type: "Dropout"', [(3,)], "TEST")
    v = torch.randn(3)
    assert torch.equal(test(v), v)


def test_neuron_gradients_at_the_edges():
    bnll = make_layer('name: "b" type: "BNLL"', [(3,)])
    x = torch.tensor([0.0, 100.0, -100.0], requires_grad=True)
    y = bnll(x)
    assert y.tolist() == pytest.approx([np.log(2), 100.0, 0.0])
    y.sum().backward()
    assert x.grad.tolist() == pytest.approx([0.5, 1.0, 0.0])
    relu = make_layer('name: "r" type: "ReLU" relu_param { negative_slope: 0.25 }', [(2,)])
    z = torch.tensor([0.0, -4.0], requires_grad=True)
    relu(z).sum().backward()
    assert z.grad.tolist() == [0.25, 0.25]
    power = make_layer('name: "p" type: "Power" power_param { power: 3 scale: 0 shift: 2 }', [(2,)])
    assert power(torch.zeros(2)).tolist() == [8.0, 8.0]
    exp2 = make_layer('name: "e" type: "Exp" exp_param { base: 2 scale: 3 shift: 1 }', [(2,)])
    assert exp2(torch.tensor([0.0, 1.0])).tolist() == pytest.approx([2.0, 16.0], rel=1e-6)
    log10 = make_layer('name: "l" type: "Log" log_param { base: 10 scale: 2 shift: 1 }', [(1,)])
    assert log10(torch.tensor([4.5])).item() == pytest.approx(1.0, rel=1e-6)
    layer_fails("base must be strictly positive", make_layer, 'name: "e" type: "Exp" exp_param { base: -2 }',
                [(1,)])
    thr = make_layer('name: "t" type: "Threshold" threshold_param { threshold: 0.5 }', [(3,)])
    assert thr(torch.tensor([0.5, 0.6, -1.0])).tolist() == [0.0, 1.0, 0.0]


def _prelu_caffe(x, slope, shared):
    """Forward_cpu and Backward_cpu of prelu_layer.cpp, loop for loop (top_diff = 1)."""
    channels = x.shape[1]
    dim = int(np.prod(x.shape[2:], dtype=np.int64))
    div = channels if shared else 1
    flat, top = x.reshape(-1), np.zeros(x.size, np.float32)
    bottom_diff, slope_diff = np.zeros(x.size, np.float32), np.zeros(slope.size, np.float32)
    for i in range(flat.size):
        c = (i // dim) % channels // div
        top[i] = max(flat[i], 0) + slope[c] * min(flat[i], 0)
        slope_diff[c] += flat[i] * (flat[i] <= 0)
        bottom_diff[i] = (flat[i] > 0) + slope[c] * (flat[i] <= 0)
    return top.reshape(x.shape), bottom_diff.reshape(x.shape), slope_diff


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4)])
def test_prelu_transcribes_caffe_and_its_gradient_at_zero(shared, shape):
    layer = make_layer(f'name: "p" type: "PReLU" prelu_param {{ channel_shared: '
                       f'{str(shared).lower()} }}', [shape])
    assert tuple(layer.blob(0).shape) == (() if shared else (shape[1],))
    assert torch.all(layer.blob(0) == 0.25)  # Caffe's default filler
    with torch.no_grad():
        layer.blob(0).copy_(torch.linspace(-0.5, 0.7, layer.blob(0).numel()).reshape(
            layer.blob(0).shape))
    x = torch.randn(shape)
    x.view(-1)[::3] = 0  # Caffe's bottom gradient is the slope at 0, not 1 + slope
    x.requires_grad_(True)
    y = layer(x)
    y.sum().backward()
    top, bottom_diff, slope_diff = _prelu_caffe(x.detach().numpy(), layer.blob(0).detach()
                                                .numpy().reshape(-1), shared)
    np.testing.assert_allclose(y.detach().numpy(), top, rtol=0, atol=0)
    np.testing.assert_allclose(x.grad.numpy(), bottom_diff, rtol=0, atol=0)
    np.testing.assert_allclose(layer.blob(0).grad.numpy().reshape(-1), slope_diff, rtol=1e-6,
                               atol=1e-6)


def test_prelu_refuses_a_1d_bottom_and_the_wrong_channel_count():
    from fcn_port.port.layers import LayerError

    with pytest.raises(LayerError):
        make_layer('name: "p" type: "PReLU"', [(5,)])
    layer = make_layer('name: "p" type: "PReLU"', [(1, 3, 2, 2)])
    with pytest.raises(LayerError):
        layer.top_shapes([(1, 4, 2, 2)])
