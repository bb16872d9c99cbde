"""The losses besides SoftmaxWithLoss (:mod:`.loss`) and ContrastiveLoss (:mod:`.contrastive`):
EuclideanLoss, SigmoidCrossEntropyLoss, HingeLoss, MultinomialLogisticLoss and InfogainLoss.

How Caffe computes them (BVLC master; every one has a scalar top, loss weight 1 by default)
--------------------------------------------------------------------------------------------
``EuclideanLoss`` (``euclidean_loss_layer.cpp``)
    Two bottoms with the same ``count(1)``. ``diff = a - b``; ``loss = dot(diff, diff) / N / 2``
    (``caffe_cpu_dot``, N = ``shape(0)``). Backward: ``±top_diff / N * diff`` into both
    bottoms (+ for ``a``).
``SigmoidCrossEntropyLoss`` (``sigmoid_cross_entropy_loss_layer.cpp``)
    Logits ``x`` and targets ``t`` (any values in [0, 1]; same count). Per element, in float,
    ``x (t - [x >= 0]) - log(1 + exp(x - 2 x [x >= 0]))``, the overflow-free form of
    ``t log p + (1 - t) log(1 - p)``, summed and negated; elements whose target equals
    ``loss_param.ignore_label`` (when set) are skipped. Divided by the normalizer of
    ``loss_param.normalization``, which for this layer defaults to ``BATCH_SIZE`` (N), not
    VALID (``normalize: true`` alone means VALID). Backward: ``(sigmoid(x) - t) * top_diff /
    normalizer``, 0 where ignored; the targets get no gradient.
``HingeLoss`` (``hinge_loss_layer.cpp``)
    Scores N x D and one label per sample. ``m = max(0, 1 + s)`` with the score of the true
    class negated first (``s_y -> -s_y``); ``L1`` (default): ``loss = asum(m) / N``, ``L2``:
    ``dot(m, m) / N``. Backward: ``sign(m)`` (L1) or ``2 m`` (L2) times ``top_diff / N``, with
    the sign flipped back at the true class. Labels get no gradient.
``MultinomialLogisticLoss`` (``multinomial_logistic_loss_layer.cpp``)
    Probabilities N x D (a Softmax's top) and labels: ``loss = -sum log(max(p_y, 1e-20)) / N``.
    Backward: ``-top_diff / N / max(p_y, 1e-20)`` at the true class, 0 elsewhere.
``InfogainLoss`` (``infogain_loss_layer.cpp``, BVLC master since PR #3855)
    Scores (softmax taken inside, along ``infogain_loss_param.axis``, default 1), labels, and
    the K x K matrix H as a third bottom or a ``.binaryproto`` (``source``). Per non-ignored
    position with label y: ``-sum_l H[y, l] log(max(p_l, 1e-20))``, summed and divided by the
    normalizer of ``loss_param.normalization`` (default VALID). Backward:
    ``(p_l * sum_k H[y, k] - H[y, l]) * top_diff / normalizer``. (The pre-2017 layer, which
    the oracle's Caffe build still has, took probabilities: fcn-port follows master.)

Where PyTorch differs
---------------------
``F.mse_loss`` averages over every element (Caffe: per sample, and halved);
``F.binary_cross_entropy_with_logits`` averages over elements and has no ignore label;
``F.multi_margin_loss`` averages over classes; ``F.nll_loss`` takes log-probabilities with no
floor. So each layer here computes Caffe's forward in float32 and gives Caffe's backward in a
custom autograd Function (the formulas above, not autograd of the forward: Caffe's gradient at
a hinge's kink and at the 1e-20 floor are its own). Labels are truncated with
``static_cast<int>``, as in the softmax loss.
"""
import math

import numpy as np
import torch

from .base import CaffeLayer
from .exact import dot
from .registry import register
from ..formats.proto import caffe_pb2

LOG_THRESHOLD = 1e-20  # Caffe's kLOG_THRESHOLD
_NORM = caffe_pb2.LossParameter


class _Loss(CaffeLayer):
    """Two bottoms, one scalar top."""

    def top_shapes(self, bottoms):
        if len(bottoms) != 2:
            self.fail(f"takes exactly 2 bottoms, got {len(bottoms)}")
        self.check(tuple(bottoms[0]), tuple(bottoms[1]))
        return [()]

    def check(self, a, b):  # pragma: no cover - every loss overrides it
        raise NotImplementedError


