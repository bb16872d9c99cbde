"""Timing a forward pass: FLOPs from the layer shapes, median wall time, peak memory.

FLOPs are counted the way the FCN papers and Caffe's ``net_time`` reports do: 2 x the
multiply-accumulates of the Convolution and Deconvolution layers (everything else, ReLU,
pooling, crop, sums, is < 0.5% of the work and memory-bound). Per layer, with Caffe's blob
shapes (``top_shapes``, i.e. Caffe's ``Reshape``)::

    Convolution    MACs = N * num_output * H_out * W_out * (C_in / group) * kh * kw
    Deconvolution  MACs = N * C_in * H_in * W_in * (num_output / group) * kh * kw

The shapes flow through the layers' own ``top_shapes``, so a model set up on the ``meta``
device is counted without allocating anything: the official voc-fcn8s at 500 x 500 is 362.4
GFLOP (conv1's pad 100 makes the first stage 698 x 698; fc6 alone, a 7 x 7 conv with 4096
outputs, is 52.6 GFLOP).

:func:`time_forward` runs ``fn(*inputs)`` under ``torch.inference_mode()``: warm-up runs, then
``runs`` timed ones, median (and min). :func:`peak_rss` reads the kernel's high-water mark
(``VmHWM``); :func:`reset_peak` sets it back to the current RSS (``/proc/self/clear_refs``),
so the peak of one phase is measured alone. :func:`bench` does it all for one model and size.
"""
import math
import os
import resource
import statistics
import time

import torch


def layer_flops(model, size=(500, 500), batch=1):
    """[(layer, type, flops)] of the Convolution/Deconvolution layers of ``model`` (an FCN or
    a CaffeNet) for inputs of ``size`` (H, W); only shapes are computed."""
    layers, shapes = _layers(model), {}
    out = []
    for lp, layer in layers:
        if getattr(layer, "is_source", False) or lp.type == "Input":
            for top, s in zip(lp.top, lp.input_param.shape):
                dims = list(s.dim)
                shapes[top] = (batch, *dims[1:-2], *size) if len(dims) >= 4 else tuple(dims)
            continue
        bottoms = [shapes[b] for b in lp.bottom]
        tops = layer.top_shapes(bottoms)
        shapes.update(zip(lp.top, (tuple(t) for t in tops)))
        if lp.type in ("Convolution", "Deconvolution"):
            kernel = math.prod(layer.kernel)
            if lp.type == "Convolution":
                macs = sum(math.prod(t) for t in tops) * (layer.channels // layer.group) * kernel
            else:
                macs = sum(math.prod(b) for b in bottoms) * (layer.num_output // layer.group) \
                    * kernel
            out.append((lp.name, lp.type, 2 * macs))
    return out


def flops(model, size=(500, 500), batch=1):
    """Total conv/deconv FLOPs (2 x MACs) of one forward pass at ``size``."""
    return sum(f for _, _, f in layer_flops(model, size, batch))


def _layers(model):
    from fcn_port.port.net import CaffeNet

    from ..fcn import FCN
    from ..spec import net_param

    if isinstance(model, FCN):
        return [(lp, model._modules.get(lp.name)) for lp in net_param(model.cfg, "model").layer]
    if isinstance(model, CaffeNet):
        return list(zip(model.layer_params, model.layers.values()))
    raise TypeError(f"cannot count the layers of {type(model).__name__}")


def meta_model(name, **kw):
    """The official ``name`` set up on the ``meta`` device (shapes only, no memory)."""
    from ..fcn import FCN
    from ..zoo import official

    with torch.device("meta"):
        return FCN(official(name).replace(**kw) if kw else official(name))


def _status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss():
    """Resident set size now, bytes (None where /proc is missing)."""
    return _status("VmRSS")


def peak_rss():
    """Peak resident set size since the start or the last :func:`reset_peak`, bytes."""
    hwm = _status("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak():
    """Set the peak back to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def time_forward(fn, inputs, runs=5, warmup=1):
    """{"median_s", "min_s", "times_s", "peak_rss", "rss_before", "output"}: ``fn(*inputs)``
    timed under inference mode after ``warmup`` untimed calls; peak RSS over the timed phase
    (everything resident); ``rss_before`` is the RSS before the warm-up, so peak - rss_before
    is what the passes need on top of the model (activations, and what malloc keeps)."""
    times, out, before = [], None, rss()
    with torch.inference_mode():
        for _ in range(warmup):
            out = fn(*inputs)
        out = None
        reset_peak()
        for _ in range(max(1, runs)):
            t = time.perf_counter()
            out = fn(*inputs)
            times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "peak_rss": peak_rss(), "rss_before": before, "output": out}


def sgemm_rate(n=4096, runs=5):
    """The machine's float32 matrix-multiply rate (GFLOP/s, median of ``runs`` n x n x n)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    r = time_forward(torch.mm, (a, b), runs=runs, warmup=2)
    return 2 * n ** 3 / r["median_s"] / 1e9


def bench(model, size=(500, 500), runs=5, warmup=1, fn=None, seed=0):
    """Time ``model`` (or ``fn``, e.g. a faster path of it) at ``size``: a JSON-ready report
    with GFLOP, median/min seconds, GFLOP/s, peak RSS over the timed runs, threads."""
    from .onnx import sample_inputs

    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise TypeError("bench times FCN models (fcn_port.models); load one first")
    size = tuple(int(s) for s in size)
    inputs = sample_inputs(cfg, size, seed)
    work = flops(model, size)
    r = time_forward(fn or model, inputs, runs, warmup)
    return {"model": cfg.name, "size": list(size), "gflop": work / 1e9,
            "median_s": r["median_s"], "min_s": r["min_s"], "runs": len(r["times_s"]),
            "gflops_per_s": work / r["median_s"] / 1e9, "peak_rss_mb": r["peak_rss"] / 2**20,
            "forward_mb": (r["peak_rss"] - r["rss_before"]) / 2**20 if r["rss_before"] else None,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count()}


def random_weights(model, seed=0):
    """Fill ``model``'s params in place, seeded: He-normal convolutions (activations keep their
    scale through the 16 layers, so errors are measured on real magnitudes), N(0, 0.1) biases
    and scales; returns the model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.state_dict().items()):
            if p.dim() == 4:
                std = (2.0 / (p.shape[1] * p.shape[2] * p.shape[3])) ** 0.5
                p.copy_(torch.randn(p.shape, generator=g) * std)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def keep_freed_memory(size=1 << 30):
    """Ask glibc to serve big blocks from its heap and keep freed memory (``mallopt``
    M_MMAP_THRESHOLD / M_TRIM_THRESHOLD): each forward pass then reuses the previous pass's
    pages instead of mapping (and first-touching) fresh ones. False where it is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, min(size, 2**31 - 1))) and bool(libc.mallopt(-1, 2**31 - 1))
    except (OSError, AttributeError):
        return False
