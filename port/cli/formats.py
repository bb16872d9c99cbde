"""Verbs on Caffe files: ``inspect``, ``parity``, ``layers``."""
import json
from pathlib import Path

BUNDLED = Path(__file__).resolve().parent.parent / "data"
DEFAULT_WEIGHTS = BUNDLED / "voc-fcn8s-tiny.caffemodel"


def _inspect(args):
    from ..inspect import format_report, inspect_file

    files = args.files or [str(DEFAULT_WEIGHTS)]
    for i, path in enumerate(files):
        report = inspect_file(path, stats=not args.no_stats)
        if args.json:
            print(json.dumps(report))
        else:
            print(("\n" if i else "") + format_report(report))


def _parity(args):
    from ..parity import format_table, run_case

    how = {}
    if args.model:  # the hand-written models (fcn_port.models) instead of the interpreter
        from ...models.parity import run_model_case

        how = dict(run=lambda case, rtol: run_model_case(case, args.model, rtol),
                   kind=f"model {args.model}")
    results = []
    for case in args.cases:
        r = run_case(case, args.rtol, **how)
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
    if not args.json:
        print(format_table(results))
    return 1 if any(r["pass"] is False for r in results) else 0


def layer_table():
    """Markdown table of the supported Caffe layer types, generated from the registry."""
    from ..layers import REGISTRY

    rows = ["| Caffe type | module |", "| --- | --- |"]
    for name, cls in sorted(REGISTRY.items(), key=lambda kv: kv[0].lower()):
        rows.append(f"| `{name}` | `port/layers/{cls.__module__.rsplit('.', 1)[-1]}.py` |")
    rows.append("| `Python` | `port/layers/python.py` (bound explicitly, see above) |")
    return "\n".join(rows)


def add_verbs(verbs):
    p = verbs.add_parser("inspect", help="describe any Caffe file", description=(
        "Describe a prototxt (net or solver), caffemodel (binary or HDF5) or solverstate: "
        "format and version, layers with types, bottoms, tops and param shapes, totals, and "
        "what loading upgraded. With no FILE, the bundled small voc-fcn8s."))
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--no-stats", action="store_true",
                   help="skip the per-layer value summary (min/max/mean/NaN count)")
    p.set_defaults(run=_inspect)

    p = verbs.add_parser("parity", help="compare with real Caffe outputs", description=(
        "Run oracle case folders (net.prototxt, weights, blobs.npz, case.json) and compare every "
        "top, and for backward cases every input and param gradient, with what Caffe wrote. "
        "Error per blob: max|ours - caffe| / max(1, max|caffe|). Exit 1 if any case fails."))
    p.add_argument("cases", nargs="+", metavar="CASE_DIR")
    p.add_argument("--json", action="store_true", help="one JSON object per case")
    p.add_argument("--rtol", type=float, default=1e-5, help="tolerance (default 1e-5)")
    p.add_argument("--model", metavar="NAME_OR_CKPT", help=(
        "run forward cases through a hand-written model instead of the interpreter: an "
        "official name or 'auto' (weights converted from the case's caffemodel, the family "
        "detected for 'auto'), or a checkpoint"))
    p.set_defaults(run=_parity)

    p = verbs.add_parser("layers", help="list the supported Caffe layer types")
    p.set_defaults(run=lambda args: print(layer_table()))
