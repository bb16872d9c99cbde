"""models/' verbs: ``convert``, ``net``, ``models`` (the FCN family), ``infer``, and the
deployment verbs ``export`` and ``bench`` (:mod:`.deploy`).

:func:`add_verbs` adds them to ``fcn-port``'s sub-parsers (:mod:`fcn_port.cli` assembles every
package's verbs); a verb's ``run`` returns the exit status. Every verb that takes a checkpoint
loads it through :func:`load_checkpoint`.
"""
import json
import os
from pathlib import Path

from ..port import DEFAULT_WEIGHTS
from ..port.verbs import check_output_dir, check_output_file
from ..port.errors import CaffeFormatError, FcnPortError, NetError, UnsupportedError, UserInputError
from . import memory
from .infer_verb import add_infer_verb
from .zoo import OFFICIAL

# the bundled demo: a reduced-width voc-fcn8s fcn-port trained on generated data
# (models/data/README.md; the recipe is reproduce/demo/), and a held-out image of that data
DEMO_WEIGHTS = Path(__file__).resolve().parent / "data" / "voc-fcn8s-demo.caffemodel"
DEMO_IMAGE = DEMO_WEIGHTS.with_name("demo.jpg")


def add_verbs(verbs, train_step=None):
    """``train_step(model)``: the update ``bench --train`` times (a callable taking the
    forward-backward function, as ``fcn_port.solvers.Solver.step``); models cannot import
    solvers, so :mod:`fcn_port.cli` passes ``fcn_port.solvers.bench.official_step``. Without
    it ``--train`` is an UnsupportedError."""
    _add_model_verbs(verbs)
    add_infer_verb(verbs, load_checkpoint, DEMO_IMAGE, _keep_freed_memory)
    _add_export_verb(verbs)
    _add_bench_verb(verbs, train_step)


def _keep_freed_memory():
    from .deploy.bench import keep_freed_memory

    keep_freed_memory()


