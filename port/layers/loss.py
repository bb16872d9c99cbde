"""Softmax, SoftmaxWithLoss, Accuracy and ArgMax with Caffe's exact rules.

``Softmax`` is ``torch.softmax`` along ``softmax_param.axis`` (default 1, negative counts from
the end); its gradient is autograd's, as Caffe's.

``SoftmaxWithLoss`` (bottoms: scores, labels; tops: loss, optionally the probabilities):

* Labels are a float blob holding integers; Caffe truncates each with ``static_cast<int>``.
  The label blob may have any shape whose element count is ``outer * inner`` (the score's
  dims before and after the softmax axis). A pixel whose label equals
  ``loss_param.ignore_label`` (only when that field is set) adds nothing and counts nothing.
* ``loss = -sum log(max(p_label, FLT_MIN)) / normalizer`` (the clamp keeps the loss finite
  where ``F.cross_entropy``, computed from log-softmax, would give up to ~100 per pixel).
* ``normalizer = max(1, n)`` with n by ``loss_param.normalization``: ``FULL`` = outer * inner
  (ignored pixels included), ``VALID`` (default) = non-ignored pixels, ``BATCH_SIZE`` = outer,
  ``NONE`` = 1. The legacy ``normalize`` bool is used only when ``normalization`` is not set:
  ``true`` means VALID, ``false`` BATCH_SIZE. (``F.cross_entropy(reduction='mean')`` is VALID
  without the ``max(1, .)``: it gives NaN on an all-ignored batch where Caffe gives 0.)
* Backward: ``(p - onehot(label)) * top_diff / normalizer``, zero at ignored pixels. Caffe never
  propagates to the labels, and the second top (probabilities) passes no gradient back
  (Caffe's backward reads only the loss top's diff). Both are done with a custom autograd
  Function. On CPU the loss terms are added one by one in float32 as CPU Caffe does (a
  pairwise or float64 sum is more accurate, and differs from Caffe by ~1e-6 relative on a
  500x500 image); on other devices the sum is taken in float64 and rounded once.

``Accuracy`` (no gradient): for each non-ignored pixel, the true class is right when at most
``top_k`` classes (itself included) score ``>=`` its score, so a tie with a higher-index class
counts against it. Result: right / counted, or 0 when nothing is counted. Optional second top:
per-class accuracy (0 for classes that never occur).

``ArgMax`` (no gradient): the ``top_k`` largest values along ``axis``, or over everything but
the first axis when no axis is given. Ties go to the **highest** index (Caffe sorts
(value, index) pairs in descending order), where ``torch.argmax`` and ``numpy.argmax`` pick the
lowest. Output shapes: with ``axis``, the bottom's shape with that axis set to ``top_k``,
holding indices, or the values instead when ``out_max_val``; without ``axis``,
``(N, 1, top_k)`` of indices, or ``(N, 2, top_k)`` with indices then values when
``out_max_val``, padded with trailing 1s to the bottom's number of axes.
"""
import math

import numpy as np
import torch

from .base import CaffeLayer, canonical_axis
from .registry import register
from ..formats.proto import caffe_pb2

FLT_MIN = float(np.finfo(np.float32).tiny)
_NORM = caffe_pb2.LossParameter


def _split(shape, axis):
    """(outer, channels, inner) of ``shape`` around ``axis``."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


@register("Softmax")
class Softmax(CaffeLayer):
    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        canonical_axis(self, self.lp.softmax_param.axis, len(bottoms[0]))
        return [tuple(bottoms[0])]

    def forward(self, x):
        return torch.softmax(x, canonical_axis(self, self.lp.softmax_param.axis, x.dim()))


class _SoftmaxLossFunction(torch.autograd.Function):
    """Forward: (loss, prob). Backward: Caffe's gradient to the scores only."""

    @staticmethod
    def forward(ctx, x, lab, valid, axis, mode):
        outer, c, inner = _split(x.shape, axis)
        prob = torch.softmax(x, axis)
        safe = torch.where(valid, lab, 0)
        picked = prob.reshape(outer, c, inner).gather(1, safe.unsqueeze(1)).squeeze(1)
        terms = -torch.log(torch.clamp(picked, min=FLT_MIN))
        total = _caffe_sum(terms[valid], x)
        norm = _normalizer(mode, outer, inner, valid.sum(), x)
        ctx.save_for_backward(prob, safe, valid, norm)
        ctx.mark_non_differentiable(prob)
        ctx.shape = (outer, c, inner)
        return total / norm, prob

    @staticmethod
    def backward(ctx, grad_loss, grad_prob):
        prob, safe, valid, norm = ctx.saved_tensors
        outer, c, inner = ctx.shape
        diff = prob.reshape(outer, c, inner).clone()
        diff.scatter_add_(1, safe.unsqueeze(1), torch.full_like(diff[:, :1], -1.0))
        diff = torch.where(valid.unsqueeze(1), diff, 0)
        weight = grad_loss / norm            # top diff (the loss weight) / normalizer, in float
        return (diff * weight).reshape(prob.shape), None, None, None, None


