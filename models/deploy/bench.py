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

Training (:func:`bench_train`): one step is what Caffe's ``Solver::Step`` does for batch 1 and
``iter_size`` 1: clear the param diffs, forward, the loss of the official train net (its
SoftmaxWithLoss layers, ``normalize: false``, ignore 255: a sum over pixels), backward, and the
solver's update. The update is passed in as ``make_step(model)`` (a callable taking the
forward-backward function, like ``fcn_port.solvers.Solver.step``), so this module times any
optimizer (benchmarks/train_step.py's baselines, e.g. ``torch.optim.SGD``) and needs no solver of
its own. ``fcn-port bench --train`` does not come here: it times ``fcn-port train``'s own iteration
(``fcn_port.solvers.bench.train_bench``), so that it measures what users run. The work is about 3 x
the forward's FLOPs (the backward's data and weight gradients each cost one forward's
multiply-adds).
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


def time_forward(fn, inputs, runs=5, warmup=1, sync=None):
    """{"median_s", "min_s", "times_s", "peak_rss", "rss_before", "output"}: ``fn(*inputs)``
    timed under inference mode after ``warmup`` untimed calls; peak RSS over the timed phase
    (everything resident); ``rss_before`` is the RSS before the warm-up, so peak - rss_before
    is what the passes need on top of the model (activations, and what malloc keeps).
    ``sync()`` (e.g. ``torch.cuda.synchronize``) is called after each call, inside its time."""
    sync = sync or (lambda: None)
    times, out, before = [], None, rss()
    with torch.inference_mode():
        for _ in range(warmup):
            out = fn(*inputs)
        sync()
        out = None
        reset_peak()
        for _ in range(max(1, runs)):
            t = time.perf_counter()
            out = fn(*inputs)
            sync()
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


def train_loss(cfg):
    """Caffe's objective of ``cfg``'s official train net: ``fn(scores, labels)`` adds the
    SoftmaxWithLoss layers of its heads (loss_weight 1), each the port's layer built from the
    official LayerParameter (``normalize: false`` except FCN-AlexNet, ``ignore_label: 255``)."""
    from fcn_port.port.layers import lookup

    from ..spec import net_param

    split = cfg.solver.get("splits", ("train", "val"))[0]
    layers = [lp for lp in net_param(cfg, split).layer if lp.type == "SoftmaxWithLoss"]
    losses = [lookup(lp)(lp, [(1, n, 8, 8), (1, 1, 8, 8)], "TRAIN")
              for lp, (_, n) in zip(layers, cfg.heads)]

    def loss(scores, labels):
        scores = scores if isinstance(scores, tuple) else (scores,)
        return sum(f(s, lab) for f, s, lab in zip(losses, scores, labels))
    return loss


def sample_labels(cfg, size, seed=0):
    """One label blob per head, 1 x 1 x H x W float (as the data layers give them): classes
    drawn uniformly, about 5 % set to the ignore label 255."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _, n in cfg.heads:
        lab = torch.randint(0, n, (1, 1) + tuple(size), generator=g).float()
        lab[torch.rand(lab.shape, generator=g) < 0.05] = 255
        out.append(lab)
    return tuple(out)


def time_train_step(step, forward_backward, runs=3, warmup=1):
    """{"median_s", "min_s", "times_s", "losses", "peak_rss", "rss_before"}: ``step``
    (one solver iteration given ``forward_backward``) timed ``runs`` times after ``warmup``
    untimed ones (the first step allocates the gradients and the solver's history)."""
    times, losses, before = [], [], rss()
    for _ in range(warmup):
        step(forward_backward)
    reset_peak()
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        out = step(forward_backward)
        times.append(time.perf_counter() - t)
        losses.append(float(out[-1] if isinstance(out, (list, tuple)) else out))
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "losses": losses, "peak_rss": peak_rss(), "rss_before": before}


def bench_train(model, make_step, size=(500, 500), runs=3, warmup=1, fn=None, seed=0):
    """Time one training step of ``model`` (forward through ``fn``, e.g.
    :func:`.train_fast.train_fast` of it, or the model) at ``size``, batch 1, with the update of
    ``make_step(model)``: a JSON-ready report with the step's median/min seconds, GFLOP of
    forward + backward (3 x forward), GFLOP/s, the losses and peak RSS over the timed steps."""
    from .onnx import sample_inputs

    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise TypeError("bench_train times FCN models (fcn_port.models); load one first")
    size = tuple(int(s) for s in size)
    inputs, labels = sample_inputs(cfg, size, seed), sample_labels(cfg, size, seed)
    loss, net = train_loss(cfg), fn or model
    step = make_step(model)

    def forward_backward():
        out = loss(net(*inputs), labels)
        out.backward()
        return float(out.detach())
    return train_figures(model, size, time_train_step(step, forward_backward, runs, warmup))


def train_figures(model, size, r):
    """The JSON-ready report of training steps of ``model`` at ``size`` timed by
    :func:`time_train_step` (``r``): seconds, GFLOP of forward + backward (3 x forward),
    GFLOP/s, the losses, peak RSS and what the steps needed on top."""
    work = 3 * flops(model, size)
    return {"model": model.cfg.name, "size": list(size), "gflop": work / 1e9,
            "median_s": r["median_s"], "min_s": r["min_s"], "times_s": r["times_s"],
            "runs": len(r["times_s"]), "gflops_per_s": work / r["median_s"] / 1e9,
            "losses": r["losses"], "peak_rss_mb": r["peak_rss"] / 2**20,
            "step_mb": (r["peak_rss"] - r["rss_before"]) / 2**20 if r["rss_before"] else None,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
