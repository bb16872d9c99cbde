"""The blank margins (models/deploy/bands.py): the plan's stretched blank is checked against
the eager model's own feature maps outside each image rectangle, and the banded fast path
against eager's outputs."""
import pytest
import torch

from fcn_port import models
from fcn_port.models.deploy import bands, bench, fast


def _model(name="voc-fcn8s", seed=0):
    return bench.random_weights(models.build(name, widths=(4, 8, 8, 8, 8), fc=16), seed).eval()


def _eager_maps(model, chain, x):
    """Each chain layer's output in the eager model: a convolution's after its ReLU."""
    relu_of = dict(fast.conv_relu_pairs(model))
    maps, handles = {}, []
    for kind, name in chain:
        mod = model._modules[relu_of[name] if kind == "conv" else name]
        handles.append(mod.register_forward_hook(
            lambda m, inp, out, name=name: maps.__setitem__(name, out.detach().clone())))
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return maps


def _stretched(blank, rows, cols):
    """The blank map with its segments applied by index (not by the module's copies)."""
    def index(segments):
        return torch.cat([torch.full((stop - start,), source) if repeat else
                          torch.arange(source, source + stop - start)
                          for start, stop, source, repeat in segments])
    return blank[:, :, index(rows)][:, :, :, index(cols)]


@pytest.mark.parametrize("size", [(37, 45), (1, 1), (64, 23), (130, 97)])
def test_outside_the_image_rectangle_the_eager_maps_are_the_stretched_blank(size):
    model = _model()
    f = fast.fused(model, bands=True)
    f.bands.begin((3,) + size)
    planned = [name for _, name in f.bands.chain if f.bands.plan(name)]
    assert planned[:3] == ["conv1_1", "conv1_2", "pool1"]
    if size == (130, 97):  # the blank is run on a shorter input, by multiples of 32
        rect, blank, rows, cols = f.bands.plan("conv1_1")
        for real, short in zip((130 + 198, 97 + 198), blank.shape[2:]):
            assert short < real and (real - short) % 32 == 0
    for seed in (1, 2):  # two inputs: the margins are the same for both
        x = torch.randn((1, 3) + size, generator=torch.Generator().manual_seed(seed)) * 50
        maps = _eager_maps(model, f.bands.chain, x)
        for name in planned:
            (r0, r1, c0, c1), blank, rows, cols = f.bands.plan(name)
            want, got = maps[name][0], _stretched(blank, rows, cols)[0]
            assert got.shape == want.shape, name
            outside = torch.ones(want.shape[1:], dtype=torch.bool)
            outside[r0:r1, c0:c1] = False
            assert bool(outside.any()), name
            tol = 1e-5 * max(1.0, float(want.abs().max()))
            assert torch.allclose(got[:, outside], want[:, outside], rtol=1e-5, atol=tol), \
                (name, size)


def test_block_minus_rectangle_covers_the_rest_once():
    block = (2, 30, 3, 40)
    for rect in [(10, 20, 12, 25), (0, 50, 0, 50), (5, 5, 0, 9), (25, 40, 35, 60),
                 (0, 10, 10, 20)]:
        count = torch.zeros(50, 60, dtype=torch.int32)
        for r0, r1, c0, c1 in bands._minus(block, rect):
            count[r0:r1, c0:c1] += 1
        want = torch.zeros(50, 60, dtype=torch.int32)
        want[block[0]:block[1], block[2]:block[3]] = 1
        if rect[1] > rect[0] and rect[3] > rect[2]:
            want[rect[0]:rect[1], rect[2]:rect[3]] = 0
        assert torch.equal(count, want), rect


@pytest.mark.parametrize("name", ["voc-fcn8s", "voc-fcn32s", "siftflow-fcn16s",
                                  "nyud-fcn32s-color-hha", "voc-fcn-alexnet"])
def test_banded_fast_path_equals_eager(name):
    model = _model(name, seed=3)
    f = fast.fused(model, bands=True)
    if name == "voc-fcn-alexnet":  # conv1 is 11 x 11 stride 4: no banded trunk
        assert f.bands is None
    for size in [(41, 30), (3, 5)]:
        xs = tuple(torch.randn((1, c) + size) * 50 for c in
                   [s.dim[1] for s in models.net_param(model.cfg, "deploy").layer[0]
                    .input_param.shape])
        with torch.inference_mode():
            assert fast._error(f(*xs), model(*xs)) <= 1e-5
