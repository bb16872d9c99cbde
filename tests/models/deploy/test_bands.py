"""The constant bands (models/deploy/bands.py): the plan's constant region is checked against
the eager model's own feature maps, and the banded fast path against eager's outputs."""
import pytest
import torch

from fcn_port import models
from fcn_port.models.deploy import bands, bench, fast


def _model(name="voc-fcn8s", seed=0):
    return bench.random_weights(models.build(name, widths=(4, 8, 8, 8, 8), fc=16), seed).eval()


def _eager_maps(model, x):
    """Each trunk ReLU's output (the fused conv's output) of the eager model."""
    maps, handles = {}, []
    for conv, relu in fast.conv_relu_pairs(model):
        handles.append(model._modules[relu].register_forward_hook(
            lambda mod, inp, out, conv=conv: maps.__setitem__(conv, out.detach().clone())))
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return maps


@pytest.mark.parametrize("size", [(37, 45), (1, 1), (64, 23)])
def test_outside_the_plans_rectangles_the_eager_maps_are_the_constant(size):
    model = _model()
    f = fast.fused(model, bands=True)
    f.bands.begin(size)
    planned = [name for kind, name in f.bands.chain if kind == "conv" and f.bands.plan(name)]
    assert planned[:2] == ["conv1_1", "conv1_2"]
    for seed in (1, 2):  # two inputs: the constant is the same for both
        maps = _eager_maps(model, torch.randn((1, 3) + size, generator=torch.Generator()
                                              .manual_seed(seed)) * 50)
        for name in planned:
            compute, fill = f.bands.plan(name)
            y, c = maps[name][0], f.bands.constant[name].float()
            assert fill, name
            for r0, r1, c0, c1 in fill:
                got = y[:, r0:r1, c0:c1]
                assert torch.allclose(got, c.view(-1, 1, 1).expand_as(got), rtol=1e-5,
                                      atol=1e-5 * max(1.0, float(c.abs().max()))), (name, size)


def test_rectangles_cover_the_map_once_and_every_true_pixel():
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[10:30, 12:40] = True
    mask[0, :] = mask[:, 0] = mask[:, -1] = True
    mask[torch.rand(40, 50, generator=g) < 0.02] = True
    compute, fill = bands.rectangles(mask)
    count = torch.zeros(40, 50, dtype=torch.int32)
    covered = torch.zeros(40, 50, dtype=torch.bool)
    for r0, r1, c0, c1 in compute + fill:
        count[r0:r1, c0:c1] += 1
    for r0, r1, c0, c1 in compute:
        covered[r0:r1, c0:c1] = True
    assert bool((count == 1).all()) and bool(covered[mask].all())


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
