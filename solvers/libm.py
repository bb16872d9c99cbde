"""C's ``powf`` and ``expf``, as Caffe's CPU solvers call them.

Where Caffe calls the C library
-------------------------------
``SGDSolver::GetLearningRate`` computes the ``inv`` and ``poly`` rates with ``pow(float,
float)`` and ``sigmoid`` with ``exp(float)``: in C++ these are the float overloads, C's
``powf`` and ``expf``. ``caffe_powx`` (``math_functions.cpp``; without MKL, the loop
``y[i] = pow(a[i], b)`` of ``mkl_alternate.hpp``) is ``powf`` per element; the adaptive solvers
call it for squares (``b = 2``: AdaGrad, RMSProp, AdaDelta) and square roots (``b = 0.5``: all
four). None of these is correctly rounded in glibc, and numpy's float32 ``power`` and ``exp``
and ``torch.sqrt`` (Sleef, within 0.5001 ulp) are other functions: each differs from Caffe's by
one ulp for a fraction of inputs. So :func:`powf` and :func:`expf` call
the C library itself (one scalar per iteration for the rates), and :func:`powx` gets the C
library's result for every element without a call per element:

glibc's ``powf`` works in double and rounds once to float, so its result is the correctly
rounded ``x**b`` except when that value lies very close to a midpoint between two floats.
Measured over every positive normal float (glibc 2.36 on x86-64, the oracle's Caffe's): for
``b = 2`` and ``b = 0.5`` the results differ from the correctly rounded ones for 0.07% of the
inputs, and every one of them lies within 0.0017 ulp of a midpoint. :func:`powx` rounds ``x**b``
computed in double (exact for ``b = 2``; within 2^-53 relative for ``b = 0.5``) and asks the C
library for the elements within :data:`NEAR` (0.004 ulp: about 0.8% of them) of a midpoint,
and for zeros, subnormals, infinities, NaN and results outside the normal range. On a C library
that is not glibc the bound may not hold; the elements far from a midpoint are the correctly
rounded values either way.

Where they agree: on CUDA, Caffe's kernels call CUDA's own ``powf``, which this does not
emulate (the solver keeps torch's operations there).
"""
import ctypes
import ctypes.util

import numpy as np

NEAR = 0.004  # ulps from a float midpoint within which the C library is asked
_TINY = np.ldexp(1.0, -126)  # the smallest normal float32
_HUGE = float(np.finfo(np.float32).max)


def _load():
    name = ctypes.util.find_library("m") or "libm.so.6"
    try:
        lib = ctypes.CDLL(name)
    except OSError:  # no separate libm (e.g. musl, macOS): the process's own C library
        lib = ctypes.CDLL(None)
    for fn, args in (("powf", 2), ("expf", 1)):
        f = getattr(lib, fn)
        f.restype, f.argtypes = ctypes.c_float, [ctypes.c_float] * args
    return lib


_LIB = _load()


def powf(x, y):
    """C's ``powf(x, y)`` (float32 arguments and result) as a numpy float32."""
    return np.float32(_LIB.powf(float(np.float32(x)), float(np.float32(y))))


def expf(x):
    """C's ``expf(x)`` as a numpy float32."""
    return np.float32(_LIB.expf(float(np.float32(x))))


def powx(x, b):
    """``caffe_powx``: C's ``powf(x[i], b)`` for every element of the float32 array ``x``
    (``b`` 2 or 0.5 computed as described above; any other ``b`` element by element)."""
    x = np.ascontiguousarray(x, np.float32)
    flat = x.reshape(-1)
    if b == 2:
        exact = flat.astype(np.float64) ** 2
    elif b == 0.5:
        with np.errstate(invalid="ignore"):
            exact = np.sqrt(flat.astype(np.float64))
    else:
        return np.array([powf(v, b) for v in flat], np.float32).reshape(x.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        out = exact.astype(np.float32)
        mantissa, _ = np.frexp(exact)
        position = np.abs(mantissa) * (1 << 24)  # in float32 ulps of the result
        near = np.abs(position - np.floor(position) - 0.5) < NEAR
        odd = ~((np.abs(flat) >= _TINY) & (np.abs(flat) <= _HUGE)) | \
            ~((exact >= _TINY) & (exact <= _HUGE))
    ask = np.flatnonzero(near | odd)
    if ask.size:
        out[ask] = [_LIB.powf(float(v), float(b)) for v in flat[ask]]
    return out.reshape(x.shape)