def _caffe_sum(terms, like):
    """Sum as CPU Caffe does, adding the terms one by one in their own precision (numpy's
    cumsum does exactly that; torch's sum and cumsum are more accurate, which for 10^5 terms
    differs from Caffe by ~1e-6 relative). Elsewhere: a float64 sum rounded once."""
    if terms.numel() == 0:
        return like.new_zeros(())
    if terms.device.type == "cpu":
        return like.new_tensor(np.cumsum(terms.numpy())[-1])
    return terms.sum(dtype=torch.float64).to(like.dtype)


def _normalizer(mode, outer, inner, valid_count, like):
    if mode == _NORM.FULL:
        n = like.new_tensor(float(outer * inner))
    elif mode == _NORM.VALID:
        n = valid_count.to(like.dtype)
    elif mode == _NORM.BATCH_SIZE:
        n = like.new_tensor(float(outer))
    else:
        n = like.new_tensor(1.0)
    return torch.clamp(n, min=1.0)


def _loss_counts(layer, bottoms, axis_field):
    """Caffe's checks shared by SoftmaxWithLoss and Accuracy; (axis, outer, channels, inner)."""
    if len(bottoms) != 2:
        layer.fail(f"takes exactly 2 bottoms (scores, labels), got {len(bottoms)}")
    scores, labels = tuple(bottoms[0]), tuple(bottoms[1])
    axis = canonical_axis(layer, axis_field, len(scores))
    outer, c, inner = _split(scores, axis)
    if outer * inner != math.prod(labels):
        layer.fail(f"number of labels must match number of predictions: scores {scores} with "
                   f"axis {axis} need {outer * inner} labels, label shape {labels} has "
                   f"{math.prod(labels)}")
    return axis, outer, c, inner


def _check_labels(layer, lab, valid, c):
    bad = valid & ((lab < 0) | (lab >= c))
    if bool(bad.any()):
        layer.fail(f"label value {int(lab[bad][0])} is outside [0, {c}) (and not ignore_label)")


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.loss_param
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        if not p.HasField("normalization") and p.HasField("normalize"):
            self.normalization = _NORM.VALID if p.normalize else _NORM.BATCH_SIZE
        else:
            self.normalization = p.normalization
        if self.normalization not in (_NORM.FULL, _NORM.VALID, _NORM.BATCH_SIZE, _NORM.NONE):
            self.fail(f"unknown normalization mode {self.normalization}")
        if not 1 <= len(lp.top) <= 2:
            self.fail(f"has 1 or 2 tops (loss, probabilities), got {len(lp.top)}")

    def top_shapes(self, bottoms):
        _loss_counts(self, bottoms, self.lp.softmax_param.axis)
        if len(bottoms[0]) == 0 or len(bottoms[1]) == 0 or bottoms[0][0] != bottoms[1][0]:
            self.fail(f"scores {tuple(bottoms[0])} and labels {tuple(bottoms[1])} must have the "
                      f"same first dimension")
        return [()] + [tuple(bottoms[0])] * (len(self.lp.top) - 1)

    def forward(self, x, label):
        axis, outer, c, inner = _loss_counts(self, [x.shape, label.shape],
                                             self.lp.softmax_param.axis)
        lab = label.detach().reshape(outer, inner).to(torch.int64)
        valid = lab != self.ignore_label if self.ignore_label is not None else \
            torch.ones_like(lab, dtype=torch.bool)
        _check_labels(self, lab, valid, c)
        loss, prob = _SoftmaxLossFunction.apply(x, lab, valid, axis, self.normalization)
        return (loss, prob) if len(self.lp.top) == 2 else loss


