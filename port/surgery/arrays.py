"""Weight surgery: the official FCN recipe for starting one net from another net's weights.

The official recipe (shelhamer/fcn.berkeleyvision.org ``surgery.py`` and every ``solve.py``):

* **transplant** (``transplant``): for each param layer ``p`` of the source, the target layer
  ``p + suffix`` gets blob ``i`` by a flat, element-order copy (``new.flat = old.flat``). Source
  layers the target lacks are dropped, and so are source blobs past the target layer's count.
  A copy between different shapes with the same element count is a "coercion": it is how the
  ILSVRC classifiers become fully convolutional (VGG16 fc6 InnerProduct 4096x25088 -> conv
  4096x512x7x7, fc7 4096x4096 -> 4096x4096x1x1; AlexNet fc6 4096x9216 -> 4096x256x6x6), and
  fc8 (1000 classes) has no place in an FCN. The staged nets start from the previous stage
  (32s -> 16s -> 8s); the new skip layers (score_pool4, score_pool3) keep their initial value.
* **interp** (``interp``): right after loading, every solve.py sets each param layer whose name
  contains 'up' to bilinear upsampling: weight (m, k, h, w) with m == k (or k == 1) and h == w;
  ``W[i, i]`` (or ``W[i, 0]``) is the kernel and the other entries keep their value (0 after a
  default init), so each class is upsampled on its own.
* **expand_score** (``expand_score``): an old score layer's k' classes become the first k'
  outputs of a new one with k > k' classes (weights and bias); the other classes keep their init.
* **NYUD color-D** (``color_depth_conv1``): the 4-channel ``conv1_1_bgrd`` takes VGG conv1_1 on
  channels 0..2 and its mean over those input channels on channel 3; the bias is copied.
  **color-HHA** transplants the color and the HHA net with suffixes 'color' and 'hha'.

Where this module differs (errors where the official code misbehaves; nothing else changes):

* A copy between blobs of different element counts is an error naming the file, layer, blob
  index and both shapes. numpy's ``.flat`` assignment in the official code silently repeats a
  shorter source or truncates a longer one, and training then starts from garbage.
* ``interp`` raises a :class:`SurgeryError` naming the layer and shape where the official code
  prints a line and runs a bare ``raise`` (a TypeError in Python 2), or fails to unpack a
  weight that is not 4-D.
* ``expand_score`` handles the current 1-D bias (k,) as well as the legacy (1, 1, 1, k) one;
  the official code indexes ``[0, 0, 0, :k']`` and works only on the legacy layout.
* Widening a trained net in its own file (``fcn-port surgery expand-score --classes K``,
  :func:`~.nets.expand_weights`) has no official counterpart: there the user writes a new net
  with K-class score *and* upscore layers and runs expand_score + interp into it. Here every
  score layer with score_fr's class count is expanded (an FCN-8s's skips too, or the file is
  refused naming them), and each class-to-class upsampler by :func:`expand_upsampling`: the
  old block kept, the new classes' diagonal bilinear (for the official fixed bilinear
  upsamplers that is exactly what interp would make), so the file converts as a K-class FCN.
* It works on arrays, not on instantiated ``caffe.Net`` objects: the target is param shapes from
  the prototxt (:func:`param_shapes`, computed on the meta device: nothing is allocated), the
  source a caffemodel read lazily. Blobs a V1 file stores with legacy 4-D dims (a bias as
  1x1x1xN) count as copied, not coerced, where Caffe itself would load them as they are.
* Target blobs the source does not cover keep the value Caffe's solver net starts with: the
  layer's filler (:func:`initial_params`; constant 0 when none is set, as in every official
  net.py, 0.01 / 0.0001 for the at-once Scale layers). Random fillers match in distribution only.
"""
import math

import numpy as np
import torch

from ..errors import NetError
from ..layers.fillers import bilinear_kernel


class SurgeryError(NetError):
    """A surgery cannot be done as asked; the message names the layer, blob and shapes."""


def upsampling_layers(names):
    """The layers every official solve.py bilinear-initialises: names containing 'up'. It is a
    plain substring test, as there ('upscore', 'upscore_pool4', but also e.g. 'group1')."""
    return [n for n in names if "up" in n]


