"""port/'s verbs: ``inspect``, ``parity``, ``layers`` (Caffe files and the interpreter),
``offsets`` (Crop offsets by coord_map) and ``surgery`` (the official FCN weight surgery).

:func:`add_verbs` adds them to ``fcn-port``'s sub-parsers (:mod:`fcn_port.cli` assembles every
package's verbs). port/ knows no FCN model names: the top module passes ``net_by_name`` (an
official name -> its NetParameter, for ``surgery --net voc-fcn16s``) and ``model_runner`` (for
``parity --model``), both from :mod:`fcn_port.models`. A verb's ``run`` returns the exit status.

Surgery sub-verbs print what they did per layer and blob (copied / coerced / expanded / dropped
/ not initialised / interpolated) and write the result all or nothing: a binary caffemodel, or
HDF5 when the output ends in .h5.
"""
import argparse
import json
import re

from . import DEFAULT_WEIGHTS
from .errors import UnsupportedError, UserInputError
from .outputs import check_output_dir, check_output_file


def add_verbs(verbs, *, net_by_name=None, model_runner=None, model_check=None,
              solver_runner=None, loss_plotter=None):
    _add_file_verbs(verbs, model_runner, solver_runner, loss_plotter, model_check)
    verbs.choices["inspect"].set_defaults(net_by_name=net_by_name)
    _add_offsets_verb(verbs)
    _add_surgery_verbs(verbs, net_by_name)


# help: examples keep their lines


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that an ``examples:`` epilog (:func:`examples`) keeps its
    lines: each is a command as a user types it."""

    def _fill_text(self, text, width, indent):
        if text.startswith("examples:"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


class Parser(argparse.ArgumentParser):
    """fcn-port's parsers (the top one, each verb's, surgery's): :class:`HelpFormatter`."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kw):
        super().__init__(*args, formatter_class=formatter_class, **kw)


def examples(*lines):
    """A verb's ``epilog``: the commands of the README that use it, as typed (the docs test,
    tests/test_docs.py, runs each)."""
    return "examples:\n" + "\n".join("  " + line for line in lines)


# --device, for every verb that takes one

