"""The fused channels-last training path keeps the arithmetic of the eager model's step.

The fast path (``models.deploy.train_fast``) changes only which oneDNN kernels compute the
convolutions (NHWC, ReLU as a post-op) and so the float32 summation order of the gradients; a
Caffe SGD step on it must land within float32 rounding of the eager step, and the update's
element-wise in-place operations must give the same bits on channels-last parameters.
"""
import copy

import pytest
import torch

from fcn_port import models
from fcn_port.models.deploy import bench, train_fast
from fcn_port.models.deploy.onnx import sample_inputs
from fcn_port.solvers.bench import official_solver

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets

SMALL = dict(classes=5, widths=(4, 8, 8, 16, 16), fc=32)
needs_onednn = pytest.mark.skipif(not train_fast.available(), reason="no oneDNN in this torch")


def _pair(name):
    plain = bench.random_weights(models.build(name, **SMALL), seed=3)
    fast_model = copy.deepcopy(plain)
    return plain, fast_model


def _steps(model, fn, size, n, **solver):
    """n Caffe SGD steps of ``model`` (forward through ``fn``); the gradients of the first."""
    x, lab = sample_inputs(model.cfg, size, 1), bench.sample_labels(model.cfg, size, 1)
    loss, s, grads = bench.train_loss(model.cfg), official_solver(model, **solver), None

    def forward_backward():
        out = loss(fn(*x), lab)
        out.backward()
        return float(out.detach())
    losses = []
    for _ in range(n):
        losses += s.step(forward_backward)
        if grads is None:
            grads = {(layer, i): p.grad.clone() for layer, i, p, _ in model.param_specs
                     if p.grad is not None}
    return losses, grads, s


@needs_onednn
@pytest.mark.parametrize("name", ["voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn32s"])
def test_fast_step_matches_the_eager_step_within_float32_rounding(name):
    plain, fast_model = _pair(name)
    init = {k: p.detach().clone() for k, p in plain.state_dict().items()}
    fn = train_fast.train_fast(fast_model)
    ids = {id(p) for p in fast_model.parameters()}
    size, lr = (40, 48), 1e-7  # an lr that moves the weights by far more than an ulp
    want_losses, want_grads, _ = _steps(plain, plain, size, 3, base_lr=lr)
    got_losses, got_grads, solver = _steps(fast_model, fn, size, 3, base_lr=lr)
    assert {id(p) for p in fast_model.parameters()} == ids  # updated in place, no copies
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in fast_model.parameters() if p.dim() == 4)
    assert {id(lp.param) for lp in solver.params} == ids
    assert got_grads.keys() == want_grads.keys()
    for k, g in want_grads.items():
        scale = float(g.abs().max()) or 1.0
        assert float((got_grads[k] - g).abs().max()) / scale <= 1e-4, k
    for a, b in zip(got_losses, want_losses):
        assert abs(a - b) <= 1e-5 * abs(b)
    got, want = fast_model.state_dict(), plain.state_dict()
    for k, w in want.items():
        moved = float((w - init[k]).abs().max())
        diff = float((got[k] - w).abs().max())
        assert (diff == 0.0) if moved == 0.0 else diff / moved <= 1e-3, (k, diff, moved)


def test_the_update_gives_the_same_bits_on_channels_last_params():
    """Solver.apply_update on NHWC params (and NHWC gradients) = on NCHW ones, bit for bit."""
    a = bench.random_weights(models.build("voc-fcn32s", **SMALL), seed=5)
    b = train_fast.channels_last_(copy.deepcopy(a))
    g = torch.Generator().manual_seed(0)
    grads = {k: torch.randn(p.shape, generator=g) * 1e3 for k, p in a.state_dict().items()}
    sa, sb = official_solver(a, base_lr=1e-8), official_solver(b, base_lr=1e-8)
    for _ in range(3):
        for s, m in ((sa, a), (sb, b)):
            for layer, i, p, _ in m.param_specs:
                gr = grads[f"{layer}.{i}"]
                p.grad = gr.contiguous(memory_format=torch.channels_last) \
                    if m is b and gr.dim() == 4 else gr.clone()
            s.apply_update()
    for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), k
    for h, k in zip(sa.history, sb.history):
        assert torch.equal(h, k)


def test_without_fusion_or_layout_the_model_itself_is_used():
    model = models.build("voc-fcn32s", **SMALL)
    assert train_fast.train_fast(model, fuse=False, channels_last=False) is model