def _is_array(x):
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _arr(x):
    """numpy view of an array or tensor."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _shape(x):
    return tuple(int(d) for d in (x.shape if _is_array(x) else x))


def interp(params, layers=None, *, report=None):
    """Bilinear-initialise ``layers`` of ``params`` ({layer: [weight, ...]}, numpy arrays or
    tensors) in place, as the official ``surgery.interp``. ``layers=None``: every layer whose
    name contains 'up'. Returns the names done."""
    layers = upsampling_layers(params) if layers is None else list(layers)
    for name in layers:
        if not params.get(name):
            raise SurgeryError(f"interp: no param layer '{name}' (layers with params: "
                               f"{', '.join(params) or 'none'})")
        w = params[name][0]
        shape = _shape(w)
        if len(shape) != 4:
            raise SurgeryError(f"interp: layer '{name}': weight shape {shape}; bilinear upsampling "
                               "needs a 4-D (m, k, h, w) Deconvolution weight")
        m, k, h, wd = shape
        if m != k and k != 1:
            raise SurgeryError(f"interp: layer '{name}': weight shape {shape}: input and output "
                               f"channels need to be the same or |output| == 1 (m={m}, k={k})")
        if h != wd:
            raise SurgeryError(f"interp: layer '{name}': weight shape {shape}: filters need to "
                               "be square")
        kernel = bilinear_kernel(h)
        if not isinstance(w, torch.Tensor):
            kernel = kernel.numpy()
        with torch.no_grad():
            for i in range(m):
                w[i, i if k != 1 else 0] = kernel
        if report is not None:
            report.add("interpolated", None, name, 0, None, shape,
                       f"bilinear {h}x{h} on {'W[i, i]' if k != 1 else 'W[i, 0]'}")
    return layers


def _check_expand(new, old, num_old_classes, layer):
    """expand_score's checks on blob shapes; returns the number of classes to copy."""
    nw, ow = new[0], old[0]
    if not nw or not ow:
        raise SurgeryError(f"expand_score: layer '{layer}': weights {ow} (old) and {nw} (new) "
                           "have no class axis")
    k, k_old = nw[0], ow[0]
    n = k_old if num_old_classes is None else int(num_old_classes)
    if not 0 <= n <= k_old:
        raise SurgeryError(f"expand_score: layer '{layer}': cannot copy {n} classes from an old "
                           f"layer with {k_old} (weight shape {ow})")
    if k < n:
        raise SurgeryError(f"expand_score: layer '{layer}': the new layer has {k} classes "
                           f"(weight {nw}), fewer than the {n} to copy (old {ow})")
    if nw[1:] != ow[1:]:
        raise SurgeryError(f"expand_score: layer '{layer}': weight shapes {ow} (old) and "
                           f"{nw} (new) differ beyond the class axis")
    for which, blobs, c in (("new", new, k), ("old", old, k_old)):
        if len(blobs) > 1 and blobs[1] not in ((c,), (1, 1, 1, c)):
            raise SurgeryError(f"expand_score: layer '{layer}': {which} bias shape {blobs[1]}; "
                               f"expected ({c},) or the legacy (1, 1, 1, {c})")
    return n


def expand_score(new, old, num_old_classes=None, *, layer="score"):
    """The official ``surgery.expand_score`` on blob lists: the first k' classes (outputs) of the
    ``new`` layer's weight and bias take the ``old`` layer's; the rest keep their value.
    ``num_old_classes`` (default: all of the old layer's) copies only the first ones. Biases may
    be (k,) or the legacy (1, 1, 1, k). Returns new float32 arrays; the inputs are not modified."""
    n = _check_expand([_shape(b) for b in new[:2]], [_shape(b) for b in old[:2]],
                      num_old_classes, layer)
    out = [np.array(_arr(b), np.float32) for b in new]
    out[0][:n] = _arr(old[0])[:n]
    if len(out) > 1 and len(old) > 1:
        out[1].reshape(-1)[:n] = _arr(old[1]).reshape(-1)[:n]
    return out


def expand_upsampling(old, classes, *, layer="upscore"):
    """A class-to-class upsampling Deconvolution weight ``old`` (k', k', h, h) widened to
    (classes, classes, h, h) for :func:`expand_score`'s new classes: the old block kept in the
    top-left (a learned upsampler stays learned), each new class i -> i the bilinear kernel
    (as ``interp`` fills the diagonal), every other new entry 0. Not in the official code, whose
    recipe re-makes the upscore layers in the new net and interp's them; for a fixed bilinear
    upsampler (lr_mult 0, as all official nets but the learned-deconv variant) it is the same.
    Returns a new float32 array."""
    w = _arr(old)
    if w.ndim != 4 or w.shape[0] != w.shape[1] or w.shape[2] != w.shape[3]:
        raise SurgeryError(f"expand: layer '{layer}': weight shape {tuple(w.shape)}; expected a "
                           "square class-to-class (k, k, h, h) upsampling weight")
    k, size = w.shape[0], w.shape[2]
    if classes < k:
        raise SurgeryError(f"expand: layer '{layer}' has {k} classes; cannot shrink to {classes}")
    out = np.zeros((classes, classes, size, size), np.float32)
    out[:k, :k] = w
    kernel = bilinear_kernel(size).numpy()
    for i in range(k, classes):
        out[i, i] = kernel
    return out


