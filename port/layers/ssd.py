"""The SSD fork's layers (weiliu89/caffe, branch ssd) that released detection models carry:
``Normalize``, ``Permute`` and ``PriorBox`` (``DetectionOutput``: :mod:`.detection`).

How that Caffe computes them
----------------------------
``Normalize`` (``normalize_layer.cpp``, ParseNet's L2 normalization): per sample, with
``across_spatial`` (default) one norm over all C x H x W values, ``norm = (sum x^2 + eps) ^
0.5`` and ``y = x * (1 / norm)`` (the reciprocal taken in double); otherwise one norm per
position over the channels, ``norm = (eps + sum_c x^2) ^ 0.5``, and ``y = x / norm``. Then
``y *= scale``: blob 0, one value (``channel_shared``, default) or one per channel, filled by
``scale_filler`` (default constant 1). ``eps`` defaults to 1e-10. Caffe's backward is written by hand:
``scale * (dy - x * sum(x * dy) / norm^2) / norm`` for the bottom (the sum over what the norm
covers), and ``sum(y * dy) / scale`` for the scale. With a per-channel scale that is not the
derivative of the forward (the true one weights each channel's ``dy`` by its scale inside the
sum), so the gradient is Caffe's, in a custom autograd Function.

``Permute`` (``permute_layer.cpp``): the top is the bottom's axes in ``order``, followed by the
axes ``order`` leaves out, in their order (``order`` empty: the identity). Each axis at most
once, each below the bottom's number of axes. Its backward permutes back.

``PriorBox`` (``prior_box_layer.cpp``): the default boxes of feature map ``bottom[0]`` (H x W)
on image ``bottom[1]`` (or ``img_size`` / ``img_h``, ``img_w``). Aspect ratios: 1, then each
given one not within 1e-6 of one already listed, followed by its reciprocal with ``flip``
(default true). At every position, row-major, with ``center = ((w + offset) * step_w, (h +
offset) * step_h)`` (``offset`` 0.5, ``step`` the given one or image size / map size in
float), for each ``min_size`` s, *truncated to an integer* (``int min_size_ = min_sizes_[s]``):
the box s x s; with ``max_size`` m (also truncated) the box ``sqrt(s m)`` square; then
``s sqrt(ar)`` x ``s / sqrt(ar)`` for each other ratio. Each box is written as
``((cx - bw / 2) / img_w, (cy - bh / 2) / img_h, (cx + bw / 2) / img_w, (cy + bh / 2) /
img_h)`` (those divisions in double, the box sizes in float), clipped to [0, 1] with ``clip``
(default true). The top is 1 x 2 x (H W priors 4): the boxes, then their variances (one value
for all, default 0.1, or four repeated per box). It has no gradient.

Where PyTorch differs
---------------------
None of them exists in PyTorch; ``F.normalize`` divides by ``max(norm, eps)`` where Normalize
adds eps under the root, and ``torch.permute`` needs every axis listed.
"""
import math

import numpy as np
import torch

from .base import CaffeLayer
from .registry import register


@register("Normalize")
class Normalize(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.norm_param
        shape = tuple(bottom_shapes[0]) if bottom_shapes else ()
        if len(bottom_shapes) != 1 or len(shape) < 2:
            self.fail(f"takes one bottom with a channel axis, got {[tuple(b) for b in bottom_shapes]}")
        filler = p.scale_filler if p.HasField("scale_filler") else None
        blob = self.add_blob((1,) if p.channel_shared else (shape[1],), filler)
        if filler is None:
            with torch.no_grad():
                blob.fill_(1.0)

    def top_shapes(self, bottoms):
        return [tuple(bottoms[0])]

    def forward(self, x):
        p = self.lp.norm_param
        scale = self.blob(0)
        view = scale.reshape((1,) * x.dim() if p.channel_shared else
                             (1, -1) + (1,) * (x.dim() - 2))
        return _Normalize.apply(x, view, float(np.float32(p.eps)), p.across_spatial)


class _Normalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, eps, across):
        if across:
            norm = torch.pow((x * x).reshape(x.shape[0], -1).sum(1) + eps, 0.5)
            norm = norm.reshape((-1,) + (1,) * (x.dim() - 1))
            y = x * (1.0 / norm.double()).to(x.dtype)  # Caffe's Dtype(1.0 / norm)
        else:
            norm = torch.pow(eps + (x * x).sum(1, keepdim=True), 0.5)
            y = x / norm
        top = y * scale
        ctx.save_for_backward(x, scale, norm, top)
        ctx.across = across
        return top

    @staticmethod
    def backward(ctx, dy):
        x, scale, norm, top = ctx.saved_tensors
        dims = tuple(range(1, x.dim())) if ctx.across else (1,)
        dx = (dy - x * (x * dy).sum(dims, keepdim=True) / (norm * norm)) / norm * scale
        over = [d for d in range(x.dim()) if scale.shape[d] == 1]
        ds = (top * dy).sum(over, keepdim=True).reshape(scale.shape) / scale
        return dx, ds, None, None


