"""Convolution, Deconvolution, Pooling and Crop against real Caffe outputs, plus Caffe's checks.

Every such layer in the oracle cases (the single-layer cases and every one inside the FCN nets) is
built from its LayerParameter with its bottoms' shapes, loaded with Caffe's blobs and fed the
bottoms Caffe fed it. Its top must match Caffe's top to 1e-5 of max(1, max|caffe|). Naive
loop versions of Caffe's pooling rules cover the corners the oracle cases do not reach.
"""
import itertools
import json

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from conftest import oracle_cases
from fcn_port.port.formats import caffemodel
from fcn_port.port.layers import conv, crop, pooling  # noqa: F401  (registration)
from fcn_port.port.layers import LayerError, lookup
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import read_net

MINE = {"Convolution", "Deconvolution", "Pooling", "Crop"}
PLUMBING = {"Input", "Split"}
TOL = 1e-5


def _oracle_layers():
    params = []
    for group in ("layers", "fcn"):
        for case in oracle_cases(group):
            layers = json.loads((case / "case.json").read_text())["layers"]
            types = {entry["type"] for entry in layers}
            if group == "layers" and not (types & MINE and types <= MINE | PLUMBING):
                continue
            params += [pytest.param(case, entry["name"], id=f"{group}/{case.name}/{entry['name']}")
                       for entry in layers if entry["type"] in MINE]
    return params


def _bottoms(info, blobs, name):
    """The arrays Caffe fed layer ``name``: each bottom's last producer's top (Split included)."""
    producer = {}
    for entry in info["layers"]:
        if entry["name"] == name:
            break
        for i, top in enumerate(entry["tops"]):
            producer[top] = f"top/{entry['name']}/{i}"
    return entry, [blobs[producer.get(b, f"input/{b}")] for b in entry["bottoms"]]


def build(text, bottom_shapes, phase="TEST"):
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    return lookup(lp)(lp, [tuple(s) for s in bottom_shapes], phase)


def rel_err(ours, caffe):
    ours = ours.detach().numpy().astype(np.float64)
    return np.abs(ours - caffe).max(initial=0) / max(1.0, np.abs(caffe).max(initial=0))


# ------------------------------------------------------------------------------------------
# Real Caffe
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, name", _oracle_layers())
def test_layer_matches_caffe(case, name):
    info = json.loads((case / "case.json").read_text())
    net, _ = read_net(case / "net.prototxt")
    lp = next(layer for layer in net.layer if layer.name == name)
    blobs = np.load(case / "blobs.npz")
    entry, arrays = _bottoms(info, blobs, name)
    layer = lookup(lp)(lp, [a.shape for a in arrays], info["phase"])

    params = caffemodel.read_weights(case / "weights.caffemodel").params.get(name, [])
    ours = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert ours == {str(i): a.shape for i, a in enumerate(params)}  # Caffe's blob shapes
    layer.load_state_dict({str(i): torch.tensor(np.array(a)) for i, a in enumerate(params)})

    bottoms = [torch.tensor(a) for a in arrays]
    tops = layer(*bottoms)
    tops = tops if isinstance(tops, tuple) else (tops,)
    caffe = [blobs[f"top/{name}/{i}"] for i in range(len(entry["tops"]))]
    assert layer.top_shapes([a.shape for a in arrays]) == [c.shape for c in caffe]
    assert len(tops) == len(caffe)
    for ours, theirs in zip(tops, caffe):
        assert tuple(ours.shape) == theirs.shape
        assert rel_err(ours, theirs) <= TOL
    for b, a in zip(bottoms, arrays):  # bottoms are never written to
        assert np.array_equal(b.numpy(), a)


def test_oracle_cases_found():
    names = {p.id.split("/")[1] for p in _oracle_layers()}
    assert {"conv_1x1_nobias", "conv_group_dilation", "deconv_group_bilinear",
            "deconv_stride_pad_bias", "pool_ave_pad", "pool_ave_pad_clip", "pool_global_ave",
            "pool_max_ceil", "pool_max_pad_clip", "pool_rect", "crop", "voc-fcn8s"} <= names


# ------------------------------------------------------------------------------------------
# Caffe's checks
# ------------------------------------------------------------------------------------------

def raises(text, shapes, *needles, phase="TEST"):
    with pytest.raises(LayerError) as e:
        build(text, shapes, phase)
    for needle in needles:
        assert needle in str(e.value), str(e.value)
    return str(e.value)