def _per_sample_labels(layer, scores, labels):
    if len(scores) < 1 or math.prod(labels) != scores[0]:
        layer.fail(f"needs one label per sample: scores {scores}, labels {labels}")


class _Euclidean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        diff = (a - b).detach()
        ctx.save_for_backward(diff)
        return dot(diff, diff) / a.shape[0] / 2

    @staticmethod
    def backward(ctx, top):
        (diff,) = ctx.saved_tensors
        alpha = top / diff.shape[0]
        return alpha * diff, -alpha * diff


@register("EuclideanLoss")
class EuclideanLoss(_Loss):
    def check(self, a, b):
        if len(a) < 1 or len(b) < 1 or math.prod(a[1:]) != math.prod(b[1:]) or \
                math.prod(a) != math.prod(b):
            self.fail(f"inputs must have the same dimension: {a} and {b}")

    def forward(self, a, b):
        return _Euclidean.apply(a, b.reshape(a.shape))


class _SigmoidCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t, valid, normalizer):
        pos = (x >= 0).to(x.dtype)
        terms = x * (t - pos) - torch.log(1 + torch.exp(x - 2 * x * pos))
        loss = -(terms * valid).sum() / normalizer
        ctx.save_for_backward(x, t, valid)
        ctx.normalizer = normalizer
        return loss

    @staticmethod
    def backward(ctx, top):
        x, t, valid = ctx.saved_tensors
        p = 0.5 * torch.tanh(0.5 * x) + 0.5  # Caffe's sigmoid
        return (p - t) * valid * (top / ctx.normalizer), None, None, None


@register("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(_Loss):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.loss_param
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        if p.HasField("normalization"):
            self.normalization = p.normalization
        elif p.HasField("normalize"):
            self.normalization = _NORM.VALID if p.normalize else _NORM.BATCH_SIZE
        else:
            self.normalization = _NORM.BATCH_SIZE  # this layer's own default in BVLC master

    def check(self, a, b):
        if math.prod(a) != math.prod(b):
            self.fail(f"logits {a} and targets {b} must have the same count")

    def forward(self, x, t):
        t = t.detach().reshape(x.shape)
        valid = (t != self.ignore_label) if self.ignore_label is not None else \
            torch.ones_like(t, dtype=torch.bool)
        count = int(valid.sum())
        n = {_NORM.FULL: x.numel(), _NORM.VALID: count, _NORM.BATCH_SIZE: x.shape[0],
             _NORM.NONE: 1}[self.normalization]
        return _SigmoidCE.apply(x, t, valid.to(x.dtype), float(max(1, n)))


class _Hinge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, label, l2):
        n = s.shape[0]
        flip = torch.ones_like(s).scatter_(1, label.unsqueeze(1), -1.0)
        m = torch.clamp(1 + s.detach() * flip, min=0)
        ctx.save_for_backward(m, flip)
        ctx.l2 = l2
        return (dot(m, m) if l2 else m.sum()) / n

    @staticmethod
    def backward(ctx, top):
        m, flip = ctx.saved_tensors
        d = 2 * m if ctx.l2 else torch.sign(m)
        return d * flip * (top / m.shape[0]), None, None


@register("HingeLoss")
class HingeLoss(_Loss):
    def check(self, a, b):
        _per_sample_labels(self, a, b)

    def forward(self, s, label):
        s2 = s.reshape(s.shape[0], -1)
        lab = label.detach().reshape(-1).to(torch.int64)
        if bool(((lab < 0) | (lab >= s2.shape[1])).any()):
            self.fail(f"label value outside [0, {s2.shape[1]})")
        l2 = self.lp.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2
        return _Hinge.apply(s2, lab, l2)


class _Multinomial(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, label):
        picked = torch.clamp(p.detach().gather(1, label.unsqueeze(1)), min=LOG_THRESHOLD)
        ctx.save_for_backward(picked, label)
        ctx.shape = p.shape
        return -torch.log(picked).sum() / p.shape[0]

    @staticmethod
    def backward(ctx, top):
        picked, label = ctx.saved_tensors
        grad = torch.zeros(ctx.shape, dtype=picked.dtype, device=picked.device)
        grad.scatter_(1, label.unsqueeze(1), -(top / ctx.shape[0]) / picked)
        return grad, None


