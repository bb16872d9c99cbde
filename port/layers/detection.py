"""The SSD fork's ``DetectionOutput`` (``detection_output_layer.cpp`` with ``bbox_util.cpp``):
the boxes a detector keeps, for inference.

How that Caffe computes it
--------------------------
Bottoms: location offsets ``loc`` (N x priors * L * 4, L = 1 with ``share_location``, the
default, else ``num_classes``), class confidences ``conf`` (N x priors * num_classes, already
probabilities: a Softmax sits before it) and a PriorBox top (1 x 2 x priors * 4: boxes, then
variances).

* ``DecodeBBox`` per prior and location class (skipping ``background_label_id``'s when not
  shared), in float: ``CORNER``, the default: ``prior + variance * offset`` per corner;
  ``CENTER_SIZE``: ``cx = v0 * dx * pw + pcx``, ``w = exp(v2 * dw) * pw`` (and likewise y;
  ``exp`` is C's double one, rounded to float),
  then ``cx -/+ w / 2.`` (the prior's centre ``(xmin + xmax) / 2.`` and the corners in double,
  stored as float); ``CORNER_SIZE``: ``prior + v * offset * prior size``. With
  ``variance_encoded_in_target`` the variances are left out. Each box's area is stored with it
  (``BBoxSize``: 0 for an inverted box); boxes are not clipped.
* Per image and class other than the background: ``ApplyNMSFast``: the scores above
  ``confidence_threshold`` (none given: every score), stably sorted by descending score and cut
  to ``nms_param.top_k``; then each in turn is kept when its ``JaccardOverlap`` with every
  box kept so far is ``<= threshold`` (``nms_threshold``, default 0.3); after a keep, with
  ``eta < 1`` and the threshold above 0.5, the threshold is multiplied by ``eta``. The overlap
  is ``inter / (area1 + area2 - inter)`` in float, 0 when the boxes only touch.
* With ``keep_top_k`` and more detections than it in an image, the image's detections are
  sorted by descending score (Caffe's ``std::sort``, not stable: equal scores may come in
  either order; here they stay in class order) and cut to ``keep_top_k``.
* The top: 1 x 1 x kept x 7 rows ``[image, label, score, xmin, ymin, xmax, ymax]``, images in
  order, classes ascending within an image, each class's boxes by descending score. With no
  detection at all, one row per image ``[i, -1, -1, -1, -1, -1, -1]``.

This build (brocolli-caffe) skips NMS when a prototxt has no ``nms_param``; weiliu89's SSD
branch always applies it with the default threshold 0.3, which fcn-port follows. Released SSD
prototxts all give ``nms_param``. ``save_output_param`` (writing VOC/COCO files) is ignored.

Where PyTorch differs
---------------------
``torchvision.ops.batched_nms`` suppresses with ``IoU > threshold`` as here, but sorts
unstably, has no ``eta``, no top_k before NMS, and needs torchvision. This layer computes
Caffe's loops in torch float32 (float64 where Caffe computes in double), in functions that
codegen copies into the files it writes; the top's size depends on the data. It has no
gradient.
"""
import numpy as np
import torch

from .base import CaffeLayer
from .registry import register

f32 = np.float32
CODES = {1: "CORNER", 2: "CENTER_SIZE", 3: "CORNER_SIZE"}  # PriorBoxParameter.CodeType


def _decode(prior, var, off, code):
    """``DecodeBBox`` of (P, 4) priors, variances and offsets: CORNER, CENTER_SIZE or
    CORNER_SIZE."""
    size = torch.stack([prior[:, 2] - prior[:, 0], prior[:, 3] - prior[:, 1]] * 2, 1)
    if code == "CORNER":
        return prior + var * off
    if code == "CORNER_SIZE":
        return prior + var * off * size
    centre = ((prior[:, :2].double() + prior[:, 2:].double()) / 2).float()
    c = var[:, :2] * off[:, :2] * size[:, :2] + centre
    half = (torch.exp((var[:, 2:] * off[:, 2:]).double()).float() * size[:, 2:]).double() / 2
    return torch.cat([c - half, c + half], 1).float()


