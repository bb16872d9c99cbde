"""The functions a generated net file carries (:mod:`.codegen` copies their source into it):
Caffe's semantics where PyTorch's defaults differ, written against torch alone.

Each is the same rule as the layer module named in its docstring (that module says how Caffe
computes it); the generated file cannot import fcn-port, so it holds this copy, and the codegen
tests check the two against each other on the oracle cases. Where a layer module's own
function is torch only, that function itself is copied (``SHARED``).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..layers.crop import crop, crop_offset
from ..layers.eltwise import eltwise
from ..layers.norm import lrn
from ..layers.pooling import (_no_nan, pooled_size, _widths, _max_pool, _sum_pool,  # as they
                              _divisor, is_plain, pool)  # are defined there, which files keep

# the interpreter's own functions, copied into files as they are
SHARED = (crop_offset, crop, eltwise, lrn, _no_nan, pooled_size, _widths, _max_pool, _sum_pool,
          _divisor, is_plain, pool)

FLT_MAX = 3.4028234663852886e38


class Blobs(nn.Module):
    """A Caffe layer's learnable blobs, named "0", "1", ... (state dict keys "<layer>.<i>")."""

    def __init__(self, *shapes):
        super().__init__()
        for i, shape in enumerate(shapes):
            self.register_parameter(str(i), nn.Parameter(torch.zeros(shape)))

    def __getitem__(self, i):
        return getattr(self, str(i))

    def __len__(self):
        return len(self._parameters)


def conv(x, w, b, stride, pad, dilation, groups):
    """Caffe's Convolution (port/layers/conv.py): C++ truncating output size; where the last
    window overruns the padded input, extra zeros on the right, as Caffe's im2col reads."""
    extra = []
    for i, (h, k) in enumerate(zip(x.shape[2:], w.shape[2:])):
        span = h + 2 * pad[i] - (dilation[i] * (k - 1) + 1)
        out = (span // stride[i] if span >= 0 else -(-span // stride[i])) + 1
        extra.append(max(0, (out - 1) * stride[i] + dilation[i] * (k - 1) + 1 - h - 2 * pad[i]))
    if any(extra):
        x = F.pad(x, (pad[1], pad[1] + extra[1], pad[0], pad[0] + extra[0]))
        pad = (0, 0)
    return F.conv2d(x, w, b, stride, pad, dilation, groups)


def deconv(x, w, b, stride, pad, dilation, groups):
    """Caffe's Deconvolution: conv_transpose with no output padding."""
    return F.conv_transpose2d(x, w, b, stride, pad, 0, groups, dilation)


def batch_norm(x, blobs, eps):
    """Caffe's BatchNorm with global statistics (port/layers/norm.py): the blobs divided by the
    scale factor, ``(x - mean) / sqrt(var + eps)``, the root rounded once from float64 (a
    correctly rounded float32 sqrt, as Caffe's)."""
    s = blobs[2].detach()[0]
    factor = torch.where(s == 0, torch.zeros_like(s), 1 / s)
    view = (1, -1) + (1,) * (x.dim() - 2)
    mean, var = blobs[0].detach() * factor, blobs[1].detach() * factor
    return (x - mean.view(view)) / torch.sqrt((var + eps).double()).float().view(view)


def scale(x, s, b, axis):
    """Caffe's Scale / Bias (port/layers/norm.py): blobs broadcast from ``axis`` (``s`` None:
    Bias alone)."""
    blob = b if s is None else s
    view = (1,) * axis + tuple(blob.shape) + (1,) * (x.dim() - axis - blob.dim())
    y = x if s is None else x * s.reshape(view)
    return y if b is None else y + b.reshape(view)


def softmax_loss(x, label, axis, ignore_label, normalization):
    """Caffe's SoftmaxWithLoss forward (port/layers/loss.py): ``-sum log(max(p_label,
    FLT_MIN))`` over the positions whose label is not ``ignore_label``, divided by
    ``max(1, n)`` with n by ``normalization`` (FULL, VALID, BATCH_SIZE, NONE)."""
    outer, c = int(torch.tensor(x.shape[:axis]).prod()), x.shape[axis]
    prob = torch.softmax(x, axis).reshape(outer, c, -1)
    lab = label.reshape(outer, -1).to(torch.int64)
    valid = lab != ignore_label if ignore_label is not None else torch.ones_like(lab, dtype=bool)
    picked = prob.gather(1, torch.where(valid, lab, 0).unsqueeze(1)).squeeze(1)
    terms = -torch.log(torch.clamp(picked, min=1.1754943508222875e-38))
    total = terms[valid].double().sum().float()
    n = {"FULL": lab.numel(), "VALID": int(valid.sum()), "BATCH_SIZE": outer,
         "NONE": 1}[normalization]
    return total / max(1, n)


def prelu(x, slope, shared):
    """Caffe's PReLU (port/layers/neuron.py): ``x`` where ``x > 0``, else ``slope * x``."""
    a = slope if shared else slope.reshape((1, -1) + (1,) * (x.dim() - 2))
    return torch.where(x > 0, x, a * x)
