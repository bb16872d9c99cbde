"""ContrastiveLoss: Caffe's own output on its oracle case (zoo/losses_contrastive: the modern
and the legacy loss, their gradients), and Caffe's loops transcribed, where the 1e-4 of its
backward makes the gradient differ from autograd's."""
import numpy as np
import pytest
import torch

from fcn_port.port.parity import run_forward_case
from helpers import ORACLE, layer_fails, make_layer


def test_caffes_outputs_and_gradients():
    row = run_forward_case(ORACLE / "zoo" / "losses_contrastive")
    assert row["kind"] == "backward" and row["compared"] > 10
    assert row["worst"] <= 1e-6, row


def _caffe(a, b, y, margin, legacy, top=1.0):
    """Forward_cpu and Backward_cpu of contrastive_loss_layer.cpp, loop for loop, in float32."""
    f = np.float32
    n, c = a.shape
    diff = (a - b).astype(f)
    d2 = np.zeros(n, f)
    loss = f(0)
    for i in range(n):
        d2[i] = f(np.dot(diff[i].astype(np.float64), diff[i]))
        if int(y[i]):
            loss = f(loss + d2[i])
        elif legacy:
            loss = f(loss + max(f(margin) - d2[i], f(0)))
        else:
            dist = max(f(margin) - np.sqrt(d2[i]), f(0))
            loss = f(loss + f(dist * dist))
    loss = f(f(loss / f(n)) / f(2))
    grads = []
    for sign in (1, -1):
        alpha = f(f(sign * top) / f(n))
        g = np.zeros_like(a)
        for j in range(n):
            if int(y[j]):
                g[j] = alpha * diff[j]
                continue
            if legacy:
                mdist, beta = f(f(margin) - d2[j]), -alpha
            else:
                dist = np.sqrt(d2[j])
                mdist = f(f(margin) - dist)
                beta = f(f(-alpha * mdist) / f(dist + f(1e-4)))
            g[j] = beta * diff[j] if mdist > 0 else 0
        grads.append(g)
    return loss, grads


@pytest.mark.parametrize("legacy", [False, True])
def test_caffes_loops(legacy):
    rng = np.random.default_rng(3)
    a = rng.normal(0, 0.3, (6, 4)).astype(np.float32)
    b = rng.normal(0, 0.3, (6, 4)).astype(np.float32)
    b[2] = a[2]  # dist 0: Caffe's 1e-4 keeps the gradient finite (here 0: diff is 0)
    y = np.array([1, 0, 0, 1, 0, 0], np.float32)
    margin = 0.9
    layer = make_layer(f'name: "c" type: "ContrastiveLoss" contrastive_loss_param {{ margin: '
                       f'{margin} legacy_version: {str(legacy).lower()} }}',
                       [(6, 4), (6, 4), (6,)])
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    loss = layer(ta, tb, torch.tensor(y))
    loss.backward(torch.tensor(2.0))
    want, (ga, gb) = _caffe(a, b, y, margin, legacy, top=2.0)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-6)
    np.testing.assert_allclose(ta.grad.numpy(), ga, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tb.grad.numpy(), gb, rtol=1e-6, atol=1e-9)
    if not legacy:  # autograd of the forward formula is not Caffe's gradient
        d = a - b
        dist = np.sqrt((d * d).sum(1))
        far = (y == 0) & (margin - dist > 0) & (dist > 0)
        autograd = -(margin - dist[far]) / dist[far] / 6 * 2  # d/da of max(m - dist, 0)^2 / 2N
        assert not np.allclose(ga[far], autograd[:, None] * d[far], rtol=1e-6)


def test_shapes_caffe_refuses():
    layer = make_layer('name: "c" type: "ContrastiveLoss"', [(2, 3), (2, 3), (2,)])
    assert layer.top_shapes([(2, 3, 1, 1), (2, 3), (2, 1, 1, 1)]) == [()]
    layer_fails("same C", layer.top_shapes, [(2, 3), (2, 4), (2,)])
    layer_fails("one value per sample", layer.top_shapes, [(2, 3), (2, 3), (3,)])
    layer_fails("exactly 3 bottoms", layer.top_shapes, [(2, 3), (2, 3)])
