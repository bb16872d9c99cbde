"""Float32 operations where Caffe's result and torch's CPU kernel differ: ``sqrt``, ``dot``.

Caffe computes ``sqrt`` of a float with the C library or the CPU's instruction (``caffe_sqrt``
is ``vsSqrt``, a loop of ``sqrt`` without MKL; the solvers' ``caffe_sqrt`` too), which IEEE 754
requires to be correctly rounded. torch's vectorized CPU ``sqrt`` (Sleef, within 0.5001 ulp)
is not: on an AVX-512 machine with torch 2.13 about one float32 in six comes out an ulp away
(a 4-element tensor takes the scalar path and is exact), which shows in BatchNorm's outputs
(1-2 ulp in 10-45% of the elements of a ResNet-50) and grows through a deep net past 1e-5.
CUDA's ``sqrtf`` is correctly rounded, so torch's own is used there.

:func:`sqrt` is the correctly rounded one (numpy's, the CPU instruction), with the gradient
``g / (2 sqrt(x))`` where autograd needs one.

``caffe_cpu_dot`` is ``cblas_sdot``: OpenBLAS sums in its kernel's order (several partial sums),
which numpy's float32 ``dot`` reproduces, as it calls the OpenBLAS numpy's wheel bundles;
``torch.dot`` sums in another (an ulp apart now and then). :func:`dot` is numpy's on the CPU
and torch's on CUDA (where GPU Caffe calls cuBLAS). The solvers' clipping norm and the
Euclidean and Hinge losses use it.
"""
import numpy as np
import torch


class _Sqrt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.from_numpy(np.sqrt(x.detach().numpy()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g / (2 * y)


def sqrt(x):
    """The correctly rounded square root of every element of ``x`` (as Caffe's)."""
    if x.device.type != "cpu":
        return x.sqrt()
    if x.requires_grad and torch.is_grad_enabled():
        return _Sqrt.apply(x)
    return torch.from_numpy(np.sqrt(x.detach().numpy()))


def dot(x, y):
    """``caffe_cpu_dot(x, y)`` of two same-sized float32 tensors, as a 0-d tensor (no grad)."""
    if x.device.type != "cpu":
        return torch.dot(x.reshape(-1), y.reshape(-1)).detach()
    a, b = x.detach().reshape(-1).numpy(), y.detach().reshape(-1).numpy()
    return torch.tensor(np.dot(a, b), dtype=torch.float32)
