"""ContrastiveLoss, as Caffe computes it (``contrastive_loss_layer.cpp``).

How Caffe computes it
---------------------
Bottoms: two features ``a`` and ``b`` of shape (N, C[, 1, 1]) and a similarity label ``y``
(N values; ``static_cast<int>`` of each, nonzero = similar). ``LayerSetUp`` checks that ``a``
and ``b`` have the same channels and height and width 1, and ``y`` channels, height and width
1. ``Forward_cpu``: ``diff = a - b``; per sample ``d2 = dot(diff, diff)`` (``caffe_cpu_dot``);
``loss += d2`` for a similar pair; for a dissimilar one ``loss += max(margin - sqrt(d2), 0)^2``
(``legacy_version``: ``max(margin - d2, 0)``, the loss of Hadsell et al. with the square
misplaced); then ``loss = loss / N / 2``, in float.

``Backward_cpu`` writes, with ``alpha = ±top_diff / N`` (+ for ``a``, - for ``b``): a similar
pair's gradient ``alpha * diff``; a dissimilar pair's ``beta * diff`` where ``mdist = margin -
dist > 0``, else 0, with ``beta = -alpha * mdist / (dist + 1e-4)`` (``legacy_version``:
``mdist = margin - d2``, ``beta = -alpha``). The label gets no gradient.

Where PyTorch differs: autograd of the forward formula gives ``-alpha * mdist / dist`` for a
dissimilar pair: Caffe's ``+ 1e-4`` (there to avoid a division by zero) makes its gradient
smaller, by 1e-4 / dist relative. The gradient is therefore Caffe's own, in a custom autograd
Function. Where they agree: the forward value (the dot products are float sums in another
order than OpenBLAS's, within float rounding).
"""
import torch

from .base import CaffeLayer
from .registry import register


class _Contrastive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, similar, margin, legacy):
        n = a.shape[0]
        diff = (a - b).reshape(n, -1)
        d2 = (diff * diff).sum(1)
        dist = torch.sqrt(d2)
        far = (margin - d2).clamp(min=0) if legacy else (margin - dist).clamp(min=0) ** 2
        loss = torch.where(similar, d2, far).sum() / n / 2
        ctx.save_for_backward(diff, d2, dist, similar)
        ctx.margin, ctx.legacy, ctx.shape = margin, legacy, a.shape
        return loss

    @staticmethod
    def backward(ctx, top):
        diff, d2, dist, similar = ctx.saved_tensors
        n = diff.shape[0]
        alpha = top / n
        if ctx.legacy:
            mdist, beta = ctx.margin - d2, -alpha.expand_as(d2)
        else:
            mdist = ctx.margin - dist
            beta = -alpha * mdist / (dist + 1e-4)
        scale = torch.where(similar, alpha.expand_as(d2), torch.where(mdist > 0, beta, 0))
        grad = (scale.unsqueeze(1) * diff).reshape(ctx.shape)
        return grad, -grad, None, None, None


@register("ContrastiveLoss")
class ContrastiveLoss(CaffeLayer):
    def top_shapes(self, bottoms):
        if len(bottoms) != 3:
            self.fail(f"takes exactly 3 bottoms (a, b, similarity), got {len(bottoms)}")
        a, b, y = (tuple(s) + (1,) * (4 - len(s)) for s in bottoms)
        if a[1] != b[1] or a[2:] != (1, 1) or b[2:] != (1, 1):
            self.fail(f"bottoms {tuple(bottoms[0])} and {tuple(bottoms[1])} must be (N, C, 1, 1) "
                      "with the same C")
        if y[1:] != (1, 1, 1) or y[0] != a[0] or b[0] != a[0]:
            self.fail(f"the similarity bottom {tuple(bottoms[2])} must hold one value per "
                      f"sample of {tuple(bottoms[0])}")
        return [()]

    def forward(self, a, b, y):
        p = self.lp.contrastive_loss_param
        similar = y.detach().reshape(-1).to(torch.int64) != 0
        return _Contrastive.apply(a, b, similar, float(p.margin), bool(p.legacy_version))
