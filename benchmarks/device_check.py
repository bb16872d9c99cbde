#!/usr/bin/env python
"""What a session lent a GPU should measure, in one run: ``benchmarks/device_check.sh``.

    python benchmarks/device_check.py [--out device_check.json] [--dry-run]

Sections, each recorded in one JSON (``--out``), each with its own seconds and error if it
failed (a failed section does not stop the others):

* ``cuda_tests``: the tests that need a device (``tests/solvers/test_kernels.py``: the adaptive
  solvers in the order of Caffe's ``.cu`` kernels), through pytest; their pass/skip counts;
* ``update_cases_cuda``: the update oracle cases (Caffe's gradients fed to the solver) with
  params and history on the device, TF32 off, compared with Caffe's params in ulps;
* ``forward``: voc-fcn8s at 500 x 500 (random weights), eager and ``fast_model``'s path,
  median of 5 after a warm-up, synchronized;
* ``train_step``: ``fcn-port train``'s own iteration (``solvers.bench.train_bench``) at
  500 x 500 on the device;
* ``reader``: the official SBD layer (``reproduce.voc.SBDSeg``) on a generated dataset of
  500 x 375 JPEGs, images per second in one process; then steps per second of the training
  feeder over it when a step waits 20 ms (a GPU's step), reading inline and prefetching;
* ``voc2011_hours``: each voc2011.sh stage's ``max_iter`` times the measured step.

``--dry-run`` runs every section on the CPU at a small size (64 x 64, 2 timed runs, a few
reader images): the tests run it so that the script cannot rot. On a device the whole run
takes about 3-5 minutes.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn, ctx):
    """median/min/times of ``fn()`` (one warm-up), synchronized on the device."""
    from fcn_port.models.deploy.bench import time_forward

    r = time_forward(fn, (), ctx.runs, 1, sync=ctx.sync)
    return {k: r[k] for k in ("median_s", "min_s", "times_s")}


def cuda_tests(ctx):
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs",
                        str(ROOT / "tests" / "solvers" / "test_kernels.py")],
                       capture_output=True, text=True, cwd=ROOT)
    lines = r.stdout.strip().splitlines()
    return {"rc": r.returncode, "summary": next((x for x in reversed(lines) if " in " in x and
                                                 ("passed" in x or "failed" in x)), ""),
            "skipped": [line for line in r.stdout.splitlines() if "SKIPPED" in line]}


def update_cases_cuda(ctx):
    from fcn_port.solvers.update_parity import run_update_case

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    rows = []
    for case in sorted((ROOT / "tests" / "data" / "oracle" / "update").iterdir()):
        if (case / "case.json").exists():
            r = run_update_case(case, device=ctx.device)
            rows.append({k: r.get(k) for k in ("case", "max_ulp", "differ", "pass", "error")})
    return {"cases": rows, "all_pass": all(r["pass"] for r in rows)}


def _model(ctx):
    from fcn_port import models
    from fcn_port.models.deploy.bench import random_weights

    return random_weights(models.build("voc-fcn8s"), seed=0)


def forward(ctx):
    from fcn_port.models.deploy.fast import fast_model
    from fcn_port.models.deploy.onnx import sample_inputs

    model = _model(ctx).to(ctx.device).eval()
    x = tuple(t.to(ctx.device) for t in sample_inputs(model.cfg, ctx.size))
    out = {}
    with torch.inference_mode():
        out["eager"] = _timed(lambda: model(*x), ctx)
        fn, how, err = fast_model(model, x, compile=not ctx.dry_run)
        out["fast"] = {**_timed(lambda: fn(*x), ctx), "path": how, "error": err}
    return out


def train_step(ctx):
    from fcn_port.solvers.bench import train_bench

    r = train_bench(_model(ctx), ctx.size, ctx.runs, 1, device=ctx.device)
    ctx.step_s = r["median_s"]
    return {k: r[k] for k in ("median_s", "min_s", "times_s", "gflops_per_s", "losses",
                              "device")}


def reader(ctx):
    from fcn_port.reproduce.synthetic import make_dataset
    from fcn_port.reproduce.voc import SBDSeg

    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(tmp, n_train=ctx.images, n_val=1, size=(375, 500))
        r = SBDSeg(Path(tmp) / "sbdd" / "dataset", "train", seed=1337)
        r[0]
        t = time.perf_counter()
        for d in range(1, ctx.images + 1):
            r[d]
        dt = time.perf_counter() - t
        fed = {f"fed_{'prefetch' if ahead else 'inline'}_steps_per_s": _fed(r, ctx.images, ahead)
               for ahead in (False, True)}
    return {"images": ctx.images, "seconds": dt, "images_per_s": ctx.images / dt,
            "simulated_step_s": SIMULATED_STEP_S, **fed}


SIMULATED_STEP_S = 0.02  # a GPU's FCN-8s step, which waits on the device and leaves the CPU


def _fed(reader, n, ahead):
    """Steps per second of ``fcn-port train``'s feeder over ``reader`` when each step takes
    :data:`SIMULATED_STEP_S` of waiting: reading inline adds each read to the step; the
    prefetching feeder (``solvers.data``) reads the next draw meanwhile."""
    from fcn_port.port.formats.proto import caffe_pb2
    from fcn_port.port.formats.text import parse_text
    from fcn_port.port.net import filter_layers
    from fcn_port.solvers.data import Feeder, source_layers

    net, _ = parse_text('layer { name: "data" type: "Python" top: "data" top: "label" '
                        'python_param { module: "voc_layers" layer: "SBDDSegDataLayer" } }',
                        caffe_pb2.NetParameter)
    feeder = Feeder(source_layers(filter_layers(net, "TRAIN")), {"data": reader},
                    prefetch=ahead)
    feeder(0)
    t = time.perf_counter()
    for it in range(1, n + 1):
        feeder(it)
        time.sleep(SIMULATED_STEP_S)
    return n / (time.perf_counter() - t)


def voc2011_hours(ctx):
    from fcn_port.models import OFFICIAL

    if ctx.step_s is None:
        raise RuntimeError("no train_step measured")
    return {m: OFFICIAL[m].solver["max_iter"] * ctx.step_s / 3600
            for m in ("voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce")}


SECTIONS = [cuda_tests, update_cases_cuda, forward, train_step, reader, voc2011_hours]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="device_check.json")
    ap.add_argument("--dry-run", action="store_true", help="CPU, small sizes: checks the script")
    ctx = ap.parse_args(argv)
    if not ctx.dry_run and not torch.cuda.is_available():
        print("device_check: no CUDA device here (use --dry-run to check the script on CPU)",
              file=sys.stderr)
        return 2
    ctx.device = "cpu" if ctx.dry_run else "cuda"
    ctx.size = (64, 64) if ctx.dry_run else (500, 500)
    ctx.runs, ctx.images, ctx.step_s = (2, 4, None) if ctx.dry_run else (5, 200, None)
    ctx.sync = torch.cuda.synchronize if ctx.device == "cuda" else (lambda: None)
    report = {"dry_run": ctx.dry_run, "device": torch.cuda.get_device_name(0)
              if ctx.device == "cuda" else "cpu", "torch": torch.__version__,
              "cpus": os.cpu_count(), "size": list(ctx.size)}
    for section in SECTIONS:
        t = time.perf_counter()
        print(f"device_check: {section.__name__}", file=sys.stderr, flush=True)
        try:
            report[section.__name__] = section(ctx)
        except Exception as e:  # noqa: BLE001  (recorded; the other sections still run)
            report[section.__name__] = {"error": f"{type(e).__name__}: {e}",
                                        "trace": traceback.format_exc()[-2000:]}
        report[section.__name__]["section_s"] = round(time.perf_counter() - t, 2)
    Path(ctx.out).write_text(json.dumps(report, indent=1))
    print(ctx.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
