#!/usr/bin/env python
"""FCN forward pass on CPU: plain eager PyTorch against fcn-port's fast path and the machine's
float32 matrix-multiply rate (the roofline for a net that is 99.7 % convolution).

    python benchmarks/fcn_forward.py [--size 500 500] [--runs 5] [--model voc-fcn8s]
                                     [--no-compile] [--json]

Each measurement runs in a fresh Python process, so that each has its own peak memory:

  (c) sgemm     ``torch.mm`` of 4096 x 4096 float32 matrices, median of 5: GFLOP/s, measured
                before and after the variants; the roofline is the higher of the two
                (the machine is shared: the higher one is the less disturbed)
  (a) eager     ``model(x)`` of the hand-written FCN (Caffe layer modules, NCHW) under
                ``torch.inference_mode()``, as ``fcn_port.models.load`` gives it; its output
                is the reference for the others
  variants of fcn-port's fast path (``fcn_port.models.deploy.fast``), each with ``mallopt`` keeping
  freed memory in the heap (``models.deploy.bench.keep_freed_memory``):
      eager+malloc       (a), only the allocator changed
      eager-nhwc         (a) with channels-last weights and input
      fused-nchw         conv and ReLU as one oneDNN convolution
      fused-nhwc         both (the weights re-laid out in place, packed in oneDNN's layout)
      bands-nhwc         fused-nhwc with the blank margins once per size (``fast_model``'s
                         first choice; its GFLOP/s counts the whole 363.1 GFLOP: an
                         effective rate)
      compile-freezing   torch.compile (Inductor, freezing) of the model
  (b) fast      the quickest variant whose output is within 1e-5 (relative to max(1, max|a|))
                of (a)'s on the same input

A variant whose timed passes spread over more than 10 %, or whose neighbouring quick sgemm
probes (2048^3) ran under 85 % of the best probe, was disturbed by another process: it is run
again, at most twice, while the whole run is under 4 minutes; rows keep ``spread``,
``probe_ratio`` and ``disturbed``, and the JSON the load average before and after.

The model is the official voc-fcn8s (or ``--model``) with seeded random He-normal weights: the
time does not depend on the values, and the error check sees real magnitudes. FLOPs are
2 x MACs of the Convolution/Deconvolution layers from their shapes (363.1 GFLOP at 500 x 500).
Peak RSS is the kernel's high-water mark over the timed runs (reset before them), so it counts
the weights (538 MB), copies a variant makes of them and the passes' working memory;
*forward* is the peak minus the RSS with the model and input built. About 3-4 minutes on 2 cores.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch

from fcn_port import models
from fcn_port.models.deploy import bench as B
from fcn_port.models.deploy import fast as Fast
from fcn_port.models.deploy.onnx import sample_inputs

RTOL = 1e-5


VARIANTS = {
    "(a) eager": (False, lambda m: m),
    "eager+malloc": (True, lambda m: m),
    "eager-nhwc": (True, lambda m: Fast.NHWC(m.to(memory_format=torch.channels_last))),
    "fused-nchw": (True, lambda m: Fast.fused(m, channels_last=False)),
    "fused-nhwc": (True, lambda m: Fast.fused(m, inplace=True)),
    "bands-nhwc": (True, lambda m: Fast.fused(m, inplace=True, bands=True)),
    "compile-freezing": (True, Fast.compiled),
}


def measure(args):
    """Child process: build the model, time one variant, compare with the reference output."""
    malloc, make = VARIANTS[args.variant]
    size = tuple(args.size)
    model = B.random_weights(models.build(args.model), seed=0)
    work = B.flops(model, size)
    x = sample_inputs(model.cfg, size, seed=0)
    if malloc:  # after the set-up, so the heap keeps only what the passes free
        B.keep_freed_memory()
    rest = B.rss()  # model and input only
    t = time.time()
    fn = make(model)
    with torch.inference_mode():
        first = fn(*x)  # compiles, for torch.compile
    setup = time.time() - t
    r = B.time_forward(fn, x, args.runs, args.warmup)
    got = r.pop("output")
    if args.ref_out:
        torch.save(got, args.ref_out)
        err = 0.0
    else:
        want = torch.load(args.ref, weights_only=True)
        err = max(Fast._error(first, want), Fast._error(got, want))
    return {"variant": args.variant, "median_s": r["median_s"], "min_s": r["min_s"],
            "times_s": r["times_s"], "gflops_per_s": work / r["median_s"] / 1e9,
            "gflop": work / 1e9, "error": err, "setup_s": setup,
            "peak_rss_mib": r["peak_rss"] / 2**20,
            "forward_mib": (r["peak_rss"] - rest) / 2**20}


def _child(args, variant, ref, ref_out=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--variant", variant, "--model",
           args.model, "--size", *map(str, args.size), "--runs", str(args.runs), "--warmup",
           str(args.warmup), "--ref", ref] + (["--ref-out", ref_out] if ref_out else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(last[:300])
    return json.loads(p.stdout.strip().splitlines()[-1])


def _undisturbed(args, variant, ref, ref_out, t0, log, probes, spread=1.10, budget_s=240):
    """Run a variant's child between two quick sgemm probes. It counts as disturbed (another
    process took the CPUs) when its timed passes spread over more than ``spread`` (max / min)
    or a probe ran under 85 % of the best probe so far; then it is run again, at most
    ``--retries`` times (2), while the whole run is young. The calmest attempt is kept, with ``disturbed``."""
    best = None
    for attempt in range(1 + args.retries):
        before = B.sgemm_rate(2048, runs=3)
        r = _child(args, variant, ref, ref_out)
        after = B.sgemm_rate(2048, runs=3)
        probes += [before, after]
        r["spread"] = max(r["times_s"]) / min(r["times_s"])
        r["probe_ratio"] = min(before, after) / max(probes)
        r["disturbed"] = r["spread"] > spread or r["probe_ratio"] < 0.85
        if best is None or (best["disturbed"], -best["probe_ratio"]) > \
                (r["disturbed"], -r["probe_ratio"]):
            best = r
        if not r["disturbed"] or time.time() - t0 > budget_s:
            break
        log(f"    {variant}: disturbed (passes spread {r['spread']:.2f}x, sgemm probe at "
            f"{r['probe_ratio']:.0%} of its best), again")
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="voc-fcn8s")
    ap.add_argument("--size", nargs=2, type=int, default=[500, 500])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--retries", type=int, default=2,
                    help="runs again of a disturbed variant (default 2; 0: a quick check)")
    ap.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--ref-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args)))
        return 0
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print
    size, t0, load0 = tuple(args.size), time.time(), os.getloadavg()
    sgemm = B.sgemm_rate(4096, runs=5)
    log(f"(c) sgemm 4096^3: {sgemm:.1f} GFLOP/s  ({torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load {load0[0]:.2f})")
    log(f"{args.model} at {size[0]} x {size[1]}: "
        f"{B.flops(B.meta_model(args.model), size) / 1e9:.1f} GFLOP")
    rows, probes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "eager.pt")
        for variant in VARIANTS:
            if variant == "compile-freezing" and args.no_compile:
                continue
            try:
                r = _undisturbed(args, variant, ref, ref if not rows else None, t0, log,
                                 probes)
            except RuntimeError as e:  # no compiler here, ...: report and go on
                if not rows:
                    raise
                log(f"    {variant}: unavailable ({e})")
                continue
            r["vs_eager"] = rows[0]["median_s"] / r["median_s"] if rows else 1.0
            r["vs_sgemm"] = r["gflops_per_s"] / sgemm
            rows.append(r)
            log(_fmt(r))
    after = B.sgemm_rate(4096, runs=5)
    log(f"(c) sgemm again: {after:.1f} GFLOP/s")
    if after > sgemm:  # ratios against the better (less disturbed) measurement
        for r in rows:
            r["vs_sgemm"] = r["gflops_per_s"] / after
    sgemm_runs, sgemm = [sgemm, after], max(sgemm, after)
    ok = [r for r in rows[1:] if r["error"] <= RTOL]
    best = min(ok, key=lambda r: r["median_s"]) if ok else rows[0]
    out = {"date": datetime.date.today().isoformat(), "model": args.model, "size": list(size),
           "gflop": rows[0]["gflop"], "sgemm_gflops_per_s": sgemm,
           "sgemm_before_after": sgemm_runs, "rows": rows,
           "fast": best["variant"], "fast_vs_eager": best["vs_eager"],
           "fast_vs_sgemm": best["vs_sgemm"], "eager_vs_sgemm": rows[0]["vs_sgemm"],
           "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "load_before": load0[0], "load_after": os.getloadavg()[0],
           "torch": torch.__version__, "python": platform.python_version(),
           "seconds": time.time() - t0}
    log(f"(b) fast = {best['variant']}: {best['gflops_per_s']:.1f} GFLOP/s; "
        f"(b)/(a) = {best['vs_eager']:.2f}x, (b)/sgemm = {best['vs_sgemm']:.2f} "
        f"(target >= 0.95: {'MET' if best['vs_sgemm'] >= 0.95 else 'MISSED'}); "
        f"(a)/sgemm = {rows[0]['vs_sgemm']:.2f}; {out['seconds']:.0f} s in all")
    if args.json:
        print(json.dumps(out))
    return 0


def _fmt(r):
    return (f"    {r['variant']:<18} median {r['median_s']:7.3f} s  min {r['min_s']:7.3f} s  "
            f"{r['gflops_per_s']:6.1f} GFLOP/s  x{r['vs_eager']:.2f} eager  "
            f"{r['vs_sgemm']:.2f} sgemm  err {r['error']:.1e}  peak {r['peak_rss_mib']:.0f} MiB "
            f"(+{r['forward_mib']:.0f} forward)"
            + (f", setup {r['setup_s']:.0f} s" if r["setup_s"] > 2 else "")
            + (" DISTURBED" if r.get("disturbed") else ""))


if __name__ == "__main__":
    sys.exit(main())