def color_depth_conv1(base, new=None, *, layer="conv1_1_bgrd"):
    """NYUD color-D's first conv from VGG conv1_1 blobs ``base`` [(m, 3, h, w), (m,)]: channels
    0..2 = the VGG weights, channel 3 (depth) = their mean over the 3 input channels (numpy's
    float32 mean, as the official solve.py takes it of Caffe's float32 blob), bias copied.
    ``new`` gives the target blobs' initial values (default zeros (m, 4, h, w), (m,))."""
    w = np.asarray(_arr(base[0]), np.float32)
    if w.ndim != 4 or w.shape[1] != 3:
        raise SurgeryError(f"color_depth_conv1: base weight shape {w.shape}; expected the "
                           "VGG conv1_1 (m, 3, h, w)")
    m, _, h, wd = w.shape
    want = [(m, 4, h, wd)] + [(m,)] * (len(base) > 1)
    if new is None:
        new = [np.zeros(s, np.float32) for s in want]
    out = [np.array(_arr(b), np.float32) for b in new]
    if [b.shape for b in out][:1] != want[:1] or len(out) != len(want):
        raise SurgeryError(f"color_depth_conv1: layer '{layer}' has blobs "
                           f"{[b.shape for b in out]}; from conv1_1 {w.shape} it needs {want}")
    out[0][:, :3] = w
    out[0][:, 3] = np.mean(w, axis=1)
    if len(want) > 1:
        bias = _arr(base[1]).reshape(-1)
        if out[1].size != bias.size:
            raise SurgeryError(f"color_depth_conv1: layer '{layer}' bias {out[1].shape}, "
                               f"conv1_1 bias {_arr(base[1]).shape}")
        out[1].reshape(-1)[:] = bias
    return out


# --- transplant ------------------------------------------------------------------------------

ACTIONS = ("copied", "coerced", "expanded", "color-d", "dropped", "not initialised",
           "interpolated")


class Entry:
    __slots__ = ("action", "source", "target", "blob", "source_shape", "target_shape", "note")

    def __init__(self, action, source, target, blob, source_shape, target_shape, note=""):
        self.action, self.source, self.target, self.blob = action, source, target, blob
        self.source_shape, self.target_shape, self.note = source_shape, target_shape, note

    @property
    def values(self):
        shape = self.target_shape if self.target_shape is not None else self.source_shape
        return math.prod(shape) if shape is not None else 0

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self):
        return f"Entry({self.as_dict()})"


class Report:
    """What a surgery did, one :class:`Entry` per layer and blob: copied, coerced (same count,
    other shape), expanded, dropped (source blobs with no place), not initialised (target blobs
    no source reached: they keep their initial value), interpolated."""

    def __init__(self, source=None, suffix=""):
        self.source, self.suffix, self.entries = source, suffix, []

    def add(self, action, source, target, blob, source_shape=None, target_shape=None, note=""):
        assert action in ACTIONS, action
        self.entries.append(Entry(action, source, target, blob, source_shape, target_shape, note))

    def select(self, action):
        return [e for e in self.entries if e.action == action]

    def layers(self, action):
        """Names (target names; source names for 'dropped') with an entry of ``action``."""
        return list(dict.fromkeys(e.target if action != "dropped" else e.source
                                  for e in self.select(action)))

    def summary(self):
        parts = []
        for action in ACTIONS:
            got = self.select(action)
            if got:
                parts.append(f"{action} {len(got)} blob{'s' * (len(got) != 1)} "
                             f"({sum(e.values for e in got):,} values)")
        return "; ".join(parts) or "nothing to do"

    def format(self):
        """One line per entry (action, layer[blob], shapes, note), then the summary."""
        rows = []
        for e in self.entries:
            name = e.target if e.target is not None else e.source
            if e.source is not None and e.target is not None and e.source != e.target:
                name = f"{e.source} -> {e.target}"
            shapes = [s for s in (e.source_shape, e.target_shape) if s is not None]
            shapes = shapes[:1] if len(set(shapes)) == 1 else shapes
            rows.append((e.action, f"{name}[{e.blob}]", " -> ".join(map(str, shapes)), e.note))
        width = max((len(r[1]) for r in rows), default=0)
        lines = [f"  {a:<16} {n:<{width}}  {s}" + (f"  ({note})" if note else "")
                 for a, n, s, note in rows]
        return "\n".join(lines + [self.summary()])

    def as_dict(self):
        return {"source": self.source, "suffix": self.suffix,
                "entries": [e.as_dict() for e in self.entries]}