@register("MultinomialLogisticLoss")
class MultinomialLogisticLoss(_Loss):
    def check(self, a, b):
        _per_sample_labels(self, a, b)

    def forward(self, p, label):
        p2 = p.reshape(p.shape[0], -1)
        lab = label.detach().reshape(-1).to(torch.int64)
        if bool(((lab < 0) | (lab >= p2.shape[1])).any()):
            self.fail(f"label value outside [0, {p2.shape[1]})")
        return _Multinomial.apply(p2, lab).reshape(())


class _Infogain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, lab, valid, h, normalizer):
        p = torch.softmax(scores, 1)  # (outer, K, inner)
        logp = torch.log(torch.clamp(p, min=LOG_THRESHOLD))
        rows = h[torch.where(valid, lab, 0)]  # (outer, inner, K): H[y, :]
        keep = valid.to(p.dtype)
        terms = (rows.permute(0, 2, 1) * logp).sum(1) * keep
        ctx.save_for_backward(p, rows, keep)
        ctx.normalizer = normalizer
        return -terms.sum() / normalizer

    @staticmethod
    def backward(ctx, top):
        p, rows, valid = ctx.saved_tensors
        h_y = rows.permute(0, 2, 1)  # (outer, K, inner)
        grad = (p * h_y.sum(1, keepdim=True) - h_y) * valid.unsqueeze(1)  # valid: 0/1 floats
        return grad * (top / ctx.normalizer), None, None, None, None


@register("InfogainLoss")
class InfogainLoss(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p, loss = lp.infogain_loss_param, lp.loss_param
        self.ignore_label = loss.ignore_label if loss.HasField("ignore_label") else None
        if not loss.HasField("normalization") and loss.HasField("normalize"):
            self.normalization = _NORM.VALID if loss.normalize else _NORM.BATCH_SIZE
        else:
            self.normalization = loss.normalization
        h = None
        if len(bottom_shapes) == 2:
            if not p.source:
                self.fail("takes the infogain matrix H as a third bottom or from "
                          "infogain_loss_param.source (a .binaryproto)")
            from ..formats.blobproto import read_blob_file

            data = read_blob_file(p.source).data
            k = int(math.isqrt(data.size))
            if k * k != data.size:
                self.fail(f"H from {p.source} has {data.size} values; expected K x K")
            h = torch.from_numpy(np.array(data, np.float32)).reshape(k, k)
        self.register_buffer("h", h, persistent=False)  # not a blob: no weights key

    def top_shapes(self, bottoms):
        if len(bottoms) not in (2, 3):
            self.fail(f"takes 2 or 3 bottoms (scores, labels[, H]), got {len(bottoms)}")
        scores = tuple(bottoms[0])
        axis = self.lp.infogain_loss_param.axis % len(scores)
        k = scores[axis]
        if math.prod(scores) // k != math.prod(bottoms[1]):
            self.fail(f"needs one label per position: scores {scores}, labels {tuple(bottoms[1])}")
        h = tuple(bottoms[2]) if len(bottoms) == 3 else tuple(self.h.shape)
        if math.prod(h) != k * k:
            self.fail(f"H {h} must hold K x K = {k} x {k} values")
        return [()]

    def forward(self, scores, label, *h):
        axis = self.lp.infogain_loss_param.axis % scores.dim()
        k = scores.shape[axis]
        x = scores.reshape(math.prod(scores.shape[:axis]), k, -1)
        lab = label.detach().reshape(x.shape[0], x.shape[2]).to(torch.int64)
        valid = lab != self.ignore_label if self.ignore_label is not None else \
            torch.ones_like(lab, dtype=torch.bool)
        if bool((valid & ((lab < 0) | (lab >= k))).any()):
            self.fail(f"label outside [0, {k})")
        hm = (h[0] if h else self.h).detach().reshape(k, k).to(scores.dtype)
        count = int(valid.sum())
        n = {_NORM.FULL: lab.numel(), _NORM.VALID: count, _NORM.BATCH_SIZE: x.shape[0],
             _NORM.NONE: 1}[self.normalization]
        return _Infogain.apply(x, lab, valid, hm, float(max(1, n)))
