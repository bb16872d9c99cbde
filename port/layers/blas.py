"""Caffe's CPU summation order: its GEMM calls, made with its arguments, through the OpenBLAS
that numpy's wheel bundles (:func:`caffe_blas`).

How Caffe computes it
---------------------
``Convolution`` is ``BaseConvolutionLayer::forward_cpu_gemm`` (``base_conv_layer.cpp``): per
image, ``im2col_cpu`` lays every window out as a column (rows ordered channel, kernel row,
kernel column; columns the output positions), then per group ``caffe_cpu_gemm(CblasNoTrans,
CblasNoTrans, num_output / group, out_positions, C / group * kh * kw, 1, weight, col, 0, top)``;
``forward_cpu_bias`` adds the bias as one more GEMM of inner size 1 against a row of ones
(``beta = 1``). ``InnerProduct::Forward_cpu`` is ``caffe_cpu_gemm(CblasNoTrans, transpose ?
CblasNoTrans : CblasTrans, M, N, K, 1, bottom, weight, 0, top)`` and the bias the same way.
``caffe_cpu_gemm`` is ``cblas_sgemm(CblasRowMajor, ...)``.

Where PyTorch differs
---------------------
Each output is a float32 sum over K, rounded in the order of the BLAS kernel. OpenBLAS chains
fused multiply-adds over k for most shapes and keeps 16 interleaved partial sums, added as a
tree, when there are few output positions (an FC layer run as a 1x1 convolution); torch's CPU
convolutions (oneDNN) sum in yet another order. The results differ by float rounding, about
1e-7 relative per layer, which most nets never show. A BatchNorm whose statistics are close to
the batch's own (every trained ResNet) subtracts nearly equal numbers and divides by a small
deviation: the reduced ResNet-50 oracle case ends 2e-4 from Caffe (Caffe itself is 3.5e-4
from the float64 result there), while each of its layers alone is within an ulp or two.

fcn-port
--------
Inside ``with caffe_blas():``, 2-D ``Convolution`` and ``InnerProduct`` on CPU float32 make
exactly Caffe's calls to ``cblas_sgemm`` of numpy's OpenBLAS (``scipy-openblas``). On the
machine that wrote the oracle, all 251 convolutions and inner products of its cases come out
bit for bit as Caffe's. Gradients are torch's (Caffe's backward GEMMs are not replayed), within
the usual 1e-5. Other layers, devices and dtypes run as always. ``fcn-port parity
--caffe-blas`` runs a case this way.
"""
import contextlib
import contextvars
import ctypes
import glob
import os

import numpy as np
import torch

from ..errors import UnsupportedError

_ACTIVE = contextvars.ContextVar("caffe_blas", default=False)
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_SGEMM = []  # the loaded cblas_sgemm, once


@contextlib.contextmanager
def caffe_blas():
    """Run Convolution and InnerProduct with Caffe's own GEMM calls (module doc)."""
    _sgemm()  # refuse up front where there is no OpenBLAS to call
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active(x):
    """Whether a layer given bottom ``x`` runs through Caffe's GEMM calls now."""
    return _ACTIVE.get() and x.device.type == "cpu" and x.dtype == torch.float32


def _sgemm():
    if not _SGEMM:
        here = os.path.dirname(np.__file__)
        libs = sorted(glob.glob(os.path.join(here, "..", "numpy.libs", "*openblas*"))
                      + glob.glob(os.path.join(here, ".dylibs", "*openblas*")))
        for path, (name, blasint) in ((p, s) for p in libs for s in (
                ("scipy_cblas_sgemm64_", ctypes.c_int64), ("scipy_cblas_sgemm", ctypes.c_int32),
                ("cblas_sgemm64_", ctypes.c_int64), ("cblas_sgemm", ctypes.c_int32))):
            fn = getattr(ctypes.CDLL(path), name, None)
            if fn is not None:
                i, f, p = blasint, ctypes.c_float, ctypes.c_void_p
                fn.argtypes = [ctypes.c_int] * 3 + [i] * 3 + [f, p, i, p, i, f, p, i]
                fn.restype = None
                _SGEMM.append(fn)
                break
        if not _SGEMM:
            raise UnsupportedError("Caffe's summation order (--caffe-blas) calls the OpenBLAS "
                                   "inside numpy's wheel, and this numpy has none (install "
                                   "numpy from PyPI)")
    return _SGEMM[0]


