"""More functions a generated net file carries (see :mod:`.runtime`): im2col,
the reductions and selections, the losses' forward values, the recurrent layers and SSD's.

Each follows the layer module its docstring names (which says how Caffe computes it); these are
forward only, for inference: the interpreter's layers also give Caffe's backward.
"""
import torch
import torch.nn.functional as F

from ..layers.detection import _decode, _nms, detection_output
from ..layers.pooling import spp
from ..layers.recurrent import lstm_unit

SHARED = (spp, lstm_unit, _decode, _nms, detection_output)  # the interpreter's own functions, copied into files as they are


def im2col(x, kernel, stride, pad, dilation):
    """Caffe's Im2col (port/layers/conv.py): (N, C * kh * kw, H', W') columns, H' truncated as
    in Caffe's convolution; a window past the padded edge reads zeros."""
    out, extra = [], []
    for h, k, s, p, d in zip(x.shape[2:], kernel, stride, pad, dilation):
        span = h + 2 * p - (d * (k - 1) + 1)
        out.append((span // s if span >= 0 else -(-span // s)) + 1)
        extra.append(max(0, (out[-1] - 1) * s + d * (k - 1) + 1 - (h + 2 * p)))
    x = F.pad(x, (pad[1], pad[1] + extra[1], pad[0], pad[0] + extra[0]))
    cols = F.unfold(x, kernel, dilation, 0, stride)
    return cols.reshape(x.shape[0], cols.shape[1], *out)


def filter_rows(bottoms, selector):
    """Caffe's Filter (port/layers/shape.py): the samples whose selector (truncated) is not 0."""
    index = torch.nonzero(selector.reshape(-1).to(torch.int64) != 0).reshape(-1)
    tops = tuple(b.index_select(0, index) for b in bottoms)
    return tops[0] if len(tops) == 1 else tops


def mvn(x, across_channels, normalize_variance, eps):
    """Caffe's MVN (port/layers/norm.py): per sample (and channel unless across_channels),
    ``x - mean``, divided by ``sqrt(var) + eps`` when normalize_variance; 1/dim is a float."""
    x2 = x.reshape(x.shape[0] if across_channels else x.shape[0] * x.shape[1], -1)
    inv = torch.tensor(1.0 / x2.shape[1], dtype=torch.float32).item()
    centred = x2 - x2.sum(1, keepdim=True) * inv
    if not normalize_variance:
        return centred.reshape(x.shape)
    std = torch.pow((centred * centred).sum(1, keepdim=True) * inv, 0.5) + eps
    return (centred / std).reshape(x.shape)


def reduction(x, op, axis, coeff):
    """Caffe's Reduction (port/layers/reduction.py): SUM, ASUM, SUMSQ or MEAN over the axes
    from ``axis`` on, times ``coeff`` (MEAN: coeff / dim in float)."""
    x2 = x.reshape(int(torch.tensor(x.shape[:axis]).prod()), -1)
    y = {"SUM": x2, "ASUM": x2.abs(), "SUMSQ": x2 * x2, "MEAN": x2}[op].sum(1)
    if op == "MEAN":
        coeff = (torch.tensor(coeff) / torch.tensor(float(x2.shape[1]))).item()
    return (y * coeff if coeff != 1 else y).reshape(x.shape[:axis])


def _top_k(v, k):
    """The k largest along the last dim, ties to the highest index: (values, indices)."""
    flipped = v.flip(-1)
    val, idx = torch.sort(flipped, dim=-1, descending=True, stable=True)
    return val[..., :k], (v.shape[-1] - 1 - idx[..., :k]).to(v.dtype)


def argmax(x, top_k, out_max_val, axis):
    """Caffe's ArgMax (port/layers/loss.py): along ``axis``, the top_k indices (or values with
    out_max_val); with no axis, per sample over all its values: N x (1 or 2) x top_k [x 1]."""
    if axis is not None:
        val, idx = _top_k(x.movedim(axis, -1), top_k)
        return (val if out_max_val else idx).movedim(-1, axis).contiguous()
    val, idx = _top_k(x.reshape(x.shape[0], -1), top_k)
    top = torch.stack([idx, val], 1) if out_max_val else idx.unsqueeze(1)
    return top.reshape((x.shape[0], top.shape[1], top_k) + (1,) * (x.dim() - 3))


def accuracy(x, label, axis, top_k, ignore_label, per_class):
    """Caffe's Accuracy (port/layers/loss.py): a position is right when fewer than top_k scores
    beat the true one (ties count against); per class: right / seen, 0 for unseen classes."""
    outer, c = int(torch.tensor(x.shape[:axis]).prod()), x.shape[axis]
    x3, lab = x.reshape(outer, c, -1), label.reshape(outer, -1).to(torch.int64)
    valid = lab != ignore_label if ignore_label is not None else torch.ones_like(lab, dtype=bool)
    safe = torch.where(valid, lab, 0)
    right = valid & ((x3 >= x3.gather(1, safe.unsqueeze(1))).sum(1) <= top_k)
    count = valid.sum()
    acc = right.sum().to(x.dtype) / count.clamp(min=1).to(x.dtype) if count > 0 else x.new_zeros(())
    if not per_class:
        return acc
    seen = torch.bincount(safe[valid], minlength=c).to(x.dtype)
    hits = torch.bincount(safe[right], minlength=c).to(x.dtype)
    return acc, torch.where(seen > 0, hits / seen.clamp(min=1), 0)


def _normalizer(mode, full, valid, batch):
    return float(max(1, {"FULL": full, "VALID": valid, "BATCH_SIZE": batch, "NONE": 1}[mode]))


def euclidean_loss(a, b):
    """Caffe's EuclideanLoss (port/layers/losses.py): ``sum (a - b)^2 / N / 2``."""
    diff = (a - b.reshape(a.shape)).reshape(-1)
    return torch.dot(diff, diff) / a.shape[0] / 2


def sigmoid_ce_loss(x, t, ignore_label, normalization):
    """Caffe's SigmoidCrossEntropyLoss (port/layers/losses.py), its overflow-free form."""
    t = t.reshape(x.shape)
    valid = t != ignore_label if ignore_label is not None else torch.ones_like(t, dtype=bool)
    pos = (x >= 0).to(x.dtype)
    terms = x * (t - pos) - torch.log(1 + torch.exp(x - 2 * x * pos))
    n = _normalizer(normalization, x.numel(), int(valid.sum()), x.shape[0])
    return -(terms * valid.to(x.dtype)).sum() / n


def hinge_loss(s, label, l2):
    """Caffe's HingeLoss (port/layers/losses.py): ``max(0, 1 + s)`` with the true class's score
    negated, summed (L1) or squared and summed (L2), over N."""
    s2 = s.reshape(s.shape[0], -1)
    flip = torch.ones_like(s2).scatter_(1, label.reshape(-1, 1).to(torch.int64), -1.0)
    m = torch.clamp(1 + s2 * flip, min=0)
    return ((m * m).sum() if l2 else m.sum()) / s.shape[0]


def multinomial_loss(p, label):
    """Caffe's MultinomialLogisticLoss (port/layers/losses.py):
    ``-sum log(max(p_y, 1e-20)) / N``."""
    p2 = p.reshape(p.shape[0], -1)
    picked = p2.gather(1, label.reshape(-1, 1).to(torch.int64))
    return -torch.log(torch.clamp(picked, min=1e-20)).sum() / p.shape[0]


def infogain_loss(scores, label, h, axis, ignore_label, normalization):
    """Caffe's InfogainLoss, BVLC master (port/layers/losses.py): softmax inside, then
    ``-sum_l H[y, l] log(max(p_l, 1e-20))`` per non-ignored position, over the normalizer."""
    k = scores.shape[axis]
    x = scores.reshape(int(torch.tensor(scores.shape[:axis]).prod()), k, -1)
    lab = label.reshape(x.shape[0], x.shape[2]).to(torch.int64)
    valid = lab != ignore_label if ignore_label is not None else torch.ones_like(lab, dtype=bool)
    logp = torch.log(torch.clamp(torch.softmax(x, 1), min=1e-20))
    rows = h.reshape(k, k)[torch.where(valid, lab, 0)]
    terms = (rows.permute(0, 2, 1) * logp).sum(1) * valid.to(x.dtype)
    return -terms.sum() / _normalizer(normalization, lab.numel(), int(valid.sum()), x.shape[0])


def contrastive_loss(a, b, y, margin, legacy):
    """Caffe's ContrastiveLoss (port/layers/contrastive.py): ``d^2`` for similar pairs, else
    ``max(margin - d, 0)^2`` (legacy: ``max(margin - d^2, 0)``), summed over 2N."""
    d2 = ((a - b).reshape(a.shape[0], -1) ** 2).sum(1)
    far = (margin - d2).clamp(min=0) if legacy else (margin - torch.sqrt(d2)).clamp(min=0) ** 2
    return torch.where(y.reshape(-1).to(torch.int64) != 0, d2, far).sum() / a.shape[0] / 2


def filled(shape, kind, value, low, high, mean, std):
    """DummyData's top (port/layers/data.py): constant, uniform or gaussian."""
    if kind == "constant":
        return torch.full(shape, value)
    if kind == "uniform":
        return torch.rand(shape) * (high - low) + low
    return torch.randn(shape) * std + mean


def _unroll(x, cont, static, states, blobs, n_states, step):
    """Caffe's unrolled recurrent net (port/layers/recurrent.py): ``x`` T x N x ..., the
    input weights applied to every step at once, then ``step`` per time step."""
    t, n = x.shape[:2]
    hid = blobs[1].shape[0] // (4 if n_states == 2 else 1)
    cont = cont.to(x.dtype).reshape(t, n, 1)
    state = [s.reshape(n, hid) for s in states] or [x.new_zeros(n, hid)] * n_states
    xw = F.linear(x.reshape(t, n, -1), blobs[0], blobs[1])
    xs = F.linear(static.reshape(n, -1), blobs[2]) if static is not None else None
    outputs = []
    for i in range(t):
        out, state = step(xw[i], xs, cont[i], state)
        outputs.append(out)
    return torch.stack(outputs), [s.reshape(1, n, hid) for s in state]


def lstm(x, cont, static, states, blobs, expose):
    """Caffe's LSTM: per step the recurrent term ``W_hc (cont * h)``, plus the input's (plus the
    static input's), through :func:`lstm_unit`. Tops: h for every step [, h_T, c_T]."""
    w_hc = blobs[len(blobs) - 1]

    def step(xw, xs, cont_t, state):
        a = F.linear(cont_t * state[0], w_hc) + xw
        c, h = lstm_unit(state[1], a if xs is None else a + xs, cont_t)
        return h, [h, c]

    top, state = _unroll(x, cont, static, states, blobs, 2, step)
    return (top, *state) if expose else top


def rnn(x, cont, static, states, blobs, expose):
    """Caffe's RNN: ``h = tanh(W_hh (cont * h) + W_xh x + b_h [+ W_xh' x_static])``, output
    ``o = tanh(W_ho h + b_o)``. Tops: o for every step [, h_T]."""
    k = 3 if static is not None else 2
    w_hh, w_ho, b_o = blobs[k], blobs[k + 1], blobs[k + 2]

    def step(xw, xs, cont_t, state):
        a = F.linear(cont_t * state[0], w_hh) + xw
        h = torch.tanh(a if xs is None else a + xs)
        return torch.tanh(F.linear(h, w_ho, b_o)), [h]

    top, state = _unroll(x, cont, static, states, blobs, 1, step)
    return (top, *state) if expose else top


def normalize(x, scale, across_spatial, channel_shared, eps):
    """SSD's Normalize (port/layers/ssd.py): x over its L2 norm (over C x H x W per sample, or
    over C per position), times the learnt scale; across space Caffe multiplies by the
    reciprocal of the norm, rounded from double."""
    view = scale.reshape((1,) * x.dim() if channel_shared else (1, -1) + (1,) * (x.dim() - 2))
    if across_spatial:
        norm = torch.pow((x * x).reshape(x.shape[0], -1).sum(1) + eps, 0.5)
        y = x * (1.0 / norm.double()).to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1))
    else:
        y = x / torch.pow(eps + (x * x).sum(1, keepdim=True), 0.5)
    return y * view


