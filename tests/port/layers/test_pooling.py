"""Pooling: Caffe's setting checks, and its CPU loops written out naively for the corners the
oracle cases do not reach (padding clips, ceil-mode windows, -inf and NaN, STOCHASTIC in TEST,
global pooling, the single ``max_pool2d`` path taken where Caffe's rule equals PyTorch's).
"""
import itertools

import numpy as np
import pytest
import torch
from helpers import layer_setup_fails, make_layer


def test_pool_pad_must_be_less_than_kernel():
    layer_setup_fails('name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 3 pad: 3 }',
                      [(1, 1, 9, 9)], "'p'", "Pooling", "pad_h 3", "kernel_h 3")
    layer_setup_fails('name: "p" type: "Pooling" pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 '
                      'pad_h: 1 pad_w: 2 }', [(1, 1, 9, 9)], "'p'", "pad_w 2", "kernel_w 2")


def test_pool_setting_errors():
    shape = [(1, 1, 9, 9)]
    layer_setup_fails('name: "p" type: "Pooling" pooling_param { kernel_size: 3 kernel_h: 3 kernel_w: 3 }',
                      shape, "'p'", "kernel_size OR kernel_h")
    layer_setup_fails('name: "p" type: "Pooling" pooling_param { kernel_h: 3 }', shape, "'p'", "kernel_w")
    layer_setup_fails('name: "p" type: "Pooling" pooling_param { global_pooling: true kernel_size: 2 }',
                      shape, "'p'", "global_pooling")
    layer_setup_fails('name: "p" type: "Pooling" pooling_param { global_pooling: true stride: 2 }',
                      shape, "'p'", "stride")
    layer_setup_fails('name: "p" type: "Pooling" top: "a" top: "b" pooling_param { pool: AVE '
                      'kernel_size: 2 }', shape, "'p'", "AVE", "2")
    layer_setup_fails('name: "p" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 }',
                      shape, "'p'", "TEST", phase="TRAIN")
    layer_setup_fails('name: "p" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 pad: 1 }',
                      shape, "'p'", "padding", "STOCHASTIC")
    layer_setup_fails('name: "p" type: "Pooling" pooling_param { kernel_size: 2 }', [(1, 9, 9)], "'p'",
                      "4 axes")


def caffe_pool(x, method, k, s, p, ceil=True):
    """Caffe's Reshape + Forward_cpu (and the GPU TEST-phase STOCHASTIC) as plain loops."""
    n, c, h, w = x.shape
    pooled = []
    for size, kk, ss, pp in zip((h, w), k, s, p):
        q = np.float32(size + 2 * pp - kk) / np.float32(ss)
        o = int(np.ceil(q) if ceil else np.floor(q)) + 1
        if pp and (o - 1) * ss >= size + pp:
            o -= 1
        pooled.append(o)
    top = np.zeros((n, c, *pooled), np.float32)
    mask = np.full_like(top, -1)
    fmax = np.finfo(np.float32).max
    for i, j in itertools.product(range(pooled[0]), range(pooled[1])):
        h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
        h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
        size = (h1 - h0) * (w1 - w0)
        win = x[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)]
        for a, b in itertools.product(range(n), range(c)):
            v = win[a, b]
            if method == "MAX":
                best, arg = -fmax, -1
                for (y, z), val in np.ndenumerate(v):
                    if val > best:
                        best, arg = val, (max(h0, 0) + y) * w + max(w0, 0) + z
                top[a, b, i, j], mask[a, b, i, j] = best, arg
            elif method == "AVE":
                with np.errstate(divide="ignore", invalid="ignore"):
                    top[a, b, i, j] = np.float32(v.sum()) / np.float32(size)
            else:
                t = v.sum()
                top[a, b, i, j] = (v * v).sum() / t if t > 0 else 0
    return top, mask