def _legacy_shape(shape, legacy):
    """The shape Caffe gives a blob stored with legacy 4-D dims: leading 1s dropped."""
    if not legacy:
        return shape
    i = 0
    while i < len(shape) - 1 and shape[i] == 1:
        i += 1
    return shape[i:]


def plan_transplant(target, source, suffix="", *, legacy=(), expand=(), skip=(), where=None):
    """The :class:`Report` of ``transplant`` from shapes alone ({layer: [shape, ...]} both), with
    its checks (count mismatches raise); nothing is copied. ``legacy``: {(layer, i)} of source
    blobs stored with legacy 4-D dims."""
    where = where or "source"
    for name in list(expand) + list(skip):
        if name not in source:
            raise SurgeryError(f"{where}: no param layer '{name}' to "
                               f"{'expand' if name in expand else 'skip'}")
    report, covered = Report(where, suffix), set()
    for p, shapes in source.items():
        q = p + suffix
        shapes = [_shape(s) for s in shapes]
        shown = [_legacy_shape(s, (p, i) in legacy) for i, s in enumerate(shapes)]
        tshapes = [_shape(s) for s in target.get(q, ())] if p not in skip else []
        why = ("skipped as asked" if p in skip else
               f"no param layer '{q}' in the target" if q not in target else "")
        if p in expand and not why:
            _check_expand(tshapes[:2], shown[:2], None, q)
        for i, s in enumerate(shapes):
            if why or i >= len(tshapes):
                report.add("dropped", p, None if why else q, i, shown[i], None,
                           why or f"'{q}' has {len(tshapes)} blob{'s' * (len(tshapes) != 1)}")
                continue
            t = tshapes[i]
            if p in expand:
                action = "expanded"
            elif math.prod(s) != math.prod(t):
                raise SurgeryError(
                    f"{where}: cannot transplant blob {i} of layer '{p}' into '{q}': shape "
                    f"{shown[i]} ({math.prod(s):,} values) in the source, {t} ({math.prod(t):,} "
                    "values) in the target. A flat copy needs equal counts (the official "
                    "transplant would silently repeat or truncate the values); skip the layer, "
                    "or expand it if it is a score layer with fewer classes")
            elif s == t or ((p, i) in legacy and s == (1,) * (4 - len(t)) + t):
                action = "copied"
            else:
                action = "coerced"
            report.add(action, p, q, i, shown[i], t)
            covered.add((q, i))
    for q, tshapes in target.items():
        for i, t in enumerate(tshapes):
            if (q, i) not in covered:
                report.add("not initialised", None, q, i, None, _shape(t),
                           "keeps its initial value")
    return report


def _source(source):
    """(params, legacy, where) of a Weights or a {layer: [array, ...]}."""
    params = getattr(source, "params", None)
    if params is not None:
        return params, set(getattr(source, "legacy", ())), getattr(source, "path", None)
    return source, set(), None


def transplant(target, source, suffix="", *, expand=(), skip=()):
    """The official ``surgery.transplant`` on arrays.

    ``target``: {layer: [shape or array, ...]}, the new net's params; a shape starts as zeros
    (Caffe's default constant filler), an array is the initial value (copied, not modified).
    ``source``: a :class:`~.caffemodel.Weights` or {layer: [array, ...]}. Source layer ``p``
    goes to target layer ``p + suffix`` by a flat element-order copy. ``expand`` names source
    score layers to copy with :func:`expand_score` instead; ``skip`` names source layers to drop.
    Returns ({layer: [float32 array, ...]} for every target layer, :class:`Report`).
    """
    src, legacy, where = _source(source)
    report = plan_transplant(target, {p: [_shape(a) for a in blobs] for p, blobs in src.items()},
                             suffix, legacy=legacy, expand=expand, skip=skip, where=where)
    params = {q: [np.array(_arr(b), np.float32) if _is_array(b) else np.zeros(_shape(b), np.float32)
                  for b in blobs] for q, blobs in target.items()}
    for e in report.entries:
        if e.action in ("copied", "coerced"):
            dst = params[e.target][e.blob]
            dst[...] = _arr(src[e.source][e.blob]).reshape(dst.shape)
    for p in dict.fromkeys(e.source for e in report.select("expanded")):
        q, shown = p + suffix, [e.source_shape for e in report.select("expanded") if e.source == p]
        old = [_arr(a).reshape(s) for a, s in zip(src[p], shown)]  # legacy dims as Caffe's
        params[q][:len(old)] = expand_score(params[q][:len(old)], old, layer=q)
    return params, report
