"""Verbs on the FCN model family: ``convert``, ``net``, ``models``."""
import json
import os

from ..text import to_text


def _convert(args):
    from ...models import convert
    from .formats import DEFAULT_WEIGHTS

    if args.caffemodel is None:  # the bundled small voc-fcn8s, converted into the current dir
        args.caffemodel = str(DEFAULT_WEIGHTS)
        args.output = args.output or DEFAULT_WEIGHTS.with_suffix(".pt").name
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


def _net(args):
    from ...models import config, net_param, solver_param
    from ..fileio import atomic_output

    cfg = config(args.name, classes=args.classes, widths=args.widths, fc=args.fc)
    train, test = cfg.solver["splits"]
    # VOC and Context nets are train/val, SIFT Flow and NYUD trainval/test: either name works
    split = {"train": train, "trainval": train, "val": test, "test": test}.get(args.split,
                                                                              args.split)
    files = {}
    if args.split:
        files[f"{split}.prototxt" if split != "deploy" else "deploy.prototxt"] = \
            to_text(net_param(cfg, split))
    if args.solver:
        files["solver.prototxt"] = to_text(solver_param(cfg))
    if not files:
        for s in (train, test, "deploy"):
            files[f"{s}.prototxt"] = to_text(net_param(cfg, s))
        files["solver.prototxt"] = to_text(solver_param(cfg))
    if args.output in (None, "-") and len(files) == 1:
        print(next(iter(files.values())), end="")
        return
    out_dir = args.output or args.name
    os.makedirs(out_dir, exist_ok=True)
    for fname, text in files.items():
        with atomic_output(os.path.join(out_dir, fname), "w") as f:
            f.write(text)
        print(os.path.join(out_dir, fname))


def _list(args):
    from ...models import OFFICIAL

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


def add_verbs(verbs):
    from ...models import OFFICIAL

    p = verbs.add_parser("convert", help="caffemodel -> PyTorch checkpoint", description=(
        "Convert a caffemodel (binary or HDF5) into a checkpoint fcn_port.models.load() reads: "
        "the state dict (keys '<caffe layer>.<blob>') and metadata (model, classes, mean, "
        "source sha256, fcn-port version). The FCN family, class count and widths are "
        "detected from the layer names and shapes. Nothing is written if they do not fit."))
    p.add_argument("caffemodel", nargs="?", help="default: the bundled small voc-fcn8s")
    p.add_argument("-o", "--output", help="output file (default: the input with .pt)")
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
    p.add_argument("-o", "--output", help="directory (or '-' for stdout with one file; the "
                                          "default for one file)")
    p.add_argument("--classes", type=int, nargs="+", help="another class count (per head)")
    p.add_argument("--widths", type=int, nargs=5, help="the five conv widths")
    p.add_argument("--fc", type=int, help="fc6/fc7 width")
    p.set_defaults(run=_net)

    p = verbs.add_parser("models", help="list the official FCN models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_list)
