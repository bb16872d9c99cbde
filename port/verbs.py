"""port/'s verbs: ``inspect``, ``parity``, ``layers`` (Caffe files and the interpreter),
``offsets`` (Crop offsets by coord_map) and ``surgery`` (the official FCN weight surgery).

:func:`add_verbs` adds them to ``fcn-port``'s sub-parsers (:mod:`fcn_port.cli` assembles every
package's verbs). port/ knows no FCN model names: the top module passes ``net_by_name`` (an
official name -> its NetParameter, for ``surgery --net voc-fcn16s`` and inspect's checkpoint
rows) and ``model_runner`` / ``model_check`` (for ``parity --model``), from
:mod:`fcn_port.models`. A verb's ``run`` returns the exit status. The surgery verbs are in
:mod:`.surgery_verbs`. :class:`Parser` and :func:`examples` give every verb its ``--help``
examples.
"""
import argparse
import json
import re

from . import DEFAULT_WEIGHTS
from .errors import UnsupportedError, UserInputError
from .outputs import check_output_dir, check_output_file
from .parsers import HelpFormatter, Parser, examples  # noqa: F401  (every verb's, here too)


def add_verbs(verbs, *, net_by_name=None, model_runner=None, model_check=None,
              solver_runner=None, loss_plotter=None):
    _add_file_verbs(verbs, model_runner, solver_runner, loss_plotter, model_check)
    verbs.choices["inspect"].set_defaults(net_by_name=net_by_name)
    _add_offsets_verb(verbs)
    from .surgery_verbs import add_surgery_verbs

    add_surgery_verbs(verbs, net_by_name)
    from .codegen_verb import add_codegen_verb

    add_codegen_verb(verbs)


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

    from .formats.protoutil import printable
    from .formats.report import format_report, inspect_file
    from .layers import names

    files = args.files or [str(DEFAULT_WEIGHTS)]
    known = set(names())
    for i, path in enumerate(files):
        report = inspect_file(path, stats=not args.no_stats, known_types=known,
                              net_by_name=args.net_by_name)
        if args.json:
            print(json.dumps(report))
        else:
            print(("\n" if i else "") + format_report(report))
        for line in report.get("warnings", ()):
            print(f"fcn-port: warning: {printable(path, 1 << 20)}: {printable(line, 1 << 20)}",
                  file=sys.stderr)


def _parity(args, model_runner, solver_runner=None, loss_plotter=None, model_check=None):
    from .parity import format_table, run_case, run_forward_case

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
    if args.caffe_blas:
        if args.model:
            raise UserInputError("--caffe-blas runs the interpreter's layers; drop --model")
        from .layers.blas import caffe_blas

        with caffe_blas():  # refused here, once, where numpy has no OpenBLAS
            pass
        how["run"] = lambda case, rtol: run_forward_case(case, rtol, caffe_blas=True)
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
        "checkpoints: max|ours - caffe| / max|caffe - init|. Update cases (kind 'update') feed "
        "Caffe's gradients to the solver and compare every param and history in ulps "
        "(max_ulp, differ). Exit 1 if any case fails."))
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
    p.add_argument("--caffe-blas", action="store_true", help=(
        "run Convolution and InnerProduct through Caffe's own cblas_sgemm calls (numpy's "
        "OpenBLAS), in Caffe's summation order: bit for bit where torch's order is not"))
    p.epilog = examples(
        "fcn-port parity tests/data/oracle/layers/* tests/data/oracle/fcn/*",
        "fcn-port parity --json --rtol 2e-6 tests/data/oracle/fcn/voc-fcn8s",
        "fcn-port parity tests/data/oracle/update/*",
        "fcn-port parity --caffe-blas tests/data/oracle/zoo/resnet50")
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