def _nms(boxes, scores, score_threshold, threshold, eta, top_k):
    """``ApplyNMSFast``: the kept indices, by descending score (a stable sort); a box is kept
    when its ``JaccardOverlap`` with every kept one is ``<= threshold`` (so a NaN overlap
    drops it, as in Caffe)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    areas = torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)
    order = torch.nonzero(scores > score_threshold).reshape(-1)
    order = order[torch.sort(-scores[order], stable=True).indices]
    order = order[:top_k] if top_k > -1 else order
    kept = []
    for i in order.tolist():
        if kept:
            b, o = boxes[i], boxes[kept]
            iw = torch.minimum(b[2], o[:, 2]) - torch.maximum(b[0], o[:, 0])
            ih = torch.minimum(b[3], o[:, 3]) - torch.maximum(b[1], o[:, 1])
            inter = iw * ih
            iou = torch.where((iw > 0) & (ih > 0), inter / (areas[i] + areas[kept] - inter), 0)
            if not bool((iou <= threshold).all()):
                continue
        kept.append(i)
        if eta < 1 and threshold > 0.5:
            threshold = torch.tensor(threshold * eta, dtype=torch.float32).item()
    return kept


def detection_output(loc, conf, prior, classes, share, background, code, in_target,
                     score_threshold, threshold, eta, top_k, keep_top_k):
    """SSD's DetectionOutput of float32 ``loc``, ``conf`` and ``prior``: decoded boxes,
    per-class NMS, the best ``keep_top_k`` per image; rows [image, label, score, xmin, ymin,
    xmax, ymax] (1 x 1 x n x 7), one row of -1 per image when nothing is kept. The layer
    runs this, and codegen copies it."""
    num, per = loc.shape[0], 1 if share else classes
    prior = prior.reshape(2, -1, 4)
    n = prior.shape[1]
    var = torch.ones_like(prior[1]) if in_target else prior[1]
    loc, conf = loc.reshape(num, n, per, 4), conf.reshape(num, n, classes)
    rows = []
    for i in range(num):
        boxes = {c: _decode(prior[0], var, loc[i, :, c], code) for c in range(per)
                 if (-1 if share else c) != background}
        found = []
        for c in range(classes):
            if c != background and (0 if share else c) in boxes:
                found += [(c, k) for k in _nms(boxes[0 if share else c], conf[i, :, c],
                                               score_threshold, threshold, eta, top_k)]
        if -1 < keep_top_k < len(found):
            scores = torch.stack([conf[i, k, c] for c, k in found])
            best = torch.sort(-scores, stable=True).indices[:keep_top_k].tolist()
            found = sorted((found[j] for j in best), key=lambda ck: ck[0])
        for c, k in found:
            box = boxes[0 if share else c][k]
            rows.append(torch.cat([torch.tensor([i, c], dtype=conf.dtype), conf[i, k, c:c + 1],
                                   box]))
    if not rows:
        return torch.tensor([[i] + [-1] * 6 for i in range(num)], dtype=conf.dtype)[None, None]
    return torch.stack(rows)[None, None]


@register("DetectionOutput")
class DetectionOutput(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.detection_output_param
        if not p.HasField("num_classes"):
            self.fail("needs detection_output_param.num_classes")
        nms_p = p.nms_param
        if nms_p.nms_threshold < 0 or not 0 < nms_p.eta <= 1:
            self.fail(f"nms_threshold ({nms_p.nms_threshold}) must be >= 0 and eta "
                      f"({nms_p.eta}) in (0, 1]")
        self.classes, self.share = p.num_classes, p.share_location
        threshold = f32(p.confidence_threshold) if p.HasField("confidence_threshold") \
            else f32(-3.4028234663852886e38)
        # detection_output's arguments after the bottoms (codegen writes the same ones)
        self.args = (self.classes, self.share, p.background_label_id, CODES[p.code_type],
                     p.variance_encoded_in_target, float(threshold),
                     float(f32(nms_p.nms_threshold)), float(f32(nms_p.eta)),
                     nms_p.top_k if nms_p.HasField("top_k") else -1, p.keep_top_k)

    def top_shapes(self, bottoms):
        if len(bottoms) != 3:
            self.fail(f"takes 3 bottoms (loc, conf, prior), got {len(bottoms)}")
        loc, conf, prior = (tuple(b) for b in bottoms)
        if len(prior) < 3 or prior[2] % 4:
            self.fail(f"the prior bottom {prior} must be 1 x 2 x (priors * 4)")
        n = prior[2] // 4
        per = 1 if self.share else self.classes
        if loc[0] != conf[0] or int(np.prod(loc[1:])) != n * per * 4 or \
                int(np.prod(conf[1:])) != n * self.classes:
            self.fail(f"{n} priors and {self.classes} classes need loc N x {n * per * 4} and "
                      f"conf N x {n * self.classes}, got {loc} and {conf}")
        return [(1, 1, 1, 7)]  # Caffe's shape at set-up; each forward sizes it

    @torch.no_grad()
    def forward(self, loc, conf, prior):
        top = detection_output(loc.detach().float(), conf.detach().float(),
                               prior.detach().float(), *self.args)
        return top.to(loc.device)