def test_group_must_divide_channels():
    raises('name: "c" type: "Convolution" convolution_param { num_output: 6 kernel_size: 3 '
           'group: 4 }', [(1, 6, 8, 8)], "'c'", "Convolution", "channels 6", "group 4")
    raises('name: "d" type: "Deconvolution" convolution_param { num_output: 5 kernel_size: 3 '
           'group: 2 }', [(1, 4, 8, 8)], "'d'", "num_output 5", "group 2")


def test_conv_setting_errors():
    shape = [(1, 2, 8, 8)]
    raises('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 '
           'pad: 1 pad_h: 1 pad_w: 1 }', shape, "'c'", "pad")
    raises('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 '
           'stride: 0 }', shape, "'c'", "stride", "0")
    raises('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 '
           'kernel_size: 3 kernel_size: 3 }', shape, "'c'", "kernel_size given 3 times")
    raises('name: "c" type: "Convolution" convolution_param { num_output: 2 }', shape, "'c'",
           "kernel_size")
    raises('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 9 }',
           [(1, 2, 4, 4)], "'c'", "negative output size")
    layer = build('name: "c" type: "Convolution" convolution_param { num_output: 2 '
                  'kernel_size: 3 }', shape)
    with pytest.raises(LayerError, match="channels"):
        layer.top_shapes([(1, 3, 8, 8)])


def test_crop_offset_too_large():
    msg = raises('name: "crop" type: "Crop" crop_param { axis: 2 offset: 7 }',
                 [(1, 4, 11, 12), (1, 2, 5, 6)], "'crop'", "Crop", "axis 2", "offset 7",
                 "reference size 5", "bottom size 11")
    assert "out of bounds" in msg
    raises('name: "crop" type: "Crop" crop_param { axis: 1 offset: 1 offset: 2 }',
           [(1, 4, 11, 12), (1, 2, 5, 6)], "'crop'", "2 offsets", "axis 1")


def test_pool_pad_must_be_less_than_kernel():
    raises('name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 3 pad: 3 }',
           [(1, 1, 9, 9)], "'p'", "Pooling", "pad_h 3", "kernel_h 3")
    raises('name: "p" type: "Pooling" pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 '
           'pad_h: 1 pad_w: 2 }', [(1, 1, 9, 9)], "'p'", "pad_w 2", "kernel_w 2")


def test_pool_setting_errors():
    shape = [(1, 1, 9, 9)]
    raises('name: "p" type: "Pooling" pooling_param { kernel_size: 3 kernel_h: 3 kernel_w: 3 }',
           shape, "'p'", "kernel_size OR kernel_h")
    raises('name: "p" type: "Pooling" pooling_param { kernel_h: 3 }', shape, "'p'", "kernel_w")
    raises('name: "p" type: "Pooling" pooling_param { global_pooling: true kernel_size: 2 }',
           shape, "'p'", "global_pooling")
    raises('name: "p" type: "Pooling" pooling_param { global_pooling: true stride: 2 }',
           shape, "'p'", "stride")
    raises('name: "p" type: "Pooling" top: "a" top: "b" pooling_param { pool: AVE '
           'kernel_size: 2 }', shape, "'p'", "AVE", "2")
    raises('name: "p" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 }',
           shape, "'p'", "TEST", phase="TRAIN")
    raises('name: "p" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 pad: 1 }',
           shape, "'p'", "padding", "STOCHASTIC")
    raises('name: "p" type: "Pooling" pooling_param { kernel_size: 2 }', [(1, 9, 9)], "'p'",
           "4 axes")


# ------------------------------------------------------------------------------------------
# Convolution corners
# ------------------------------------------------------------------------------------------

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


@pytest.mark.parametrize("hw, k, s, p, d, group", [
    ((7, 8), (3, 3), (2, 2), (1, 1), (1, 1), 1),
    ((4, 5), (5, 5), (2, 3), (0, 1), (1, 1), 2),   # window overruns: Caffe truncates to 1 output
    ((9, 6), (3, 2), (1, 2), (2, 0), (2, 3), 2),
])
def test_conv_matches_im2col_definition(hw, k, s, p, d, group):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, *hw)).astype(np.float32)
    layer = build(f'name: "c" type: "Convolution" convolution_param {{ num_output: 6 '
                  f'kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} stride_w: {s[1]} '
                  f'pad_h: {p[0]} pad_w: {p[1]} dilation: {d[0]} dilation: {d[1]} '
                  f'group: {group} }}', [x.shape])
    w = rng.standard_normal(layer.blob(0).shape).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    layer.load_state_dict({"0": torch.from_numpy(w), "1": torch.from_numpy(b)})
    ref = naive_conv(x, w, b, s, p, d, group)
    y = layer(torch.from_numpy(x))
    assert layer.top_shapes([x.shape]) == [ref.shape] and tuple(y.shape) == ref.shape
    assert rel_err(y, ref) <= TOL