@register("Permute")
class Permute(CaffeLayer):
    def order(self, ndim):
        order = list(self.lp.permute_param.order)
        if len(set(order)) != len(order) or any(o >= ndim for o in order):
            self.fail(f"order {order} must name distinct axes below {ndim}")
        return order + [a for a in range(ndim) if a not in order]

    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        shape = tuple(bottoms[0])
        return [tuple(shape[a] for a in self.order(len(shape)))]

    def forward(self, x):
        return x.permute(self.order(x.dim()))


@register("PriorBox")
class PriorBox(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.prior_box_param
        if not p.min_size or min(p.min_size) <= 0:
            self.fail(f"needs positive min_size values, got {list(p.min_size)}")
        if p.max_size and (len(p.max_size) != len(p.min_size)
                           or any(m <= s for s, m in zip(p.min_size, p.max_size))):
            self.fail(f"max_size {list(p.max_size)} needs one value above each min_size "
                      f"{list(p.min_size)}")
        if len(p.variance) not in (0, 1, 4) or any(v <= 0 for v in p.variance):
            self.fail(f"variance takes 1 or 4 positive values, got {list(p.variance)}")
        if p.HasField("img_size") and (p.HasField("img_h") or p.HasField("img_w")):
            self.fail("give img_size or img_h and img_w, not both")
        if p.HasField("step") and (p.HasField("step_h") or p.HasField("step_w")):
            self.fail("give step or step_h and step_w, not both")
        ratios = [np.float32(1.0)]
        for ar in (np.float32(a) for a in p.aspect_ratio):
            if all(abs(float(ar) - float(r)) >= 1e-6 for r in ratios):
                ratios.append(ar)
                if p.flip:
                    ratios.append(np.float32(1.0 / float(ar)))
        self.ratios = ratios
        self.priors = len(ratios) * len(p.min_size) + len(p.max_size)

    def top_shapes(self, bottoms):
        if len(bottoms) != 2 or len(bottoms[0]) != 4 or len(bottoms[1]) != 4:
            self.fail(f"takes a feature map and the image (both N x C x H x W), got "
                      f"{[tuple(b) for b in bottoms]}")
        return [(1, 2, bottoms[0][2] * bottoms[0][3] * self.priors * 4)]

    def geometry(self):
        """What the boxes depend on besides the two bottoms' sizes: the (width, height) of each
        box at a position in Caffe's order (float32 values), the image size and step when the
        prototxt gives them (else None: from the bottoms), the offset, clip and variance."""
        p, f32 = self.lp.prior_box_param, np.float32
        sizes = []
        for s, min_size in enumerate(int(v) for v in p.min_size):
            sizes.append((f32(min_size), f32(min_size)))
            if p.max_size:
                side = f32(math.sqrt(min_size * int(p.max_size[s])))
                sizes.append((side, side))
            for ar in self.ratios[1:]:
                sizes.append((f32(min_size) * np.sqrt(ar), f32(min_size) / np.sqrt(ar)))
        img = (p.img_size,) * 2 if p.HasField("img_size") else \
            (p.img_h, p.img_w) if p.img_h and p.img_w else None
        step = (p.step_h, p.step_w) if p.step_h and p.step_w else \
            (p.step, p.step) if p.step else None
        return dict(sizes=[(float(w), float(h)) for w, h in sizes], img=img,
                    step=None if step is None else tuple(float(f32(v)) for v in step),
                    offset=float(f32(p.offset)), clip=p.clip,
                    variance=[float(f32(v)) for v in p.variance] or [0.1])

    @torch.no_grad()
    def forward(self, fmap, image):
        g, f32 = self.geometry(), np.float32
        (h_map, w_map), (img_h, img_w) = fmap.shape[2:], g["img"] or image.shape[2:]
        step_h, step_w = g["step"] or (f32(img_h) / f32(h_map), f32(img_w) / f32(w_map))
        bw = np.array([b[0] for b in g["sizes"]], np.float64)
        bh = np.array([b[1] for b in g["sizes"]], np.float64)
        off = f32(g["offset"])
        cx = ((np.arange(w_map, dtype=f32) + off) * f32(step_w)).astype(np.float64)
        cy = ((np.arange(h_map, dtype=f32) + off) * f32(step_h)).astype(np.float64)
        cy, cx = cy[:, None, None], cx[None, :, None]
        boxes = np.stack(np.broadcast_arrays((cx - bw / 2.) / img_w, (cy - bh / 2.) / img_h,
                                             (cx + bw / 2.) / img_w, (cy + bh / 2.) / img_h),
                         -1).astype(f32).reshape(-1)
        if g["clip"]:
            boxes = np.clip(boxes, 0, 1)
        var = np.resize(np.array(g["variance"], f32), boxes.size)
        return torch.from_numpy(np.stack([boxes, var])[None]).to(fmap.device)