def device_arg(text):
    """argparse type of ``--device``: auto, cpu, cuda or cuda:N."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N; got {text!r}")
    return text


def check_device(device):
    """The device a ``--device`` names, checked: ``auto`` is ``cuda`` where CUDA is available,
    else ``cpu``, and says so on stderr (a long run on the wrong device should not go
    unnoticed); a CUDA device on a machine without CUDA is one UserInputError line."""
    import sys

    if device == "auto" or device.startswith("cuda"):
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
            name = torch.cuda.get_device_name(0) if device == "cuda" else "no CUDA device found"
            print(f"fcn-port: device: {device} ({name}; --device auto)", file=sys.stderr)
        elif not torch.cuda.is_available():
            raise UserInputError(f"--device {device}: CUDA is not available on this machine")
    return device


# output paths: every verb that writes checks them first (port/outputs.py)

__all__ = ["HelpFormatter", "Parser", "add_verbs", "check_device", "check_output_dir",
           "check_output_file", "device_arg", "examples", "layer_table", "offsets_table"]


# inspect, parity, layers



def _inspect(args):
    """Print each file's report; its warnings (a net's unknown types, bottoms no earlier layer
    makes, duplicate tops; NaN/Inf weights) go to stderr as ``fcn-port: warning:`` lines."""
    import sys

    from .formats.report import format_report, inspect_file
    from .layers import types

    files = args.files or [str(DEFAULT_WEIGHTS)]
    known = set(types())
    for i, path in enumerate(files):
        report = inspect_file(path, stats=not args.no_stats, known_types=known,
                              net_by_name=args.net_by_name)
        if args.json:
            print(json.dumps(report))
        else:
            print(("\n" if i else "") + format_report(report))
        for line in report.get("warnings", ()):
            print(f"fcn-port: warning: {path}: {line}", file=sys.stderr)


def _parity(args, model_runner, solver_runner=None, loss_plotter=None, model_check=None):
    from .parity import format_table, run_case

    if args.rtol is not None and not args.rtol >= 0:
        raise UserInputError(f"--rtol must be >= 0 (a relative error bound); got {args.rtol}")
    how = {"solver_run": solver_runner}
    if args.model:  # the hand-written models (fcn_port.models) instead of the interpreter
        if model_runner is None:
            raise UnsupportedError("parity --model needs fcn_port.models (run it as fcn-port)")
        if model_check is not None:  # a checkpoint that does not load is one line, up front
            model_check(args.model)
        how.update(run=lambda case, rtol: model_runner(case, args.model, rtol),
                   kind=f"model {args.model}", solver_run=None)  # --model runs forward cases
    if args.plot and loss_plotter is None:
        raise UnsupportedError("parity --plot needs fcn_port.solvers (run it as fcn-port)")
    check_output_dir(args.plot, "--plot")
    results = []
    for case in args.cases:
        r = run_case(case, args.rtol, **how)
        results.append(r)
        if args.plot:
            loss_plotter(args.plot, r)
        if args.json:
            print(json.dumps(r), flush=True)
    if not args.json:
        print(format_table(results))
    return 1 if any(r["pass"] is False for r in results) else 0


def layer_table():
    """Markdown table of the supported Caffe layer types, generated from the registry."""
    from .layers import types

    rows = ["| Caffe type | module |", "| --- | --- |"]
    for name, cls in types().items():
        rows.append(f"| `{name}` | `port/layers/{cls.__module__.rsplit('.', 1)[-1]}.py` |")
    return "\n".join(rows)


def _add_file_verbs(verbs, model_runner, solver_runner=None, loss_plotter=None,
                    model_check=None):
    p = verbs.add_parser("inspect", help="describe any Caffe file", description=(
        "Describe a prototxt (net or solver), caffemodel (binary or HDF5) or solverstate: "
        "format and version, layers with types, bottoms, tops and param shapes, totals, and "
        "what loading upgraded. With no FILE, the bundled small voc-fcn8s."))
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--no-stats", action="store_true",
                   help="skip the per-layer value summary (min/max/mean/NaN count)")
    p.epilog = examples(
        "fcn-port inspect voc-fcn8s.caffemodel",
        "fcn-port inspect VGG_ILSVRC_16_layers.caffemodel",
        "fcn-port inspect train.prototxt solver.prototxt snapshot/train_iter_4000.solverstate",
        "fcn-port inspect --json X.caffemodel")
    p.set_defaults(run=_inspect)

    p = verbs.add_parser("parity", help="compare with real Caffe outputs", description=(
        "Run oracle case folders (net.prototxt, weights, blobs.npz, case.json) and compare every "
        "top, and for backward cases every input and param gradient, with what Caffe wrote. "
        "Error per blob: max|ours - caffe| / max(1, max|caffe|). Solver cases (solver.prototxt, "
        "init.caffemodel, batches.npz, trajectory.npz) replay Caffe's steps from its initial "
        "weights and from each of its snapshots and compare every param at the case's "
        "checkpoints: max|ours - caffe| / max|caffe - init|. Exit 1 if any case fails."))
    p.add_argument("cases", nargs="+", metavar="CASE_DIR")
    p.add_argument("--json", action="store_true", help="one JSON object per case")
    p.add_argument("--rtol", type=float, help=(
        "tolerance for every case (default 1e-5 for forward/backward cases, 1e-2 for solver "
        "cases)"))
    p.add_argument("--plot", metavar="DIR", help=(
        "draw each solver case's loss per step, fcn-port's and Caffe's, to DIR/<case>_loss.png"))
    p.add_argument("--model", metavar="NAME_OR_CKPT", help=(
        "run forward cases through a hand-written model instead of the interpreter: an "
        "official name or 'auto' (weights converted from the case's caffemodel, the family "
        "detected for 'auto'), or a checkpoint"))
    p.epilog = examples(
        "fcn-port parity tests/data/oracle/layers/* tests/data/oracle/fcn/*",
        "fcn-port parity --json --rtol 2e-6 tests/data/oracle/fcn/voc-fcn8s")
    p.set_defaults(run=lambda args: _parity(args, model_runner, solver_runner, loss_plotter,
                                            model_check))

    p = verbs.add_parser("layers", help="list the supported Caffe layer types")
    p.set_defaults(run=lambda args: print(layer_table()))


# offsets

def _cell(offsets):
    return "-" if offsets is None else ",".join(str(o) for o in offsets or [0])


def offsets_table(path, results):
    """The people-readable report of :func:`fcn_port.port.coord_map.net_offsets` results."""
    if not results:
        return f"{path}: no Crop layers"
    phased = any(r["phase"] for r in results)
    head = ["layer", "bottoms", "axis", "file", "derived", "status"] + (["phase"] if phased else [])
    rows = []
    for r in results:
        status = "OK" if r["ok"] else ("MISMATCH" if r["offsets"] is not None else "UNKNOWN")
        axis = str(r["file_axis"])
        if r["axis"] is not None and r["axis"] != r["file_axis"]:
            axis += f" (derived {r['axis']})"
        rows.append([r["name"], ", ".join(r["bottoms"]), axis, _cell(r["file_offsets"]),
                     _cell(r["offsets"]), status] + ([r["phase"] or ""] if phased else []))
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = [f"{path}: {len(results)} Crop layer{'s' * (len(results) != 1)}"]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip()
              for row in [head] + rows]
    lines += [f"  {r['name']}: {r['reason']}" for r in results if r["reason"]]
    lines += [f"  {r['name']}: note: {r['note']}" for r in results if r["note"]]
    return "\n".join(lines)


def _offsets(args):
    from .coord_map import net_offsets
    from .formats.report import load_net

    results = net_offsets(load_net(args.file))
    ok = all(r["ok"] for r in results)
    if args.json:
        print(json.dumps({"file": args.file, "ok": ok, "crops": results}))
    else:
        print(offsets_table(args.file, results))
    return 0 if ok else 1


def _add_offsets_verb(verbs):
    p = verbs.add_parser("offsets", help="check Crop offsets against Caffe's coord_map",
                         description=(
        "For each Crop layer of a net prototxt or binary caffemodel: its bottoms, the offset in "
        "the file, and the offset Caffe's coord_map derives (pycaffe's crop(bottom, reference), "
        "as FCN's net.py uses it). Exit 1 if any crop's offset differs (MISMATCH) or cannot be "
        "derived (UNKNOWN, with the reason)."))
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: file, ok, and crops (one object per Crop layer)")
    p.set_defaults(run=_offsets)


# surgery

TARGET_HELP = ("the target net: a prototxt (train, val or deploy; Python data layers get "
               "nominal 500x500 inputs) or an official model name such as voc-fcn16s")


def _input_shape(text):
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive dims like 1,3,500,500, not {text!r}")
    return dims


def _names(text):
    """LAYER or LAYER,LAYER,... (the option may also be repeated)."""
    return [n for n in text.split(",") if n]


def _finish(args, params, report, net=None):
    from .surgery import save

    print(report.format())
    digest = save(params, args.output, net=net)
    n = sum(a.size for blobs in (params.params if hasattr(params, "params") else params).values()
            for a in blobs)
    print(f"wrote {args.output}: {n:,} values" + (f", sha256 {digest}" if digest else ""))


def _transplant(args):
    from .surgery import resolve_net, transplant_net

    net = resolve_net(args.net, by_name=args.net_by_name)
    params, report = transplant_net(
        args.source, net, args.suffix, init=args.init,
        interp_layers=None if args.no_interp else (args.interp_layers or "auto"),
        expand=args.expand, skip=args.skip, input_shape=args.input_shape)
    suffix = f" (suffix '{args.suffix}')" if args.suffix else ""
    print(f"transplant {args.source} -> {args.net}{suffix}")
    _finish(args, params, report, net)


def _color_d(args):
    from .surgery import color_depth_transplant, resolve_net

    net = resolve_net(args.net, by_name=args.net_by_name)
    params, report = color_depth_transplant(
        args.source, net, layer=args.layer, base_layer=args.base_layer,
        interp_layers=None if args.no_interp else "auto", input_shape=args.input_shape)
    print(f"color-d {args.source} -> {args.net}")
    _finish(args, params, report, net)


def _interp(args):
    from .surgery import interp_weights

    weights, report = interp_weights(args.source, args.layers)
    print(f"interp {args.source}")
    _finish(args, weights, report)


def _expand(args):
    from .surgery import expand_weights, resolve_net, transplant_net

    if bool(args.net) == (args.classes is not None):
        args.expand_parser.error("give either --classes K (expand in the file) or --net NET")
    if args.classes is not None and args.classes < 1:
        raise UserInputError(f"--classes {args.classes}: expected a class count >= 1")
    if args.net:
        if not args.layer:
            args.expand_parser.error("with --net, name the score layer(s): --layer score_fr")
        net = resolve_net(args.net, by_name=args.net_by_name)
        params, report = transplant_net(args.source, net, expand=args.layer, skip=args.skip,
                                        interp_layers=None if args.no_interp else "auto",
                                        input_shape=args.input_shape)
        print(f"expand-score {args.source} -> {args.net} (layers {', '.join(args.layer)})")
        _finish(args, params, report, net)
    else:
        weights, report = expand_weights(args.source, args.layer or None, args.classes)
        layers = ", ".join(report.layers("expanded"))
        print(f"expand-score {args.source} ({layers} to {args.classes} classes)")
        _finish(args, weights, report)


def _output_checked(run):
    """``run`` after the -o check: a path that cannot be written is refused before any work."""
    def checked(args):
        check_output_file(args.output, "-o", "a caffemodel file name (.h5 for HDF5)")
        return run(args)
    return checked


def _common(p, net=True, required=True):
    p.add_argument("source", metavar="SRC", help="source weights (.caffemodel or .caffemodel.h5)")
    if net:
        p.add_argument("--net", required=required, metavar="NET", help=TARGET_HELP)
        p.add_argument("--input-shape", type=_input_shape, metavar="N,C,H,W",
                       help="shape for the net's data tops (default: their own, or 1,3,500,500)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output caffemodel (.h5: HDF5); written only if everything succeeds")


def _add_surgery_verbs(verbs, net_by_name):
    top = verbs.add_parser("surgery", help="transplant, interp, expand-score, color-d",
                           description=(
        "The official FCN weight surgery (surgery.py + solve.py) on files. A copy between "
        "blobs of different element counts is an error, never a silent repeat."))
    top.set_defaults(net_by_name=net_by_name)
    sub = top.add_subparsers(dest="surgery_verb", required=True, metavar="SURGERY")

    p = sub.add_parser("transplant", help="start a net from another net's weights", description=(
        "Copy each source layer's blobs into the same-named layer (+ SUFFIX) of the target by "
        "flat element order (fc -> conv when counts agree), drop what has no place, keep the "
        "target's filler values elsewhere, then set the 'up' layers to bilinear."))
    _common(p)
    p.add_argument("--suffix", default="", help="target layer = source layer + SUFFIX "
                                                "(color-HHA: color, hha)")
    p.add_argument("--init", metavar="WEIGHTS", help="start the target from these weights (of the "
                   "same net) instead of its fillers, e.g. to chain two --suffix transplants")
    p.add_argument("--expand", action="extend", type=_names, default=[], metavar="LAYER",
                   help="score layers to copy into a layer with more classes (expand_score)")
    p.add_argument("--skip", action="extend", type=_names, default=[], metavar="LAYER",
                   help="source layers to drop")
    p.add_argument("--no-interp", action="store_true", help="leave the 'up' layers as they are")
    p.add_argument("--interp-layers", action="extend", type=_names, metavar="LAYER",
                   help="bilinear-initialise these instead of every layer whose name has 'up'")
    p.epilog = examples(
        "fcn-port surgery transplant VGG_ILSVRC_16_layers.caffemodel --net voc-fcn32s -o "
        "vgg16-fcn.caffemodel",
        "fcn-port surgery transplant voc-fcn32s.caffemodel --net voc-fcn16s -o start16s.caffemodel")
    p.set_defaults(run=_output_checked(_transplant))

    p = sub.add_parser("interp", help="set upsampling layers to bilinear", description=(
        "Set each layer's weight W[i, i] (or W[i, 0]) to the bilinear kernel; other entries "
        "are kept. Default layers: every param layer whose name contains 'up'."))
    _common(p, net=False)
    p.add_argument("--layers", action="extend", type=_names, metavar="LAYER")
    p.set_defaults(run=_output_checked(_interp))

    p = sub.add_parser("expand-score", help="copy a score layer into one with more classes",
                       description=(
        "Copy score layers' k' classes into the first k' outputs of layers with more. With "
        "--classes K, in the file itself: every score layer with score_fr's class count "
        "(FCN-16s/8s: also score_pool4/score_pool3) gets K outputs, the new ones 0, and the "
        "upsampling ('up') layers become K-to-K (old block kept, new classes bilinear), so "
        "the result converts as a K-class FCN. With --net, a transplant into that net (new "
        "classes keep its fillers; other layers are transplanted)."))
    _common(p, required=False)
    p.add_argument("--layer", action="extend", type=_names, metavar="LAYER", help=(
        "the score layer(s), e.g. score_fr (default with --classes: every score layer with "
        "score_fr's class count; needed with --net)"))
    p.add_argument("--classes", type=int, metavar="K", help="new number of classes")
    p.add_argument("--skip", action="extend", type=_names, default=[], metavar="LAYER",
                   help="with --net: source layers to drop (e.g. old-size upscore layers)")
    p.add_argument("--no-interp", action="store_true", help="with --net: no bilinear 'up' layers")
    p.epilog = examples(
        "fcn-port surgery expand-score voc-fcn8s.caffemodel --classes 25 -o wide.caffemodel")
    p.set_defaults(run=_output_checked(_expand), expand_parser=p)

    p = sub.add_parser("color-d", help="NYUD color-D: VGG16 into a 4-channel (BGR-D) net",
                       description=(
        "Transplant VGG16 weights into the color-D net, then its first conv from VGG conv1_1: "
        "channels 0-2 copied, channel 3 their mean, bias copied."))
    _common(p)
    p.add_argument("--layer", default="conv1_1_bgrd",
                   help="the 4-channel conv (default %(default)s)")
    p.add_argument("--base-layer", default="conv1_1", help="source conv (default %(default)s)")
    p.add_argument("--no-interp", action="store_true", help="leave the 'up' layers as they are")
    p.epilog = examples(
        "fcn-port surgery color-d VGG_ILSVRC_16_layers.caffemodel --net "
        "nyud-fcn32s-color-d -o color-d.caffemodel")
    p.set_defaults(run=_output_checked(_color_d))