def test_conv_nd_axis_and_several_bottoms():
    # 1-D and 3-D
    c1 = build('name: "c" type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 '
               'pad: 1 stride: 2 }', [(2, 4, 9)])
    assert c1.blob(0).shape == (3, 4, 3) and c1.top_shapes([(2, 4, 9)]) == [(2, 3, 5)]
    c3 = build('name: "c" type: "Deconvolution" convolution_param { num_output: 2 '
               'kernel_size: 2 kernel_size: 3 kernel_size: 4 stride: 2 }', [(1, 3, 2, 3, 4)])
    assert c3.blob(0).shape == (3, 2, 2, 3, 4)
    assert c3.top_shapes([(1, 3, 2, 3, 4)]) == [(1, 2, 4, 7, 10)]
    assert tuple(c3(torch.randn(1, 3, 2, 3, 4)).shape) == (1, 2, 4, 7, 10)
    # channel axis 2: axes 0 and 1 are batch axes
    ca = build('name: "c" type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 '
               'axis: 2 weight_filler { type: "gaussian" std: 1 } }', [(2, 5, 4, 6, 6)])
    x = torch.randn(2, 5, 4, 6, 6)
    y = ca(x)
    assert tuple(y.shape) == (2, 5, 3, 4, 4)
    torch.testing.assert_close(y[1, 3], ca(x[1:2, 3:4])[0, 0])
    # two bottoms share the weights and give two tops
    two = build('name: "c" type: "Convolution" top: "a" top: "b" convolution_param { '
                'num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" std: 1 } }',
                [(1, 3, 4, 4), (1, 3, 4, 4)])
    a, b = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    ya, yb = two(a, b)
    torch.testing.assert_close(yb, two(b))
    torch.testing.assert_close(ya, two(a))


def test_deconv_large_pad_and_filler():
    layer = build('name: "d" type: "Deconvolution" convolution_param { num_output: 2 '
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


def test_crop_is_top_left_view_without_gradient_to_reference():
    layer = build('name: "c" type: "Crop" crop_param { axis: 1 offset: 1 offset: 2 offset: 4 }',
                  [(1, 4, 11, 12), (1, 2, 5, 6)])
    x = torch.arange(4 * 11 * 12, dtype=torch.float32).reshape(1, 4, 11, 12).requires_grad_()
    ref = torch.zeros(1, 2, 5, 6, requires_grad=True)
    y = layer(x, ref)
    assert torch.equal(y, x[:, 1:3, 2:7, 4:10])
    y.sum().backward()
    assert x.grad.sum() == 2 * 5 * 6 and ref.grad is None


class _PoolCrop(torch.nn.Module):  # pool (3/2, ceil) -> deconv x2 -> crop back to the input
    def __init__(self):
        super().__init__()
        self.pool = build('name: "p" type: "Pooling" pooling_param { kernel_size: 3 stride: 2 }',
                          [(1, 2, 17, 23)])
        self.up = build('name: "u" type: "Deconvolution" convolution_param { num_output: 2 '
                        'kernel_size: 4 stride: 2 bias_term: false }', [(1, 2, 8, 11)])
        self.up.blob(0).data.normal_()
        self.crop = build('name: "c" type: "Crop" crop_param { offset: 1 }',
                          [(1, 2, 18, 24), (1, 2, 17, 23)])

    def forward(self, x):
        return self.crop(self.up(self.pool(x)), x)


def test_pooling_crop_net_traces_with_free_size():
    net, dim = _PoolCrop().eval(), torch.export.Dim
    h, w = dim("h2", min=2), dim("w2", min=2)  # max_pool2d's own ceil rule guards on parity
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.randn(1, 2, 17, 23))
        exported = torch.export.export(net, (torch.randn(1, 2, 17, 23),), dynamic_shapes=(
            {2: 2 * h - 1, 3: 2 * w - 1},)).module()
        for hw in [(17, 23), (30, 9), (4, 41), (31, 5)]:  # sizes other than the traced one
            x = torch.randn(1, 2, *hw)
            want = net(x)
            assert want.shape == x.shape and torch.equal(traced(x), want)
            if hw[0] % 2 and hw[1] % 2:
                assert torch.equal(exported(x), want)
