"""models/' deployment verbs: ``export`` (a checkpoint back to a caffemodel, or to ONNX) and
``bench`` (a forward pass or a training step, timed); :mod:`.deploy` does the work.

:func:`add_deploy_verbs` adds them (``models/verbs.py`` calls it with its ``load_checkpoint``,
through which every verb loads a checkpoint, and the ``train_step`` cli hands down).
"""
import json
import os
import sys

from ..port import DEFAULT_WEIGHTS
from ..port.errors import UnsupportedError, UserInputError
from ..port.verbs import check_output_file, examples
from . import memory

CAFFEMODEL_ENDINGS = (".caffemodel", ".caffemodel.h5", ".h5")


def add_deploy_verbs(verbs, load_checkpoint, train_step=None):
    _add_export_verb(verbs, load_checkpoint)
    _add_bench_verb(verbs, load_checkpoint, train_step)


def _stem(path):
    base = os.path.basename(path)
    for ext in (".caffemodel.h5", ".caffemodel", ".pt", ".pth", ".safetensors", ".h5"):
        if base.endswith(ext):
            return base[:-len(ext)]
    return os.path.splitext(base)[0]


def _export(args, load_checkpoint):
    out = args.output
    if out is not None and not out.endswith(CAFFEMODEL_ENDINGS):
        raise UserInputError(f"-o {out}: a caffemodel's name ends in .caffemodel (binary) or "
                             ".caffemodel.h5 / .h5 (HDF5, as --h5)")
    if out is not None and out.endswith(".h5"):
        args.h5 = True   # the name says HDF5; the report line says which format was written
    if args.h5 and out is None and args.onnx is not None:
        raise UserInputError("--h5 is the caffemodel's format (-o X.caffemodel.h5); with "
                             "--onnx alone no caffemodel is written")
    if args.onnx is not None and not args.onnx.endswith(".onnx"):
        raise UserInputError(f"--onnx {args.onnx}: an ONNX file's name ends in .onnx")
    if out is None and args.onnx is None:
        out = _stem(args.checkpoint) + (".caffemodel.h5" if args.h5 else ".caffemodel")
    check_output_file(out, "-o" if args.output else "the default output (-o)",
                      "a caffemodel file name", inputs=(args.checkpoint,))
    check_output_file(args.prototxt, "--prototxt", "a prototxt file name",
                      inputs=(args.checkpoint,))
    check_output_file(args.onnx, "--onnx", "an .onnx file name", inputs=(args.checkpoint,))
    if args.onnx is not None and min(args.size) < 1:
        raise UserInputError(f"--size {' '.join(map(str, args.size))}: the ONNX trace's input "
                             "size must be positive")
    model = load_checkpoint(args.checkpoint)
    if args.onnx is not None:  # everything the ONNX file needs, before a caffemodel is written
        from .deploy.onnx import check_packages, traceable

        traceable(model)
        memory.check_size(model.cfg.meta(), *args.size, what="the ONNX trace (and its checks)",
                          factor=2)
        check_packages(args.dynamo)
    reports = []
    if out is not None:
        from .deploy.export import export

        r = export(model, out, h5=args.h5, prototxt=args.prototxt)
        reports.append(r)
        if not args.json:
            print(f"{r['caffemodel']}: {r['format']} caffemodel, {r['layers']} layers "
                  f"({r['param_layers']} with params, {r['values']:,} values)"
                  + (f", sha256 {r['sha256'][:12]}..." if r["sha256"] else ""))
            if r["prototxt"]:
                print(f"{r['prototxt']}: deploy net")
    if args.onnx is not None:
        from .deploy.onnx import export_onnx

        r = export_onnx(model, args.onnx, size=tuple(args.size), dynamic=not args.static,
                        dynamo=args.dynamo)
        reports.append(r)
        if not args.json:
            axes = "height/width dynamic" if r["dynamic"] else \
                f"fixed {r['size'][0]} x {r['size'][1]}"
            print(f"{r['onnx']}: ONNX opset {r['opset']} ({r['exporter']} exporter), "
                  f"{', '.join(r['inputs'])} -> {', '.join(r['outputs'])}, {axes}")
            for why in r.get("static_because", ()):
                print(f"  static because {why}")
            if r["checks"] is None:
                print("  not checked: onnxruntime is not installed")
            for c in r["checks"] or ():
                print(f"  onnxruntime vs PyTorch at {c['size'][0]} x {c['size'][1]}: "
                      f"max error {c['error']:.2g} (relative)")
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports))