def sgemm(a, b, *, trans_b=False, c=None):
    """``cblas_sgemm(RowMajor, NoTrans, trans_b, ...)``: ``a @ b`` (``a @ b.T`` with
    ``trans_b``) into a new float32 array, or ``c + a @ b`` rounded as BLAS does with
    ``beta = 1`` when ``c`` is given (it is updated in place and returned)."""
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    m, k = a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    beta = 0.0 if c is None else 1.0
    c = np.zeros((m, n), np.float32) if c is None else c
    assert c.flags.c_contiguous and c.dtype == np.float32 and c.shape == (m, n)
    _sgemm()(_ROW_MAJOR, _NO_TRANS, _TRANS if trans_b else _NO_TRANS, m, n, k, 1.0,
             a.ctypes.data, k, b.ctypes.data, k if trans_b else n, beta, c.ctypes.data, n)
    return c


class Conv2d(torch.autograd.Function):
    """Caffe's convolution forward (im2col + a GEMM per group + the bias GEMM); torch's
    gradients. ``x`` already carries any extra right-hand zeros (its pad is in ``pad``)."""

    @staticmethod
    def forward(ctx, x, w, bias, stride, pad, dilation, group):
        ctx.save_for_backward(x, w)
        ctx.geometry, ctx.has_bias = (stride, pad, dilation, group), bias is not None
        n, m = x.shape[0], w.shape[0]
        out = [(h + 2 * p - d * (k - 1) - 1) // s + 1 for h, k, s, p, d in
               zip(x.shape[2:], w.shape[2:], stride, pad, dilation)]
        top = np.empty((n, m) + tuple(out), np.float32)
        wg = w.detach().numpy().reshape(group, m // group, -1)
        ones = np.ones((1, out[0] * out[1]), np.float32)
        b = None if bias is None else bias.detach().numpy().reshape(m, 1)
        for i in range(n):
            col = torch.nn.functional.unfold(x[i:i + 1].detach(), tuple(w.shape[2:]), dilation,
                                             pad, stride)[0].numpy().reshape(group, -1, ones.size)
            y = np.concatenate([sgemm(wg[g], col[g]) for g in range(group)])
            top[i] = (y if b is None else sgemm(b, ones, c=y)).reshape(m, *out)
        return torch.from_numpy(top)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        stride, pad, dilation, group = ctx.geometry
        grad = torch.nn.grad
        gx = grad.conv2d_input(x.shape, w, g, stride, pad, dilation, group) \
            if ctx.needs_input_grad[0] else None
        gw = grad.conv2d_weight(x, w.shape, g, stride, pad, dilation, group) \
            if ctx.needs_input_grad[1] else None
        gb = g.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None, None, None


class InnerProduct(torch.autograd.Function):
    """Caffe's InnerProduct forward (the GEMM and the bias GEMM); torch's gradients. ``w`` is
    N x K, or K x N when ``transpose``."""

    @staticmethod
    def forward(ctx, x2, w, bias, transpose):
        ctx.save_for_backward(x2, w)
        ctx.transpose, ctx.has_bias = transpose, bias is not None
        y = sgemm(x2.detach().numpy(), w.detach().numpy(), trans_b=not transpose)
        if bias is not None:
            ones = np.ones((x2.shape[0], 1), np.float32)
            sgemm(ones, bias.detach().numpy().reshape(1, -1), c=y)
        return torch.from_numpy(y)

    @staticmethod
    def backward(ctx, g):
        x2, w = ctx.saved_tensors
        gx = (g @ w.T if ctx.transpose else g @ w) if ctx.needs_input_grad[0] else None
        gw = (x2.T @ g if ctx.transpose else g.T @ x2) if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None