def prior_box(fmap, image, sizes, img, step, offset, clip, variance):
    """SSD's PriorBox (port/layers/ssd.py): at every feature map position, boxes of ``sizes``
    (width, height) centred on ``(i + offset) * step``, in image fractions, and the variances:
    a 1 x 2 x (H * W * boxes * 4) blob. Centres in float, the divisions in double."""
    (h_map, w_map), (img_h, img_w) = fmap.shape[2:], img or image.shape[2:]
    f32 = torch.float32
    if step is None:
        step = ((torch.tensor(float(img_h), dtype=f32) / h_map).item(),
                (torch.tensor(float(img_w), dtype=f32) / w_map).item())
    bw = torch.tensor([s[0] for s in sizes], dtype=torch.float64)
    bh = torch.tensor([s[1] for s in sizes], dtype=torch.float64)
    cx = ((torch.arange(w_map, dtype=f32) + offset) * step[1]).double()[None, :, None]
    cy = ((torch.arange(h_map, dtype=f32) + offset) * step[0]).double()[:, None, None]
    corners = torch.broadcast_tensors((cx - bw / 2) / img_w, (cy - bh / 2) / img_h,
                                      (cx + bw / 2) / img_w, (cy + bh / 2) / img_h)
    boxes = torch.stack(corners, -1).to(f32).reshape(-1)
    if clip:
        boxes = boxes.clamp(0, 1)
    var = torch.tensor(variance, dtype=f32).repeat(boxes.numel() // len(variance) + 1)
    return torch.stack([boxes, var[:boxes.numel()]])[None]
