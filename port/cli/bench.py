"""Verb ``bench``: time a forward pass of a converted FCN (FLOPs, GFLOP/s, peak memory)."""
import json
import os

from ..errors import CaffeFormatError, NetError
from .formats import DEFAULT_WEIGHTS


def _model(args):
    from ... import models
    from ...models.bench import random_weights

    if args.model:
        if args.checkpoint:
            raise NetError("give a CKPT or --model NAME, not both")
        if args.model not in models.OFFICIAL:
            raise NetError(f"--model {args.model}: unknown; known: {', '.join(models.OFFICIAL)}")
        return random_weights(models.build(args.model), seed=0), \
            f"{args.model} (random weights)"
    path = args.checkpoint or str(DEFAULT_WEIGHTS)
    if not os.path.isfile(path):
        raise CaffeFormatError(path, "", "does not exist; expected a checkpoint from "
                                         "fcn-port convert or an FCN caffemodel")
    model = models.load(path)
    if not hasattr(model, "cfg"):
        raise NetError(f"{path}: an interpreter checkpoint; bench times the FCN models")
    return model, os.path.basename(path)


def _bench(args):
    import torch

    from ...models.bench import bench, keep_freed_memory

    if min(args.size) < 1 or args.runs < 1 or args.warmup < 0:
        raise NetError("--size must be positive, --runs >= 1, --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, label = _model(args)
    size = tuple(args.size)
    report = {"source": label, "eager": bench(model, size, args.runs, args.warmup)}
    if args.fast:
        from ...models.fast import fast_model
        from ...models.onnx import sample_inputs

        keep_freed_memory()
        fn, how, err = fast_model(model, sample_inputs(model.cfg, size, 1),
                                  compile=not args.no_compile, inplace=True)
        fast = bench(model, size, args.runs, args.warmup, fn=fn)
        report["fast"] = {**fast, "path": how, "error_vs_eager": err,
                          "speedup": report["eager"]["median_s"] / fast["median_s"]}
    if args.json:
        print(json.dumps(report))
        return
    e = report["eager"]
    print(f"{label}: {e['model']} at {e['size'][0]} x {e['size'][1]}, {e['gflop']:.1f} GFLOP "
          f"(conv/deconv, 2 x MACs), {e['threads']} thread(s)")
    rows = [("eager", e)] + ([(f"fast ({report['fast']['path']})", report["fast"])]
                             if args.fast else [])
    for name, r in rows:
        print(f"  {name:<26} median {r['median_s'] * 1e3:9.1f} ms  min {r['min_s'] * 1e3:9.1f} "
              f"ms  {r['gflops_per_s']:7.1f} GFLOP/s  peak RSS {r['peak_rss_mb']:7.0f} MiB")
    if args.fast:
        f = report["fast"]
        print(f"  speedup {f['speedup']:.2f}x, max error vs eager {f['error_vs_eager']:.2g} "
              f"(relative)")


def add_verbs(verbs):
    p = verbs.add_parser("bench", help="time a forward pass", description=(
        "Time model(x) under torch.inference_mode(): warm-up, then the median (and min) of "
        "--runs passes, the GFLOP/s that gives (FLOPs = 2 x MACs of the Convolution and "
        "Deconvolution layers at that size, counted from the layer shapes), and the peak RSS "
        "over the timed passes. With no CKPT, the bundled small voc-fcn8s; --model NAME "
        "builds a full-size official model with random weights. benchmarks/fcn_forward.py "
        "compares with the machine's matrix-multiply rate."))
    p.add_argument("checkpoint", nargs="?", metavar="CKPT",
                   help="checkpoint from fcn-port convert, or an FCN caffemodel")
    p.add_argument("--model", metavar="NAME", help="official model with random weights, "
                   "e.g. voc-fcn8s (362 GFLOP at 500 x 500)")
    p.add_argument("--size", nargs=2, type=int, default=[500, 500], metavar=("H", "W"),
                   help="input height and width (default 500 500)")
    p.add_argument("--runs", type=int, default=5, help="timed passes (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first (default 1)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--fast", action="store_true", help=(
        "also time fcn-port's fast path (plain ops, conv+ReLU fused, channels-last; "
        "torch.compile as a fallback; outputs within 1e-5 of eager) after telling malloc to "
        "keep freed memory"))
    p.add_argument("--no-compile", action="store_true",
                   help="--fast: never fall back to torch.compile")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(run=_bench)
