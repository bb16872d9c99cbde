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
Caffe's loops in numpy float32; the top's size depends on the data. It has no gradient.
"""
import numpy as np
import torch

from .base import CaffeLayer
from .registry import register
from ..formats.proto import caffe_pb2

f32 = np.float32
_CODE = caffe_pb2.PriorBoxParameter


def decode(prior, var, offset, code, in_target):
    """``DecodeBBox`` for arrays of (P, 4) priors, variances and offsets: (boxes, areas)."""
    v = np.ones_like(var) if in_target else var
    if code == _CODE.CORNER:
        boxes = prior + v * offset
    elif code == _CODE.CORNER_SIZE:
        size = np.stack([prior[:, 2] - prior[:, 0], prior[:, 3] - prior[:, 1]] * 2, 1)
        boxes = prior + v * offset * size
    else:
        pw, ph = prior[:, 2] - prior[:, 0], prior[:, 3] - prior[:, 1]
        pcx = ((prior[:, 0].astype(np.float64) + prior[:, 2]) / 2.).astype(f32)
        pcy = ((prior[:, 1].astype(np.float64) + prior[:, 3]) / 2.).astype(f32)
        cx, cy = v[:, 0] * offset[:, 0] * pw + pcx, v[:, 1] * offset[:, 1] * ph + pcy
        w = np.exp((v[:, 2] * offset[:, 2]).astype(np.float64)).astype(f32) * pw
        h = np.exp((v[:, 3] * offset[:, 3]).astype(np.float64)).astype(f32) * ph
        half_w, half_h = w.astype(np.float64) / 2., h.astype(np.float64) / 2.
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1).astype(f32)
    boxes = boxes.astype(f32)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    areas = np.where((w < 0) | (h < 0), f32(0), w * h).astype(f32)
    return boxes, areas


def overlap(box, area, others, other_areas):
    """``JaccardOverlap`` of one box with each of ``others`` (float, as Caffe)."""
    apart = (others[:, 0] > box[2]) | (others[:, 2] < box[0]) | (others[:, 1] > box[3]) | \
        (others[:, 3] < box[1])
    iw = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    ih = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = (iw * ih).astype(f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area + other_areas - inter)
    return np.where(apart | (iw <= 0) | (ih <= 0), f32(0), iou)


def nms(boxes, areas, scores, score_threshold, threshold, eta, top_k):
    """``ApplyNMSFast``: the kept indices, by descending score."""
    order = np.flatnonzero(scores > score_threshold)
    order = order[np.argsort(-scores[order], kind="stable")]
    if top_k > -1:
        order = order[:top_k]
    kept, adaptive = [], f32(threshold)
    for i in order:
        keep = not kept or bool((overlap(boxes[i], areas[i], boxes[kept], areas[kept])
                                 <= adaptive).all())
        if keep:
            kept.append(int(i))
            if eta < 1 and adaptive > 0.5:
                adaptive = f32(adaptive * f32(eta))
    return kept


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
        self.threshold = f32(p.confidence_threshold) if p.HasField("confidence_threshold") \
            else f32(-3.4028234663852886e38)

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
        p = self.lp.detection_output_param
        num, per = loc.shape[0], 1 if self.share else self.classes
        pri = prior.detach().cpu().numpy().astype(f32).reshape(2, -1, 4)
        n = pri.shape[1]
        locs = loc.detach().cpu().numpy().astype(f32).reshape(num, n, per, 4)
        confs = conf.detach().cpu().numpy().astype(f32).reshape(num, n, self.classes)
        rows = []
        for i in range(num):
            decoded = {}
            for c in range(per):
                label = -1 if self.share else c
                if label != p.background_label_id:
                    decoded[label] = decode(pri[0], pri[1], locs[i, :, c], p.code_type,
                                            p.variance_encoded_in_target)
            found = []  # (label, index) in Caffe's order
            for c in range(self.classes):
                if c == p.background_label_id or (-1 if self.share else c) not in decoded:
                    continue
                boxes, areas = decoded[-1 if self.share else c]
                kept = nms(boxes, areas, confs[i, :, c], self.threshold, p.nms_param.nms_threshold,
                           p.nms_param.eta, p.nms_param.top_k if p.nms_param.HasField("top_k")
                           else -1)
                found += [(c, k) for k in kept]
            if p.keep_top_k > -1 and len(found) > p.keep_top_k:
                scores = np.array([confs[i, k, c] for c, k in found], f32)
                best = np.argsort(-scores, kind="stable")[:p.keep_top_k]
                found = sorted((found[j] for j in best), key=lambda ck: ck[0])  # map by label
            for c, k in found:
                boxes, _ = decoded[-1 if self.share else c]
                rows.append([i, c, confs[i, k, c], *boxes[k]])
        if not rows:
            rows = [[i] + [-1] * 6 for i in range(num)]
        top = torch.from_numpy(np.array(rows, f32).reshape(1, 1, -1, 7))
        return top.to(loc.device)
