"""Normalize, Permute and PriorBox of the SSD fork: its loops transcribed (the oracle's
zoo/ssd_head checks per-position Normalize with per-channel scale, PriorBox with and without
clip, and Permute against real Caffe)."""
import math

import numpy as np
import pytest
import torch

from fcn_port.port.layers import LayerError
from helpers import make_layer


def test_normalize_across_spatial_with_a_shared_scale_and_caffes_gradient():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    layer = make_layer('name: "n" type: "Normalize" norm_param { across_spatial: true '
                       'channel_shared: true scale_filler { type: "constant" value: 3 } }',
                       [x.shape])
    y = layer(x)
    flat = x.detach().double().reshape(2, -1).numpy()
    norm = np.sqrt((flat ** 2).sum(1) + 1e-10)
    np.testing.assert_allclose(y.detach().reshape(2, -1).numpy(), 3 * flat / norm[:, None],
                               rtol=1e-6)
    dy = torch.randn(x.shape)
    y.backward(dy)
    g, xd = dy.double().reshape(2, -1).numpy(), flat
    a = (xd * g).sum(1, keepdims=True)  # normalize_layer.cpp Backward_cpu
    want = 3 * (g - xd * a / norm[:, None] ** 2) / norm[:, None]
    np.testing.assert_allclose(x.grad.reshape(2, -1).numpy(), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(layer.blob(0).grad.item(), (y.detach() * dy).sum().item() / 3,
                               rtol=1e-5)


def test_permute_appends_the_axes_order_leaves_out():
    x = torch.randn(2, 3, 4, 5)
    layer = make_layer('name: "p" type: "Permute" permute_param { order: 0 order: 2 }',
                       [x.shape])
    assert torch.equal(layer(x), x.permute(0, 2, 1, 3))
    assert layer.top_shapes([x.shape]) == [(2, 4, 3, 5)]
    with pytest.raises(LayerError):
        make_layer('name: "p" type: "Permute" permute_param { order: 0 order: 0 }',
                   [x.shape]).top_shapes([x.shape])


def test_priorbox_truncates_sizes_and_orders_boxes_as_caffe():
    layer = make_layer('name: "pb" type: "PriorBox" prior_box_param { min_size: 10.7 '
                       'max_size: 20.2 aspect_ratio: 2 aspect_ratio: 2.0000001 flip: true '
                       'clip: false variance: 0.1 }', [(1, 8, 2, 3), (1, 3, 16, 24)])
    out = layer(torch.zeros(1, 8, 2, 3), torch.zeros(1, 3, 16, 24)).numpy()
    assert out.shape == (1, 2, 2 * 3 * 4 * 4)  # ratios 1, 2, 1/2 (the repeat is dropped) + max
    boxes = out[0, 0].reshape(2, 3, 4, 4)
    cx, cy = (1 + 0.5) * 8, (0 + 0.5) * 8  # position (h 0, w 1); step 24/3 = 16/2 = 8
    sizes = [(10, 10), (math.sqrt(10 * 20),) * 2, (10 * math.sqrt(2), 10 / math.sqrt(2)),
             (10 * math.sqrt(0.5), 10 / math.sqrt(0.5))]  # min and max truncated to int
    for k, (bw, bh) in enumerate(sizes):
        want = [(cx - bw / 2) / 24, (cy - bh / 2) / 16, (cx + bw / 2) / 24, (cy + bh / 2) / 16]
        np.testing.assert_allclose(boxes[0, 1, k], want, rtol=1e-6)
    assert np.all(out[0, 1] == np.float32(0.1))
    assert boxes.min() < 0  # no clip
