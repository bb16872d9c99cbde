"""fcn-port's forward pass against the runtimes a user would pick instead, in one process.

A user who wants FCN inference on a CPU can stay with fcn-port (eager, or its fast path,
:mod:`.fast`), or export to ONNX (:mod:`.onnx`) and run the file in ONNX Runtime or OpenVINO.
:func:`compare` times all four on the same model and input, interleaved (pass 1 of every
runtime, then pass 2 of every runtime, ...), so a burst of load from another process lands on
all of them alike, and measures each output's error against eager's
(max|y - eager| / max(1, max|eager|)). The peers run fcn-port's own ONNX export of the model,
with the precision a user would get by asking for float32: ONNX Runtime's CPU provider with
every graph optimisation, OpenVINO's CPU plugin with ``INFERENCE_PRECISION_HINT: f32`` (its
default on CPUs with bf16 or AMX would be lower precision) and ``PERFORMANCE_HINT: LATENCY``.
Every runtime gets the same number of threads (torch's). A peer that is not installed is
reported as ``{"installed": False}`` (``pip install 'fcn-port[bench]'`` installs both).

:func:`session` opens an exported file in a peer runtime; ``fcn-port infer --backend`` runs
through it.
"""
import importlib.util
import os
import statistics
import tempfile
import time
from functools import partial

import torch

from fcn_port.port.errors import UnsupportedError

PEERS = {"onnxruntime": "onnxruntime", "openvino": "openvino"}  # backend name -> module


def installed(peer):
    """The peer's package and ``onnx`` (the export needs it) are both importable."""
    return all(importlib.util.find_spec(m) is not None for m in (PEERS[peer], "onnx"))


def require(peer):
    """One line naming what to install, unless ``peer`` is :func:`installed`."""
    if not installed(peer):
        raise UnsupportedError(f"the {peer} backend needs the '{PEERS[peer]}' and 'onnx' "
                               "packages: pip install 'fcn-port[bench]'")


def session(peer, onnx_path, threads=None):
    """A callable ``run(*arrays) -> [arrays]`` running ``onnx_path`` in ``peer``
    ('onnxruntime' or 'openvino') at float32 with ``threads`` (default: torch's)."""
    threads = int(threads or torch.get_num_threads())
    require(peer)
    if peer == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        s = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in s.get_inputs()]
        return lambda *xs: s.run(None, dict(zip(names, xs)))
    import openvino as ov

    compiled = ov.Core().compile_model(onnx_path, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run(*xs):
        request.infer(list(xs))
        return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]
    return run


def compare(model, size=(500, 500), runs=5, warmup=1, *, onnx_path=None, compile=False,
            log=None):
    """Time eager, fast, ONNX Runtime and OpenVINO on ``model`` (an FCN) at ``size``: a
    JSON-ready ``{"size", "threads", "runtimes": {name: {"median_s", "min_s", "times_s",
    "error_vs_eager", ...} or {"installed": False}}, "best_peer", "fast_vs_best_peer"}``.
    ``onnx_path``: an export of ``model`` at ``size`` to use (default: exported here, to a
    temporary file). ``log(line)`` hears the steps."""
    from .fast import _error, fast_model
    from .onnx import export_onnx, sample_inputs

    say = log or (lambda line: None)
    size = tuple(int(s) for s in size)
    inputs = sample_inputs(model.cfg, size, seed=0)
    arrays = [x.numpy() for x in inputs]
    model.eval()
    with torch.inference_mode():
        want = model(*inputs)
    fn, how, _ = fast_model(model, inputs, compile=compile, log=say)
    fns = {"eager": partial(model, *inputs), f"fast ({how})": partial(fn, *inputs)}
    report = {"size": list(size), "threads": torch.get_num_threads(), "runtimes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        peers = [p for p in PEERS if installed(p)]
        if peers and onnx_path is None:
            say(f"exporting {model.cfg.name} to ONNX at {size[0]} x {size[1]}")
            onnx_path = os.path.join(tmp, "model.onnx")
            export_onnx(model, onnx_path, size, dynamic=False, check=False)
        for p in PEERS:
            if p not in peers:
                report["runtimes"][p] = {"installed": False}
                continue
            say(f"opening the export in {p}")
            fns[p] = partial(session(p, onnx_path), *arrays)
        times = {name: [] for name in fns}
        with torch.inference_mode():
            for name, f in fns.items():
                out = f()
                for _ in range(warmup - 1):
                    f()
                out = out if isinstance(out, (tuple, list)) else (out,)
                report["runtimes"][name] = {"error_vs_eager": _error(
                    tuple(torch.as_tensor(o) for o in out), want)}
            for r in range(runs):
                say(f"pass {r + 1} of {runs}")
                for name, f in fns.items():
                    t = time.perf_counter()
                    f()
                    times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        report["runtimes"][name].update(median_s=statistics.median(ts), min_s=min(ts),
                                        times_s=ts, installed=True)
    timed = [p for p in PEERS if p in times]
    fast = report["runtimes"][f"fast ({how})"]["median_s"]
    if timed:
        best = min(timed, key=lambda p: report["runtimes"][p]["median_s"])
        report["best_peer"] = best
        report["fast_vs_best_peer"] = report["runtimes"][best]["median_s"] / fast
    report["fast_path"] = how
    return report


def table(report):
    """The report as Markdown table lines: median, min, speed against eager and error against
    eager per runtime (``bench --peers`` prints them, benchmarks/peers.py too)."""
    eager = report["runtimes"]["eager"]["median_s"]
    lines = ["| runtime | median s | min s | x eager | max error vs eager |",
             "|---|---:|---:|---:|---:|"]
    for name, v in report["runtimes"].items():
        lines.append(f"| {name} | not installed (pip install 'fcn-port[bench]') | | | |"
                     if not v.get("installed") else
                     f"| {name} | {v['median_s']:.3f} | {v['min_s']:.3f} | "
                     f"{eager / v['median_s']:.2f} | {v['error_vs_eager']:.2g} |")
    return lines