def test_pooled_size_is_caffes_float32_division():
    """pooled_size divides integers; Caffe divides in float32 (caffe_pool's loop above). Every
    size up to 1200 and 70000-70100, kernels 1-16, strides 1-9, pads below the kernel."""
    from fcn_port.port.layers.pooling import pooled_size

    sizes = list(range(1, 1201)) + list(range(70000, 70100))
    for k, s, ceil in itertools.product(range(1, 17), range(1, 10), (True, False)):
        for p in {0, k // 2, k - 1}:
            h = np.array(sizes)
            q = (h + 2 * p - k).astype(np.float32) / np.float32(s)
            want = (np.ceil(q) if ceil else np.floor(q)).astype(np.int64) + 1
            if p:
                want -= (want - 1) * s >= h + p
            got = [pooled_size((n,), (k,), (s,), (p,), ceil)[0] for n in sizes]
            assert got == want.tolist(), (k, s, p, ceil)


POOL_CONFIGS = [  # (kernel, stride, pad, ceil, input H x W)
    ((3, 3), (2, 2), (1, 1), True, (9, 12)),
    ((3, 3), (3, 3), (2, 2), True, (7, 8)),
    ((2, 2), (2, 2), (0, 0), True, (7, 9)),
    ((2, 3), (1, 2), (1, 0), True, (6, 11)),
    ((3, 3), (2, 2), (1, 1), False, (8, 9)),
    ((3, 2), (2, 3), (2, 1), True, (5, 10)),   # pad > kernel / 2: PyTorch refuses this
    ((1, 1), (3, 3), (0, 0), True, (5, 6)),    # no pad, k < s: Caffe keeps empty last windows
    ((4, 4), (1, 1), (0, 0), True, (4, 4)),
]


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("k, s, p, ceil, hw", POOL_CONFIGS)
def test_pooling_corners_match_caffe_loops(method, k, s, p, ceil, hw):
    x = np.random.default_rng(0).standard_normal((2, 3, *hw)).astype(np.float32)
    top, mask = caffe_pool(x, method, k, s, p, ceil)
    n_tops = 2 if method == "MAX" else 1
    tops = 'top: "t" ' * n_tops
    layer = make_layer(f'name: "p" type: "Pooling" {tops}pooling_param {{ '
                       f'pool: {method} kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} '
                       f'stride_w: {s[1]} pad_h: {p[0]} pad_w: {p[1]} '
                       f'round_mode: {"CEIL" if ceil else "FLOOR"} }}', [x.shape])
    out = layer(torch.from_numpy(x))
    outs = out if isinstance(out, tuple) else (out,)
    assert layer.top_shapes([x.shape]) == [top.shape] * n_tops
    np.testing.assert_allclose(outs[0].numpy(), top, rtol=1e-6, atol=1e-6, equal_nan=True)
    if method == "MAX":
        np.testing.assert_array_equal(outs[1].numpy(), mask)


def test_max_pooling_inf_nan_like_caffe():
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    x[0, 0, :2, :2] = -np.inf
    x[0, 0, 2, 2] = np.nan
    x[0, 1, 4:, 4:] = np.nan
    layer = make_layer('name: "p" type: "Pooling" top: "t" top: "m" pooling_param { kernel_size: 2 '
                       'stride: 2 }', [x.shape])
    y, m = layer(torch.from_numpy(x))
    top, mask = caffe_pool(x, "MAX", (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y.numpy(), top)
    np.testing.assert_array_equal(m.numpy(), mask)
    assert y[0, 0, 0, 0] == -np.finfo(np.float32).max and m[0, 0, 0, 0] == -1


def test_stochastic_test_phase_and_global():
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 9)).astype(np.float32)
    layer = make_layer('name: "p" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 '
                       'stride: 2 }', [x.shape])
    top, _ = caffe_pool(x, "STOCHASTIC", (3, 3), (2, 2), (0, 0))
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), top, rtol=1e-5, atol=1e-6)
    g = make_layer('name: "p" type: "Pooling" pooling_param { pool: MAX global_pooling: true }',
                   [x.shape])
    assert g.top_shapes([(1, 3, 4, 5)]) == [(1, 3, 1, 1)]  # kernel follows the bottom
    np.testing.assert_array_equal(g(torch.from_numpy(x)).numpy(),
                                  x.max(axis=(2, 3), keepdims=True))


def test_pooling_gradient_flows():
    x = torch.randn(1, 2, 7, 8, requires_grad=True)
    for method in ("MAX", "AVE"):
        layer = make_layer(f'name: "p" type: "Pooling" pooling_param {{ pool: {method} kernel_size: 3 '
                           'stride: 3 pad: 2 }', [x.shape])
        layer(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("k, s, hw", [((2, 2), (2, 2), (7, 9)), ((3, 3), (2, 2), (2, 6)),
                                      ((3, 2), (2, 2), (1, 5)), ((3, 3), (3, 2), (11, 4))])
def test_plain_max_pooling_matches_caffe_loops(k, s, hw):
    # MAX, pad 0, ceil, k >= s, one top: computed as max_pool2d(ceil_mode=True) directly
    x = np.random.default_rng(3).standard_normal((1, 2, *hw)).astype(np.float32)
    x[0, 0, 0, :2], x[0, 1, :, -1] = np.nan, -np.inf
    layer = make_layer(f'name: "p" type: "Pooling" pooling_param {{ kernel_h: {k[0]} kernel_w: '
                       f'{k[1]} stride_h: {s[0]} stride_w: {s[1]} }}', [x.shape])
    assert layer.plain
    top, _ = caffe_pool(x, "MAX", k, s, (0, 0))
    np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), top)  # empty top too
