"""MVN, Reduction, Tile, BatchReindex, Filter, SPP, Im2col, Parameter and Embed: Caffe's loops
transcribed where they define something autograd or torch would do otherwise (the zoo oracle
cases mix_neurons, mix_shapes and embed_filter_reindex check them against real Caffe)."""
import math

import numpy as np
import pytest
import torch

from fcn_port.port.layers import LayerError
from helpers import make_layer

f32 = np.float32


def test_mvn_adds_eps_after_the_root_and_keeps_caffes_gradient():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float32, requires_grad=True)
    layer = make_layer('name: "m" type: "MVN" mvn_param { eps: 0.5 }', [x.shape])
    dy = torch.randn(x.shape)
    y = layer(x)
    y.backward(dy)
    rows, g = x.detach().numpy().reshape(6, -1), dy.numpy().reshape(6, -1)
    mean = rows.mean(1, keepdims=True)
    std = np.sqrt(((rows - mean) ** 2).mean(1, keepdims=True)) + f32(0.5)  # eps after the root
    want = (rows - mean) / std
    np.testing.assert_allclose(y.detach().numpy().reshape(6, -1), want, rtol=1e-5, atol=1e-6)
    # mvn_layer.cpp Backward_cpu: (dy - mean(dy) - y * mean(dy * y)) / (std + eps)
    caffe = (g - g.mean(1, keepdims=True) - want * (g * want).mean(1, keepdims=True)) / std
    np.testing.assert_allclose(x.grad.numpy().reshape(6, -1), caffe, rtol=1e-4, atol=1e-6)
    x2 = x.detach().clone().requires_grad_(True)  # autograd's own gradient is another one
    c = x2.reshape(6, -1) - x2.reshape(6, -1).mean(1, keepdim=True)
    (c / (c.square().mean(1, keepdim=True).sqrt() + 0.5)).reshape(x.shape).backward(dy)
    assert not np.allclose(x2.grad.numpy().reshape(6, -1), caffe, rtol=1e-3)


@pytest.mark.parametrize("op,axis,coeff", [("SUM", 1, 1.0), ("ASUM", 2, 0.5), ("SUMSQ", 0, 1.0),
                                           ("MEAN", -1, 2.0)])
def test_reduction_reduces_every_axis_from_axis_on(op, axis, coeff):
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(f32)
    layer = make_layer(f'name: "r" type: "Reduction" reduction_param {{ operation: {op} '
                       f'axis: {axis} coeff: {coeff} }}', [x.shape])
    a = axis % 3
    rows = x.reshape(math.prod(x.shape[:a]), -1)
    fn = {"SUM": lambda r: r.sum(1), "ASUM": lambda r: np.abs(r).sum(1),
          "SUMSQ": lambda r: (r * r).sum(1), "MEAN": lambda r: r.sum(1) / r.shape[1]}[op]
    got = layer(torch.from_numpy(x))
    assert tuple(got.shape) == x.shape[:a] == layer.top_shapes([x.shape])[0]
    np.testing.assert_allclose(got.numpy().reshape(-1), coeff * fn(rows), rtol=1e-5, atol=1e-6)


def test_tile_copies_whole_blocks_and_reindex_and_filter_select_rows():
    x = torch.arange(12.0).reshape(2, 3, 2)
    tile = make_layer('name: "t" type: "Tile" tile_param { axis: 1 tiles: 2 }', [x.shape])
    assert torch.equal(tile(x), torch.cat([x, x], 1))  # not repeat_interleave
    reindex = make_layer('name: "b" type: "BatchReindex"', [x.shape, (3,)])
    assert torch.equal(reindex(x, torch.tensor([1.0, 1.9, 0.0])), x[[1, 1, 0]])
    filt = make_layer('name: "f" type: "Filter"', [x.shape, (2,)])
    assert torch.equal(filt(x, torch.tensor([0.5, 2.0])), x[1:])  # static_cast<int>(0.5) == 0
    with pytest.raises(LayerError):
        reindex(x, torch.tensor([2.0, 0.0, 0.0]))


def test_spp_levels_follow_caffes_kernel_and_pad():
    x = torch.randn(1, 2, 7, 6)
    spp = make_layer('name: "s" type: "SPP" spp_param { pyramid_height: 3 }', [x.shape])
    levels = spp.levels(tuple(x.shape))
    # level 2: 4 bins; kernel ceil(7/4)=2, ceil(6/4)=2; pad (8-7+1)//2=1, (8-6+1)//2=1
    assert (levels[2].kernel, levels[2].pad, levels[2].stride) == ((2, 2), (1, 1), (2, 2))
    with pytest.raises(LayerError):  # width 5: pad (8-5+1)//2=2 reaches kernel 2, as in Caffe
        spp.top_shapes([(1, 2, 7, 5)])
    y = spp(x)
    tops = [pool(x) for pool in levels]
    assert y.shape == (1, sum(t[0].numel() for t in tops)) == spp.top_shapes([x.shape])[0]
    assert torch.equal(y[0, :2], x.amax((2, 3))[0])  # level 0 is a global max


def test_im2col_is_caffes_column_layout_with_dilation():
    x = torch.randn(1, 2, 5, 6)
    layer = make_layer('name: "i" type: "Im2col" convolution_param { kernel_h: 2 kernel_w: 3 '
                       'dilation: 2 stride: 1 }', [x.shape])
    y = layer(x)
    assert y.shape == (1, 12, 3, 2)
    for c in range(2):  # im2col_cpu: channel (c * kh + i) * kw + j holds x[c, h + 2i, w + 2j]
        for i in range(2):
            for j in range(3):
                assert torch.equal(y[0, (c * 2 + i) * 3 + j], x[0, c, 2 * i:2 * i + 3, 2 * j:2 * j + 2])


def test_parameter_top_is_its_blob_and_embed_looks_up_rows():
    param = make_layer('name: "p" type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }',
                       [])
    assert param().data_ptr() == param.blob(0).data_ptr() and torch.all(param() == 0)
    embed = make_layer('name: "e" type: "Embed" embed_param { num_output: 3 input_dim: 4 }',
                       [(2, 2)])
    with torch.no_grad():
        embed.blob(0).copy_(torch.arange(12.0).reshape(4, 3))
        embed.blob(1).fill_(0.5)
    idx = torch.tensor([[3.7, 0.0], [1.0, 3.0]])
    y = embed(idx)
    assert y.shape == (2, 2, 3) and torch.equal(y[0, 0], torch.tensor([9.5, 10.5, 11.5]))
    y.sum().backward()
    assert embed.blob(0).grad[3].tolist() == [2.0, 2.0, 2.0]  # row 3 used twice
    with pytest.raises(LayerError):
        embed(torch.tensor([4.0]))


def test_hdf5_output_writes_data_and_label_datasets(tmp_path):
    import h5py

    out = tmp_path / "dump.h5"
    layer = make_layer(f'name: "o" type: "HDF5Output" hdf5_output_param {{ file_name: "{out}" }}',
                       [(2, 3), (2,)])
    assert layer.top_shapes([(2, 3), (2,)]) == []
    x, y = torch.arange(6.0).reshape(2, 3), torch.tensor([1.0, 0.0])
    assert layer(x, y) == ()
    with h5py.File(out, "r") as f:
        assert f["data"][()].tolist() == x.tolist() and f["label"][()].tolist() == [1.0, 0.0]
    layer(x + 1, y)  # a second pass rewrites the file whole
    with h5py.File(out, "r") as f:
        assert f["data"][0, 0] == 1.0