def _add_export_verb(verbs, load_checkpoint):
    p = verbs.add_parser("export", help="checkpoint -> caffemodel for Caffe, or ONNX",
                         description=(
        "Write a checkpoint's weights as a caffemodel real Caffe loads: a V2 NetParameter "
        "with every layer of the TEST-phase deploy net in order (as Net::ToProto writes it), "
        "params as blobs. --prototxt also writes the deploy net (FCN checkpoints: the official "
        "deploy.prototxt of the model; interpreter checkpoints: their own net). --onnx writes "
        "ONNX instead (or as well, with -o), checked against PyTorch where onnxruntime is "
        "installed. With neither -o nor --onnx: CKPT's name with .caffemodel."))
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint (or caffemodel) to export")
    p.add_argument("-o", "--output", metavar="X.caffemodel", help="caffemodel to write")
    p.add_argument("--h5", action="store_true", help=(
        "write Caffe's HDF5 weights (Net::ToHDF5) instead of binary protobuf; Caffe tells "
        "them apart by content, snapshots name them .caffemodel.h5"))
    p.add_argument("--prototxt", metavar="deploy.prototxt", help="also write the deploy net")
    p.add_argument("--onnx", metavar="OUT.onnx", help="write ONNX")
    p.add_argument("--size", nargs=2, type=int, default=[500, 500], metavar=("H", "W"),
                   help="ONNX: input size to trace and check at (default 500 500)")
    p.add_argument("--static", action="store_true",
                   help="ONNX: fixed height/width instead of dynamic axes")
    p.add_argument("--dynamo", action="store_true", help=(
        "ONNX: use the torch.export-based exporter (needs onnxscript; slower) instead of "
        "the TorchScript one"))
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.epilog = examples(
        "fcn-port export voc-fcn8s.pt -o voc-fcn8s.caffemodel --prototxt deploy.prototxt")
    p.set_defaults(run=lambda args: _export(args, load_checkpoint))


# bench

def _model(args, load_checkpoint):
    from . import build
    from .deploy.bench import random_weights

    if args.model:
        if args.checkpoint:
            raise UserInputError("give a CKPT or --model NAME, not both")
        return random_weights(build(args.model), seed=0), f"{args.model} (random weights)"
    path = args.checkpoint or str(DEFAULT_WEIGHTS)
    return load_checkpoint(path, fcn_for="bench"), os.path.basename(path)


