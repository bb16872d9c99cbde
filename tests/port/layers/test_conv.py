"""Convolution and Deconvolution: Caffe's setting checks, and the corners the oracle cases do
not reach against Caffe's im2col definition written out as loops.
"""
import itertools

import numpy as np
import pytest
import torch

from fcn_port.port.layers import LayerError
from helpers import TOL, blob_error, layer_setup_fails, make_layer, to_numpy


def naive_conv(x, w, b, s, p, d, group):
    """Caffe's im2col convolution for one 2-D image batch: taps outside the input read 0."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh = int((h + 2 * p[0] - (d[0] * (kh - 1) + 1)) / s[0]) + 1  # C truncation
    ow = int((wd + 2 * p[1] - (d[1] * (kw - 1) + 1)) / s[1]) + 1
    y = np.zeros((n, o, oh, ow), np.float64)
    og = o // group
    for oc, i, j in itertools.product(range(o), range(oh), range(ow)):
        g = oc // og
        for ic, u, v in itertools.product(range(cg), range(kh), range(kw)):
            hh, ww = i * s[0] - p[0] + u * d[0], j * s[1] - p[1] + v * d[1]
            if 0 <= hh < h and 0 <= ww < wd:
                y[:, oc, i, j] += x[:, g * cg + ic, hh, ww] * w[oc, ic, u, v]
    return y + (0 if b is None else b[None, :, None, None])


def test_group_must_divide_channels():
    layer_setup_fails('name: "c" type: "Convolution" convolution_param { num_output: 6 kernel_size: 3 '
                      'group: 4 }', [(1, 6, 8, 8)], "'c'", "Convolution", "channels 6", "group 4")
    layer_setup_fails('name: "d" type: "Deconvolution" convolution_param { num_output: 5 kernel_size: 3 '
                      'group: 2 }', [(1, 4, 8, 8)], "'d'", "num_output 5", "group 2")


def test_conv_setting_errors():
    shape = [(1, 2, 8, 8)]
    layer_setup_fails('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 '
                      'pad: 1 pad_h: 1 pad_w: 1 }', shape, "'c'", "pad")
    layer_setup_fails('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 '
                      'stride: 0 }', shape, "'c'", "stride", "0")
    layer_setup_fails('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 '
                      'kernel_size: 3 kernel_size: 3 }', shape, "'c'", "kernel_size given 3 times")
    layer_setup_fails('name: "c" type: "Convolution" convolution_param { num_output: 2 }', shape, "'c'",
                      "kernel_size")
    layer_setup_fails('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 9 }',
                      [(1, 2, 4, 4)], "'c'", "negative output size")
    layer = make_layer('name: "c" type: "Convolution" convolution_param { num_output: 2 '
                       'kernel_size: 3 }', shape)
    with pytest.raises(LayerError, match="channels"):
        layer.top_shapes([(1, 3, 8, 8)])


@pytest.mark.parametrize("hw, k, s, p, d, group", [
    ((7, 8), (3, 3), (2, 2), (1, 1), (1, 1), 1),
    ((4, 5), (5, 5), (2, 3), (0, 1), (1, 1), 2),   # window overruns: Caffe truncates to 1 output
    ((9, 6), (3, 2), (1, 2), (2, 0), (2, 3), 2),
])
def test_conv_matches_im2col_definition(hw, k, s, p, d, group):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, *hw)).astype(np.float32)
    layer = make_layer(f'name: "c" type: "Convolution" convolution_param {{ num_output: 6 '
                       f'kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} stride_w: {s[1]} '
                       f'pad_h: {p[0]} pad_w: {p[1]} dilation: {d[0]} dilation: {d[1]} '
                       f'group: {group} }}', [x.shape])
    w = rng.standard_normal(layer.blob(0).shape).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    layer.load_state_dict({"0": torch.from_numpy(w), "1": torch.from_numpy(b)})
    ref = naive_conv(x, w, b, s, p, d, group)
    y = layer(torch.from_numpy(x))
    assert layer.top_shapes([x.shape]) == [ref.shape] and tuple(y.shape) == ref.shape
    assert blob_error(to_numpy(y), ref) <= TOL


def test_conv_nd_axis_and_several_bottoms():
    # 1-D and 3-D
    c1 = make_layer('name: "c" type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 '
                    'pad: 1 stride: 2 }', [(2, 4, 9)])
    assert c1.blob(0).shape == (3, 4, 3) and c1.top_shapes([(2, 4, 9)]) == [(2, 3, 5)]
    c3 = make_layer('name: "c" type: "Deconvolution" convolution_param { num_output: 2 '
                    'kernel_size: 2 kernel_size: 3 kernel_size: 4 stride: 2 }', [(1, 3, 2, 3, 4)])
    assert c3.blob(0).shape == (3, 2, 2, 3, 4)
    assert c3.top_shapes([(1, 3, 2, 3, 4)]) == [(1, 2, 4, 7, 10)]
    assert tuple(c3(torch.randn(1, 3, 2, 3, 4)).shape) == (1, 2, 4, 7, 10)
    # channel axis 2: axes 0 and 1 are batch axes
    ca = make_layer('name: "c" type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 '
                    'axis: 2 weight_filler { type: "gaussian" std: 1 } }', [(2, 5, 4, 6, 6)])
    x = torch.randn(2, 5, 4, 6, 6)
    y = ca(x)
    assert tuple(y.shape) == (2, 5, 3, 4, 4)
    torch.testing.assert_close(y[1, 3], ca(x[1:2, 3:4])[0, 0])
    # two bottoms share the weights and give two tops
    two = make_layer('name: "c" type: "Convolution" top: "a" top: "b" convolution_param { '
                     'num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" std: 1 } }',
                     [(1, 3, 4, 4), (1, 3, 4, 4)])
    a, b = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    ya, yb = two(a, b)
    torch.testing.assert_close(yb, two(b))
    torch.testing.assert_close(ya, two(a))


def test_deconv_large_pad_and_filler():
    layer = make_layer('name: "d" type: "Deconvolution" convolution_param { num_output: 2 '
                       'kernel_size: 3 stride: 2 pad: 3 bias_term: false '
                       'weight_filler { type: "constant" value: 1 } }', [(1, 2, 4, 4)])
    assert layer.n_blobs == 1 and torch.all(layer.blob(0) == 1)
    x = torch.randn(1, 2, 4, 4)
    y = layer(x)
    assert tuple(y.shape) == (1, 2, 3, 3) == layer.top_shapes([(1, 2, 4, 4)])[0]
    # scatter definition: input (i, j) adds weight * value at output (i*s - p + u, j*s - p + v)
    full = torch.zeros(1, 2, 2 * 3 + 3, 2 * 3 + 3)
    for i, j, u, v in itertools.product(range(4), range(4), range(3), range(3)):
        full[0, :, i * 2 + u, j * 2 + v] += x[0, :, i, j].sum()
    torch.testing.assert_close(y, full[:, :, 3:6, 3:6])