@register("Accuracy")
class Accuracy(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.accuracy_param
        self.top_k = p.top_k
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        if not 1 <= len(lp.top) <= 2:
            self.fail(f"has 1 or 2 tops (accuracy, per-class accuracy), got {len(lp.top)}")

    def top_shapes(self, bottoms):
        if len(bottoms) == 2 and self.top_k > math.prod(bottoms[0]) // max(1, math.prod(bottoms[1])):
            self.fail(f"top_k {self.top_k} must be at most the number of classes")
        axis, _, c, _ = _loss_counts(self, bottoms, self.lp.accuracy_param.axis)
        return [()] + [(c,)] * (len(self.lp.top) - 1)

    @torch.no_grad()
    def forward(self, x, label):
        axis, outer, c, inner = _loss_counts(self, [x.shape, label.shape],
                                             self.lp.accuracy_param.axis)
        x3 = x.reshape(outer, c, inner)
        lab = label.reshape(outer, inner).to(torch.int64)
        valid = lab != self.ignore_label if self.ignore_label is not None else \
            torch.ones_like(lab, dtype=torch.bool)
        _check_labels(self, lab, valid, c)
        safe = torch.where(valid, lab, 0)
        true_score = x3.gather(1, safe.unsqueeze(1))
        at_least = (x3 >= true_score).sum(1)            # the true class counts itself
        right = valid & (at_least <= self.top_k)
        count = valid.sum()
        acc = torch.where(count > 0, right.sum().to(x.dtype) / count.clamp(min=1).to(x.dtype),
                          x.new_zeros(()))
        if len(self.lp.top) == 1:
            return acc
        seen = torch.bincount(safe[valid], minlength=c).to(x.dtype)
        hits = torch.bincount(safe[right], minlength=c).to(x.dtype)
        return acc, torch.where(seen > 0, hits / seen.clamp(min=1), 0)


@register("ArgMax")
class ArgMax(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.argmax_param
        self.out_max_val, self.top_k = p.out_max_val, p.top_k
        self.has_axis = p.HasField("axis")
        if self.top_k < 1:
            self.fail(f"top_k must be at least 1, got {self.top_k}")

    def _axis(self, ndim):
        return canonical_axis(self, self.lp.argmax_param.axis, ndim)

    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        shape = list(bottoms[0])
        if self.has_axis:
            axis = self._axis(len(shape))
            if self.top_k > shape[axis]:
                self.fail(f"top_k {self.top_k} is larger than axis {axis} ({shape[axis]})")
            shape[axis] = self.top_k
            return [tuple(shape)]
        if self.top_k > math.prod(shape[1:]):
            self.fail(f"top_k {self.top_k} is larger than the {math.prod(shape[1:])} values "
                      f"per instance of a {tuple(shape)} bottom")
        top = [1] * max(3, len(shape))
        top[0], top[1], top[2] = shape[0], 2 if self.out_max_val else 1, self.top_k
        return [tuple(top)]

    def _top_k(self, v):
        """Largest ``top_k`` along the last dim, ties to the highest index: (values, indices)."""
        n = v.shape[-1]
        flipped = v.flip(-1)                # stable descending sort of the reversed values
        if self.top_k == 1:
            idx = flipped.argmax(-1, keepdim=True)
            val = flipped.gather(-1, idx)
        else:
            val, idx = torch.sort(flipped, dim=-1, descending=True, stable=True)
            val, idx = val[..., :self.top_k], idx[..., :self.top_k]
        return val, (n - 1 - idx).to(v.dtype)

    @torch.no_grad()
    def forward(self, x):
        if self.has_axis:
            axis = self._axis(x.dim())
            val, idx = self._top_k(x.movedim(axis, -1))
            return (val if self.out_max_val else idx).movedim(-1, axis).contiguous()
        val, idx = self._top_k(x.reshape(x.shape[0], -1))
        top = torch.stack([idx, val], 1) if self.out_max_val else idx.unsqueeze(1)
        return top.reshape(self.top_shapes([tuple(x.shape)])[0])