def _bench(args, load_checkpoint):
    import torch

    from .deploy.bench import bench, keep_freed_memory

    if min(args.size) < 1 or args.runs < 1 or args.warmup < 0:
        raise UserInputError(f"--size must be positive, --runs >= 1, --warmup >= 0; got --size "
                             f"{' '.join(map(str, args.size))}, --runs {args.runs}, --warmup "
                             f"{args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise UserInputError(f"--threads must be >= 1; got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, label = _model(args, load_checkpoint)
    size = tuple(args.size)
    memory.check_size(model.cfg.meta(), *size, factor=memory.TRAIN_FACTOR if args.train else 1,
                      what="a training step" if args.train else "a forward pass")
    report = {"source": label, "eager": bench(model, size, args.runs, args.warmup)}
    if args.peers:
        from .deploy.peers import compare

        keep_freed_memory()
        report["peers"] = compare(model, size, args.runs, args.warmup,
                                  compile=not args.no_compile, log=_stderr)
    if args.fast:
        from .deploy.fast import fast_model
        from .deploy.onnx import sample_inputs

        keep_freed_memory()
        fn, how, err = fast_model(model, sample_inputs(model.cfg, size, 1),
                                  compile=not args.no_compile, inplace=True)
        fast = bench(model, size, args.runs, args.warmup, fn=fn)
        report["fast"] = {**fast, "path": how, "error_vs_eager": err,
                          "speedup": report["eager"]["median_s"] / fast["median_s"]}
    if args.train:
        report["train"] = _bench_train(args, model, size)
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
    if args.peers:
        _print_peers(report["peers"])
    if args.train:
        t = report["train"]
        print(f"  train step ({t['path']}, {t['solver']}) median {t['median_s'] * 1e3:9.1f} ms  "
              f"min {t['min_s'] * 1e3:9.1f} ms  {t['gflops_per_s']:7.1f} GFLOP/s "
              f"({t['gflop']:.1f} GFLOP a step)  peak RSS {t['peak_rss_mb']:7.0f} MiB")


def _stderr(line):
    print(line, file=sys.stderr, flush=True)


def _print_peers(r):
    from .deploy.peers import table

    print(f"  side by side, interleaved ({r['threads']} thread(s) each):")
    print("\n".join("  " + line for line in table(r)))
    if r.get("best_peer"):
        print(f"  fast path vs the best peer ({r['best_peer']}): "
              f"{r['fast_vs_best_peer']:.2f}x")


def _bench_train(args, model, size):
    if args.train_step is None:
        raise UnsupportedError("bench --train needs the solvers package's update; run it "
                               "through fcn-port (fcn_port.cli passes it in)")
    return args.train_step(model, size, args.runs, args.warmup)


def _add_bench_verb(verbs, load_checkpoint, train_step):
    p = verbs.add_parser("bench", help="time a forward pass (--train: a training step)",
                         description=(
        "Time model(x) under torch.inference_mode(): warm-up, then the median (and min) of "
        "--runs passes, the GFLOP/s that gives (FLOPs = 2 x MACs of the Convolution and "
        "Deconvolution layers at that size, counted from the layer shapes), and the peak RSS "
        "over the timed passes. With no CKPT, the bundled small voc-fcn8s; --model NAME "
        "builds a full-size official model with random weights. benchmarks/fcn_forward.py "
        "compares with the machine's matrix-multiply rate."))
    p.add_argument("checkpoint", nargs="?", metavar="CKPT",
                   help="checkpoint from fcn-port convert, or an FCN caffemodel")
    p.add_argument("--model", metavar="NAME", help="official model with random weights, "
                   "e.g. voc-fcn8s (363.1 GFLOP at 500 x 500)")
    p.add_argument("--size", nargs=2, type=int, default=[500, 500], metavar=("H", "W"),
                   help="input height and width (default 500 500)")
    p.add_argument("--runs", type=int, default=5, help="timed passes (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first (default 1)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--fast", action="store_true", help=(
        "also time fcn-port's fast path, what infer --backend fast runs (the blank margins "
        "once per size, conv+ReLU fused with packed weights, channels-last; torch.compile as "
        "a fallback; outputs within 1e-5 of eager) after telling malloc to keep freed "
        "memory"))
    p.add_argument("--no-compile", action="store_true",
                   help="--fast, --peers: never fall back to torch.compile")
    p.add_argument("--peers", action="store_true", help=(
        "also time the runtimes a user would pick instead, side by side in one process, "
        "interleaved: fcn-port eager and fast, ONNX Runtime and OpenVINO (float32) on "
        "fcn-port's ONNX export, each with its error against eager (pip install "
        "'fcn-port[bench]' installs the peers)"))
    p.add_argument("--train", action="store_true", help=(
        "also time one training iteration, batch 1, exactly as fcn-port train runs it: the "
        "model's official solver and train net (SGD, SoftmaxWithLoss summed over pixels, "
        "iter_size 1), forward, backward, the finite checks and Caffe's update. --json adds "
        "a 'train' object"))
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.epilog = examples(
        "fcn-port bench --model voc-fcn8s --fast")
    p.set_defaults(run=lambda args: _bench(args, load_checkpoint), train_step=train_step)
