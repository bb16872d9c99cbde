"""A faster training path for an FCN on CPU: the same layers and parameters, other kernels.

What Caffe computes in a training step of an FCN (``Net::ForwardBackward``): each
``conv_relu`` pair as an im2col + GEMM convolution writing its top, a ReLU over that top in
place; backward, the ReLU's ``top_diff * (top > 0)`` (Caffe tests the top, which after the
in-place ReLU is the output), then the convolution's three GEMMs: the weight gradient
(``diff x col(bottom)``), the bias gradient (sum of the diff over the pixels) and the bottom
gradient (``weight^T x diff``, col2im), the last skipped where the bottom needs none (the data
layer's). The eager model does the same with PyTorch's ops, in NCHW, with the ReLU as its own
pass over the activation in each direction.

:func:`train_fast` returns a module that computes the same gradients with fewer passes over
memory:

1. **channels-last**: the model's 4-D parameters are re-laid out as NHWC *in place*
   (``p.data = p.data.contiguous(memory_format=torch.channels_last)``: the same
   ``nn.Parameter`` objects, so an optimizer or ``fcn_port.solvers.Solver`` built on
   ``model.param_specs`` before or after still updates them, and no second copy of the weights
   exists) and the inputs are fed as NHWC, oneDNN's native layout, so no reorders run between
   layers, forward or backward;
2. **fused conv + ReLU**: each Convolution read only by an in-place ReLU (every ``conv_relu``
   of the official nets, found by :func:`.fast.conv_relu_pairs`) runs as one oneDNN
   convolution with a ReLU post-op (:class:`ConvReLUFunction`); its backward is PyTorch's
   ``threshold_backward`` (the ReLU's gradient, tested on the output as Caffe does) and
   ``convolution_backward`` (oneDNN's backward-data and backward-weights kernels, which the
   eager model's autograd calls too). The pre-ReLU activation is never stored.

Gradients differ from the eager model's only by float32 summation order (oneDNN's NHWC
kernels against its NCHW ones), about 1e-6 relative; ``tests/models/test_train_fast.py``
checks that a Caffe SGD step on the fast path lands within float32 rounding of the eager step.
The update itself is untouched: element-wise in-place operations give bit-identical results in
any memory layout.

Measured (benchmarks/README.md, ``train_step.py``, voc-fcn8s at 500 x 500 on 2 cores): this
path was *slower* than the eager model for training (0.93x eager, 0.45x eager with
``keep_freed_memory``): PyTorch's ``convolution_backward`` on NHWC ran slower than on NCHW there,
more than the forward's NHWC gain. So ``bench --train --fast`` does not use it; it is kept,
parity-tested, for machines (and oneDNN versions) where NHWC backward is the quicker one.
"""
import copy

import torch
from torch import nn

from fcn_port.port.layers.conv import Convolution

from .fast import NHWC, conv_relu_pairs


class ConvReLUFunction(torch.autograd.Function):
    """``relu(conv2d(x, w, b))`` as one oneDNN op forward; backward through the output's sign
    and ``aten.convolution_backward``, computing only the gradients autograd asks for."""

    @staticmethod
    def forward(ctx, x, weight, bias, pad, stride, dilation, groups):
        y = torch.ops.mkldnn._convolution_pointwise(x, weight, bias, pad, stride, dilation,
                                                     groups, "relu", [], "")
        ctx.save_for_backward(x, weight, y)
        ctx.conf = (pad, stride, dilation, groups, bias is not None)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, y = ctx.saved_tensors
        pad, stride, dilation, groups, has_bias = ctx.conf
        want = ctx.needs_input_grad
        g = torch.ops.aten.threshold_backward(grad, y, 0)  # ReLU: grad where the output > 0
        gx, gw, gb = torch.ops.aten.convolution_backward(
            g, x, weight, [weight.shape[0]] if has_bias else None, stride, pad, dilation,
            False, [0] * len(pad), groups, [want[0], want[1], has_bias and want[2]])
        return gx, gw, gb, None, None, None, None


class TrainConvReLU(nn.Module):
    """A Caffe Convolution + its in-place ReLU for training: the layer's own parameters."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        c = self.layer
        return ConvReLUFunction.apply(x, c.blob(0), c.blob(1) if c.bias_term else None,
                                      list(c.pad), list(c.stride), list(c.dilation), c.group)


def trainable_(model):
    """Give each parameter whose data was made under ``torch.inference_mode()`` (e.g. re-laid
    out by the inference fast path, :func:`.fast.fused` with ``inplace``) a normal tensor of
    the same values and layout, so autograd may save it; the Parameter objects stay."""
    with torch.no_grad():
        for p in model.parameters():
            if p.data.is_inference():
                p.data = p.data.clone(memory_format=torch.preserve_format)
    return model


def channels_last_(model):
    """Re-lay every 4-D parameter of ``model`` out as NHWC in place (same Parameter objects);
    returns the model."""
    trainable_(model)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    return model


def available():
    return hasattr(torch.ops.mkldnn, "_convolution_pointwise") and \
        torch.backends.mkldnn.is_available()


def train_fast(model, *, fuse=True, channels_last=True):
    """Steps 1-2 of the module docstring: a module taking NCHW inputs and returning NCHW
    scores, sharing ``model``'s parameters (a shallow copy with the conv+ReLU pairs swapped).
    ``model`` keeps its Dropout mode (``train()`` / ``eval()``); without oneDNN, or with both
    steps off, ``model`` itself is returned."""
    fuse = fuse and available()
    if not fuse and not channels_last:
        return model
    out = copy.copy(model)
    out._modules = type(model._modules)(model._modules)
    if fuse:
        for conv, relu in conv_relu_pairs(model):
            layer = model._modules[conv]
            if isinstance(layer, Convolution) and layer.ndim == 4 and layer.axis == 1:
                out._modules[conv] = TrainConvReLU(layer)
                out._modules[relu] = nn.Identity()
    if channels_last:
        channels_last_(model)
        return NHWC(out)
    return out