def load_checkpoint(path, device="cpu"):
    """``models.load(path)`` for a verb: a path that is no file, or a file that does not load
    (a broken pickle, a foreign zip, ...), is one :class:`CaffeFormatError` line."""
    from . import load

    if not os.path.isfile(path):
        why = "is a folder" if os.path.isdir(path) else "does not exist"
        raise UserInputError(f"{path}: {why}; expected a checkpoint from fcn-port convert "
                             "(or an FCN caffemodel)")
    try:
        return load(path, map_location=device)
    except FcnPortError as e:
        if "\n" not in str(e).strip():
            raise
        raise NetError(str(e).strip().splitlines()[0]) from None  # the CLI prints one line
    except (OSError, RuntimeError, EOFError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CaffeFormatError(path, "", f"cannot load ({first}); "
                               "expected a checkpoint from fcn-port convert") from None


# convert, net, models

def _convert(args):
    from .checkpoint import convert

    if args.caffemodel is None:  # the bundled demo voc-fcn8s, converted into the current dir
        args.caffemodel = str(DEMO_WEIGHTS)
        args.output = args.output or DEMO_WEIGHTS.with_suffix(".pt").name
    check_output_file(args.output or _default_out(args.caffemodel),
                      "-o" if args.output else "the default output (-o)", "a checkpoint file name")
    if args.output and not args.output.endswith(CHECKPOINT_ENDINGS):
        raise UserInputError(f"-o {args.output}: a checkpoint's name ends in .pt or .pth "
                             "(torch.save) or .safetensors, which says the format written")
    out, meta = convert(args.caffemodel, args.output, model=args.model, prototxt=args.prototxt)
    if args.json:
        print(json.dumps({**meta, "output": out}))
        return
    if meta["kind"] == "caffenet":
        print(f"{out}: interpreter checkpoint of '{meta['model']}' ({args.caffemodel}, "
              f"sha256 {meta['sha256'][:12]}...)")
        return
    heads = ", ".join(f"{'score' + h}: {n}" for h, n in meta["heads"])
    print(f"{out}: {meta['model']} ({heads} classes; widths {meta['widths']}, fc {meta['fc']}; "
          f"inputs {meta['inputs']}, BGR mean {meta['mean']})\n"
          f"  from {args.caffemodel} (sha256 {meta['sha256'][:12]}...), "
          f"fcn-port {meta['fcn_port']}\n"
          f"  load with: fcn_port.models.load({out!r})")


CHECKPOINT_ENDINGS = (".pt", ".pth", ".safetensors")
CAFFEMODEL_ENDINGS = (".caffemodel", ".caffemodel.h5", ".h5")


def _default_out(path):
    """convert's default output: the caffemodel's name with .pt, beside it."""
    return os.path.splitext(path[:-3] if path.endswith(".h5") else path)[0] + ".pt"


def _check_geometry(args):
    """--classes / --widths / --fc that make a net that cannot run, refused in one line."""
    for opt, values in (("--classes", args.classes), ("--widths", args.widths),
                        ("--fc", [args.fc] if args.fc is not None else None)):
        if values and min(values) < 1:
            raise UserInputError(f"{opt} {' '.join(map(str, values))}: every value must be >= 1 "
                                 f"(a layer with no outputs cannot run); got {min(values)}")


def _net(args):
    """The official prototxts. ``-o DIR`` gets every file asked for, and with ``--solver`` also
    the nets the solver names (train and test), so ``train --eval-every`` finds its test net;
    ``-o X.prototxt`` (one file only) or no ``-o`` with one file writes that file / stdout."""
    from ..port.fileio import atomic_output
    from ..port.formats.text import to_text
    from . import config
    from .spec import net_param, solver_param

    _check_geometry(args)
    cfg = config(args.name, classes=args.classes, widths=args.widths, fc=args.fc)
    train, test = cfg.solver["splits"]
    # VOC and Context nets are train/val, SIFT Flow and NYUD trainval/test: either name works
    split = {"train": train, "trainval": train, "val": test, "test": test}.get(args.split,
                                                                              args.split)
    out = args.output
    asked = ([split] if args.split else []) + (["solver"] if args.solver else [])
    if not asked:
        asked = [train, test, "deploy", "solver"]
    to_file = out is not None and out != "-" and out.endswith(".prototxt")
    if args.solver and out not in (None, "-") and not to_file:  # what the solver refers to
        order = [train, test, "deploy", "solver"]
        asked = sorted(set(asked) | {train, test}, key=order.index)
    if len(asked) > 1 and (out == "-" or to_file):
        raise UserInputError(f"-o {out}: {len(asked)} files ({', '.join(asked)}); "
                             f"{'stdout' if out == '-' else 'a .prototxt name'} takes one: give "
                             "--split S or --solver alone, or -o DIR")
    files = {f"{s}.prototxt": to_text(solver_param(cfg) if s == "solver" else net_param(cfg, s))
             for s in asked}
    if to_file:
        check_output_file(out, "-o", "a .prototxt file name")
    elif out != "-" and not (out is None and len(files) == 1):
        check_output_dir(out or args.name, "-o" if out else "the default output folder (-o)")
    if out in (None, "-") and len(files) == 1:
        print(next(iter(files.values())), end="")
        return
    paths = {fname: out if to_file else os.path.join(out or args.name, fname) for fname in files}
    if not to_file:
        os.makedirs(out or args.name, exist_ok=True)
    for fname, text in files.items():
        with atomic_output(paths[fname], "w") as f:
            f.write(text)
        print(paths[fname])


def _list(args):
    rows = [("model", "classes", "inputs", "BGR mean", "base_lr")]
    for name, c in OFFICIAL.items():
        rows.append((name, "/".join(str(n) for _, n in c.heads), ",".join(c.inputs),
                     " ".join(f"{v:g}" for v in c.means[0]), f"{c.solver['base_lr']:g}"))
    if args.json:
        print(json.dumps([{**c.meta(), "solver": {k: v for k, v in c.solver.items()}}
                          for c in OFFICIAL.values()]))
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows))


