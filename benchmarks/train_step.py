#!/usr/bin/env python
"""One FCN training step on CPU: eager PyTorch with ``torch.optim.SGD`` against fcn-port's
Caffe-exact solver on the eager model and on the fused channels-last training path, and the
machine's float32 matrix-multiply rate.

    python benchmarks/train_step.py [--size 500 500] [--runs 3] [--model voc-fcn8s] [--json]

A step is what Caffe's ``Solver::Step`` does for batch 1: clear the diffs, forward, the official
loss (SoftmaxWithLoss, ``normalize: false``: a sum over the pixels), backward, update. Each
variant runs in a fresh Python process (its own peak memory), one untimed step, then the median
of ``--runs``:

  (c) sgemm          ``torch.mm`` 4096^3 float32, median of 5, before and after; the higher
  (a) eager+optim    the hand-written FCN, NCHW, ``torch.optim.SGD`` as pytorch-fcn sets it up
                     (lr 1e-14, momentum 0.99, weight decay 5e-4; biases 2x lr, no decay; the
                     bilinear Deconvolutions frozen): the "plain eager PyTorch" baseline
  eager+solver       the same model, ``fcn_port.solvers.Solver`` with the official solver values
                     (Caffe's update arithmetic, lr_mult/decay_mult from ``param_specs``)
  eager+solver+malloc  and glibc keeping freed memory (``keep_freed_memory``)
  (b) fast           ``models.deploy.train_fast`` (fused conv+ReLU with oneDNN's backward,
                     channels-last params re-laid in place) + the Solver + malloc

Work = 3 x the forward's FLOPs (2 x MACs of Convolution/Deconvolution; the data and weight
gradients each cost one forward): 1089 GFLOP for voc-fcn8s at 500 x 500. Every variant starts
from the same seeded weights and input, so its first loss must equal (a)'s within 1e-5
(relative); the fast path's parameter updates are checked against the eager ones in
tests/models/test_train_fast.py. Caffe's step on this machine (CPU, OpenBLAS) was measured at
7.6-7.8 s (the anchor); ``--caffe-s`` takes a same-day figure from ``caffe_step.py`` instead.
The target is (b) <= 0.45 x Caffe (3.4 s against the anchor).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import torch

from fcn_port import models
from fcn_port.models.deploy import bench as B
from fcn_port.models.deploy import train_fast as TF
from fcn_port.solvers.bench import official_step

CAFFE_S = (7.6, 7.8)
TARGET = 0.45


def optim_step(model):
    """pytorch-fcn's optimizer: torch.optim.SGD, biases at 2x lr without decay, frozen
    upsampling; lr/momentum/decay from the official solver values."""
    s, groups = model.cfg.solver, {"w": [], "b": []}
    for _, i, p, spec in model.param_specs:
        if spec.lr_mult == 0:
            p.requires_grad_(False)
        else:
            groups["w" if i == 0 else "b"].append(p)
    opt = torch.optim.SGD([{"params": groups["w"]},
                           {"params": groups["b"], "lr": 2 * s["base_lr"], "weight_decay": 0}],
                          lr=s["base_lr"], momentum=s["momentum"], weight_decay=5e-4)

    def step(forward_backward):
        opt.zero_grad(set_to_none=True)
        loss = forward_backward()
        opt.step()
        return [loss]
    return step


VARIANTS = {  # name: (malloc, make_step, forward path)
    "(a) eager+optim": (False, optim_step, None),
    "eager+solver": (False, official_step, None),
    "eager+solver+malloc": (True, official_step, None),
    "(b) fast": (True, official_step, TF.train_fast),
}


def measure(args):
    malloc, make_step, path = VARIANTS[args.variant]
    model = B.random_weights(models.build(args.model), seed=0).eval()
    if malloc:
        B.keep_freed_memory()
    fn = path(model) if path else None
    r = B.bench_train(model, make_step, tuple(args.size), args.runs, args.warmup, fn=fn)
    return {"variant": args.variant, **r}


def _child(args, variant):
    cmd = [sys.executable, os.path.abspath(__file__), "--variant", variant, "--model",
           args.model, "--size", *map(str, args.size), "--runs", str(args.runs), "--warmup",
           str(args.warmup)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError((p.stderr.strip().splitlines() or ["?"])[-1][:300])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="voc-fcn8s")
    ap.add_argument("--size", nargs=2, type=int, default=[500, 500])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--caffe-s", type=float, metavar="S", help=(
        "real Caffe's step in seconds, measured the same day (benchmarks/caffe_step.py); "
        f"default: the anchor {CAFFE_S[0]}-{CAFFE_S[1]} s"))
    ap.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args)))
        return 0
    caffe = args.caffe_s or sum(CAFFE_S) / 2
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print
    t0, load0 = time.time(), os.getloadavg()
    sgemm = B.sgemm_rate(4096, runs=5)
    gflop = 3 * B.flops(B.meta_model(args.model), tuple(args.size)) / 1e9
    log(f"(c) sgemm 4096^3: {sgemm:.1f} GFLOP/s ({torch.get_num_threads()} threads, load "
        f"{load0[0]:.2f}); {args.model} at {args.size[0]} x {args.size[1]}: forward + "
        f"backward {gflop:.1f} GFLOP, {gflop / sgemm:.2f} s at the sgemm rate")
    rows = []
    for variant in VARIANTS:
        probe = B.sgemm_rate(2048, runs=3)
        r = _child(args, variant)
        r["probe_before"], r["probe_after"] = probe, B.sgemm_rate(2048, runs=3)
        r["vs_eager"] = rows[0]["median_s"] / r["median_s"] if rows else 1.0
        r["loss_error"] = abs(r["losses"][0] - rows[0]["losses"][0]) / abs(rows[0]["losses"][0]) \
            if rows else 0.0
        rows.append(r)
        log(f"    {variant:<20} median {r['median_s']:7.3f} s  min {r['min_s']:7.3f} s  "
            f"{r['gflops_per_s']:6.1f} GFLOP/s  x{r['vs_eager']:.2f} (a)  "
            f"{r['median_s'] / caffe:.2f} x Caffe  loss err {r['loss_error']:.1e}  "
            f"peak {r['peak_rss_mb']:.0f} MiB  (sgemm probes {probe:.0f}/{r['probe_after']:.0f})")
    after = B.sgemm_rate(4096, runs=5)
    best_sgemm = max(sgemm, after)
    for r in rows:
        r["vs_sgemm"] = r["gflops_per_s"] / best_sgemm
        r["vs_caffe"] = r["median_s"] / caffe
    fast = min((r for r in rows[1:] if r["loss_error"] <= 1e-5), key=lambda r: r["median_s"],
               default=rows[0])  # (b): the quickest Caffe-exact variant
    out = {"date": datetime.date.today().isoformat(), "model": args.model, "size": args.size,
           "gflop": gflop, "sgemm_gflops_per_s": best_sgemm, "sgemm_before_after": [sgemm, after],
           "rows": rows, "fastest": fast["variant"], "caffe_s": args.caffe_s or CAFFE_S, "target_vs_caffe": TARGET,
           "fast_vs_caffe": fast["vs_caffe"], "fast_vs_eager": fast["vs_eager"],
           "fast_vs_sgemm": fast["vs_sgemm"], "roofline_s": gflop / best_sgemm,
           "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "load_before": load0[0], "load_after": os.getloadavg()[0],
           "torch": torch.__version__, "python": platform.python_version(),
           "seconds": time.time() - t0}
    ok = all(r["loss_error"] <= 1e-5 for r in rows)
    log(f"(c) sgemm again: {after:.1f} GFLOP/s. Quickest: {fast['variant']} {fast['median_s']:.2f} s = "
        f"{fast['vs_caffe']:.2f} x Caffe (target <= {TARGET}: "
        f"{'MET' if fast['vs_caffe'] <= TARGET else 'MISSED'}), {fast['vs_eager']:.2f}x (a), "
        f"{fast['vs_sgemm']:.2f} x sgemm; at the sgemm rate the step's FLOPs alone take "
        f"{out['roofline_s']:.2f} s; losses {'agree' if ok else 'DIFFER'}; "
        f"{out['seconds']:.0f} s in all")
    if args.json:
        print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
