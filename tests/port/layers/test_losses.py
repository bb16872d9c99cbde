"""EuclideanLoss, SigmoidCrossEntropyLoss, HingeLoss, MultinomialLogisticLoss: Caffe's
Forward_cpu and Backward_cpu transcribed loop for loop (the oracle's zoo/losses_* cases check
them against real Caffe through parity), at the places autograd would differ."""
import math

import numpy as np
import pytest
import torch

from fcn_port.port.layers import LayerError
from helpers import make_layer

f32 = np.float32


def _run(text, *bottoms, top_diff=1.0):
    layer = make_layer(text, [b.shape for b in bottoms])
    xs = [torch.tensor(b, requires_grad=i == 0) for i, b in enumerate(bottoms)]
    loss = layer(*xs)
    (loss * top_diff).backward()
    return float(loss.detach()), xs[0].grad.numpy()


def test_euclidean():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4, 2)).astype(f32), rng.standard_normal((3, 8)).astype(f32)
    loss, grad = _run('name: "e" type: "EuclideanLoss"', a, b, top_diff=0.5)
    diff = a.reshape(3, 8) - b
    assert loss == pytest.approx(float(f32(np.dot(diff.ravel(), diff.ravel())) / 3 / 2), rel=1e-6)
    np.testing.assert_allclose(grad, (f32(0.5) / 3 * diff).reshape(a.shape), rtol=1e-6)


def _sigmoid_ce(x, t, ignore, norm):
    loss, valid = f32(0), 0
    for xi, ti in zip(x.ravel(), t.ravel()):
        if ignore is not None and int(ti) == ignore:
            continue
        pos = f32(xi >= 0)
        loss -= xi * (ti - pos) - np.log(f32(1) + np.exp(xi - 2 * xi * pos))
        valid += 1
    n = {"BATCH_SIZE": x.shape[0], "VALID": valid}[norm]
    diff = (0.5 * np.tanh(0.5 * x) + 0.5 - t) / max(1, n)
    if ignore is not None:
        diff[t == ignore] = 0
    return loss / max(1, n), diff


@pytest.mark.parametrize("extra,ignore,norm", [("", None, "BATCH_SIZE"),
                                               ("loss_param { ignore_label: -1 normalize: true }",
                                                -1, "VALID")])
def test_sigmoid_cross_entropy_defaults_to_the_batch_size(extra, ignore, norm):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 5)) * 30).astype(f32)  # large |x|: the overflow-free form
    t = rng.random((4, 5)).astype(f32)
    t[0, :2] = -1
    loss, grad = _run(f'name: "s" type: "SigmoidCrossEntropyLoss" {extra}', x, t)
    want, diff = _sigmoid_ce(x, t, ignore, norm)
    assert math.isfinite(loss) and loss == pytest.approx(float(want), rel=1e-5)
    np.testing.assert_allclose(grad, diff, rtol=1e-5, atol=1e-7)


def _hinge(s, label, l2):
    n, d = s.shape
    m = s.copy()
    for i in range(n):
        m[i, int(label[i])] *= -1
    m = np.maximum(0, 1 + m)
    loss = (np.dot(m.ravel(), m.ravel()) if l2 else np.abs(m).sum()) / n
    g = (2 * m if l2 else np.sign(m)) / n
    for i in range(n):
        g[i, int(label[i])] *= -1
    return loss, g


@pytest.mark.parametrize("l2", [False, True])
def test_hinge_with_a_score_at_the_kink(l2):
    s = np.array([[0.5, -1.0, 2.0], [-1.0, 0.25, 1.0]], f32)  # -1 + 1 = 0: sign 0, no gradient
    label = np.array([2, 1], f32)
    text = 'name: "h" type: "HingeLoss"' + (" hinge_loss_param { norm: L2 }" if l2 else "")
    loss, grad = _run(text, s, label)
    want, g = _hinge(s, label, l2)
    assert loss == pytest.approx(float(want), rel=1e-6)
    np.testing.assert_allclose(grad, g, rtol=1e-6)
    assert grad[0, 1] == 0


def test_multinomial_logistic_floors_probabilities_at_1e_20():
    p = np.array([[0.2, 0.8, 0.0], [0.5, 0.25, 0.25]], f32)
    label = np.array([2, 0], f32)
    loss, grad = _run('name: "m" type: "MultinomialLogisticLoss"', p, label)
    assert loss == pytest.approx((-math.log(1e-20) - math.log(0.5)) / 2, rel=1e-6)
    want = np.zeros_like(p)
    want[0, 2], want[1, 0] = -0.5 / f32(1e-20), -0.5 / 0.5
    np.testing.assert_allclose(grad, want, rtol=1e-6)


def test_shapes_are_checked():
    with pytest.raises(LayerError):
        make_layer('name: "e" type: "EuclideanLoss"', [(2, 3), (2, 4)]).top_shapes([(2, 3), (2, 4)])
    with pytest.raises(LayerError):
        make_layer('name: "h" type: "HingeLoss"', [(2, 3), (3,)]).top_shapes([(2, 3), (3,)])


def _infogain_caffe(scores, label, h, ignore=None):
    """infogain_loss_layer.cpp (BVLC master) Forward_cpu and Backward_cpu, loop for loop."""
    outer, k, inner = scores.shape
    e = np.exp(scores - scores.max(1, keepdims=True))
    prob = e / e.sum(1, keepdims=True)
    loss, count, diff = 0.0, 0, np.zeros_like(prob)
    for i in range(outer):
        for j in range(inner):
            y = int(label[i, j])
            if ignore is not None and y == ignore:
                continue
            for l in range(k):
                loss -= h[y, l] * np.log(max(prob[i, l, j], 1e-20))
                diff[i, l, j] = prob[i, l, j] * h[y].sum() - h[y, l]
            count += 1
    return loss / max(1, count), diff / max(1, count)


def test_infogain_takes_scores_and_h_as_a_bottom_or_a_binaryproto(tmp_path):
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((2, 3, 4)).astype(f32)
    label = np.array([[0, 2, 1, 5], [1, 1, 0, 2]], f32)
    h = rng.random((3, 3)).astype(f32)
    text = 'name: "i" type: "InfogainLoss" loss_param { ignore_label: 5 }'
    layer = make_layer(text, [scores.shape, label.shape, (1, 1, 3, 3)])
    x = torch.tensor(scores, requires_grad=True)
    loss = layer(x, torch.tensor(label), torch.tensor(h).reshape(1, 1, 3, 3))
    loss.backward()
    want, diff = _infogain_caffe(scores.astype(np.float64), label, h.astype(np.float64), 5)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), diff, rtol=1e-4, atol=1e-6)
    from fcn_port.port.formats.blobproto import blob_pieces

    pieces, _ = blob_pieces(h.reshape(1, 1, 3, 3))  # Caffe's Blob::ToProto layout
    (tmp_path / "h.binaryproto").write_bytes(b"".join(bytes(p) if isinstance(p, bytes) else
                                                      p.tobytes() for p in pieces))
    from_file = make_layer(f'name: "i" type: "InfogainLoss" infogain_loss_param {{ source: '
                           f'"{tmp_path / "h.binaryproto"}" }} loss_param {{ ignore_label: 5 }}',
                           [scores.shape, label.shape])
    assert float(from_file(torch.tensor(scores), torch.tensor(label))) == pytest.approx(want,
                                                                                       rel=1e-5)