def _add_model_verbs(verbs):
    p = verbs.add_parser("convert", help="caffemodel -> PyTorch checkpoint", description=(
        "Convert a caffemodel (binary or HDF5) into a checkpoint fcn_port.models.load() reads: "
        "the state dict (keys '<caffe layer>.<blob>') and metadata (model, classes, mean, "
        "source sha256, fcn-port version). The FCN family, class count and widths are "
        "detected from the layer names and shapes. Nothing is written if they do not fit."))
    p.add_argument("caffemodel", nargs="?", help=(
        "default: the bundled demo voc-fcn8s (reduced width, trained by fcn-port on generated "
        "shapes; not the official weights: fcn-port download voc-fcn8s), written to "
        "voc-fcn8s-demo.pt"))
    p.add_argument("-o", "--output", help="output file (default: the input with .pt); a name "
                   "ending in .safetensors writes a safetensors checkpoint (no pickle; no torch "
                   "import for an FCN; safetensors.torch.load_file reads it)")
    p.add_argument("--model", choices=list(OFFICIAL), metavar="NAME",
                   help="force the family (e.g. nyud-fcn32s-hha, which has the same layers "
                        "as nyud-fcn32s-color); see `fcn-port models`")
    p.add_argument("--prototxt", help="for a net that is no FCN: its prototxt; writes an "
                                      "interpreter checkpoint")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    p.set_defaults(run=_convert)

    p = verbs.add_parser("net", help="write the official prototxts of a model", description=(
        "Write an official model's net as the official net.py makes it: train/val (or "
        "trainval/test) with the Python data layers, deploy with an Input layer, and the "
        "official solver.prototxt. Crop offsets are derived with coord_map. With no --split "
        "and no --solver, writes all of them into -o DIR (default: the model's name)."))
    p.add_argument("name", choices=list(OFFICIAL), metavar="NAME")
    p.add_argument("--split", choices=["train", "val", "trainval", "test", "deploy"])
    p.add_argument("--solver", action="store_true", help="write solver.prototxt")
    p.add_argument("-o", "--output", help=(
        "directory (with --solver: also the train and test nets it names), X.prototxt for one "
        "file, or '-' for stdout with one file (the default for one file)"))
    p.add_argument("--classes", type=int, nargs="+", help="another class count (per head)")
    p.add_argument("--widths", type=int, nargs=5, help="the five conv widths")
    p.add_argument("--fc", type=int, help="fc6/fc7 width")
    p.set_defaults(run=_net)

    p = verbs.add_parser("models", help="list the official FCN models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_list)


# export

def _stem(path):
    base = os.path.basename(path)
    for ext in (".caffemodel.h5", ".caffemodel", ".pt", ".pth", ".safetensors", ".h5"):
        if base.endswith(ext):
            return base[:-len(ext)]
    return os.path.splitext(base)[0]


def _export(args):
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
                      "a caffemodel file name")
    check_output_file(args.prototxt, "--prototxt", "a prototxt file name")
    check_output_file(args.onnx, "--onnx", "an .onnx file name")
    if args.onnx is not None and min(args.size) < 1:
        raise UserInputError(f"--size {' '.join(map(str, args.size))}: the ONNX trace's input "
                             "size must be positive")
    model = load_checkpoint(args.checkpoint)
    if args.onnx is not None and hasattr(model, "cfg"):
        memory.check_size(model.cfg.meta(), *args.size, what="the ONNX trace (and its checks)",
                          factor=2)
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


def _add_export_verb(verbs):
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
    p.set_defaults(run=_export)


# bench

def _model(args):
    from . import build
    from .deploy.bench import random_weights

    if args.model:
        if args.checkpoint:
            raise UserInputError("give a CKPT or --model NAME, not both")
        return random_weights(build(args.model), seed=0), f"{args.model} (random weights)"
    path = args.checkpoint or str(DEFAULT_WEIGHTS)
    model = load_checkpoint(path)
    if not hasattr(model, "cfg"):
        raise UserInputError(f"{path}: an interpreter checkpoint; bench times the FCN models")
    return model, os.path.basename(path)


def _bench(args):
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
    model, label = _model(args)
    size = tuple(args.size)
    memory.check_size(model.cfg.meta(), *size, factor=memory.TRAIN_FACTOR if args.train else 1,
                      what="a training step" if args.train else "a forward pass")
    report = {"source": label, "eager": bench(model, size, args.runs, args.warmup)}
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
    if args.train:
        t = report["train"]
        print(f"  train step ({t['path']}, {t['solver']}) median {t['median_s'] * 1e3:9.1f} ms  "
              f"min {t['min_s'] * 1e3:9.1f} ms  {t['gflops_per_s']:7.1f} GFLOP/s "
              f"({t['gflop']:.1f} GFLOP a step)  peak RSS {t['peak_rss_mb']:7.0f} MiB")


def _bench_train(args, model, size):
    from .deploy.bench import train_report

    if args.train_step is None:
        raise UnsupportedError("bench --train needs the solvers package's update; run it "
                               "through fcn-port (fcn_port.cli passes it in)")
    return train_report(model, args.train_step, size, args.runs, args.warmup, fast=args.fast)


def _add_bench_verb(verbs, train_step):
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
        "also time fcn-port's fast path (plain ops, conv+ReLU fused, channels-last; "
        "torch.compile as a fallback; outputs within 1e-5 of eager) after telling malloc to "
        "keep freed memory"))
    p.add_argument("--no-compile", action="store_true",
                   help="--fast: never fall back to torch.compile")
    p.add_argument("--train", action="store_true", help=(
        "also time one training step, batch 1: forward, the official loss (SoftmaxWithLoss, "
        "summed over pixels), backward, Caffe's SGD update with the official solver values "
        "(iter_size 1); with --fast, malloc keeps freed memory (2x here). --json adds "
        "a 'train' object"))
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(run=_bench, train_step=train_step)
