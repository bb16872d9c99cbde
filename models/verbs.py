"""models/' verbs: ``convert``, ``net``, ``models`` (the FCN family), ``infer``, and the
deployment verbs ``export`` and ``bench`` (:mod:`.deploy`).

:func:`add_verbs` adds them to ``fcn-port``'s sub-parsers (:mod:`fcn_port.cli` assembles every
package's verbs); a verb's ``run`` returns the exit status. Every verb that takes a checkpoint
loads it through :func:`load_checkpoint`.
"""
import json
import os
from pathlib import Path

from ..port.verbs import check_output_dir, check_output_file, examples
from ..port.errors import CaffeFormatError, FcnPortError, NetError, UserInputError
from .deploy_verbs import add_deploy_verbs
from .infer_verb import add_infer_verb
from .zoo import OFFICIAL

# the bundled demo: a reduced-width voc-fcn8s fcn-port trained on generated data
# (models/data/README.md; the recipe is reproduce/demo/), and a held-out image of that data
DEMO_WEIGHTS = Path(__file__).resolve().parent / "data" / "voc-fcn8s-demo.caffemodel"
DEMO_IMAGE = DEMO_WEIGHTS.with_name("demo.jpg")


def add_verbs(verbs, train_step=None):
    """``train_step(model, size, runs, warmup)``: ``bench --train``'s report, the iteration
    ``fcn-port train`` runs, timed; models cannot import solvers, so :mod:`fcn_port.cli` passes
    ``fcn_port.solvers.bench.train_bench``. Without it ``--train`` is an UnsupportedError."""
    _add_model_verbs(verbs)
    add_infer_verb(verbs, load_checkpoint, DEMO_IMAGE, _keep_freed_memory)
    add_deploy_verbs(verbs, load_checkpoint, train_step)


def _keep_freed_memory():
    from .deploy.bench import keep_freed_memory

    keep_freed_memory()


def load_checkpoint(path, device="cpu", *, fcn_for=None):
    """``models.load(path)`` for a verb: a path that is no file, or a file that does not load
    (a broken pickle, a foreign zip, ...), is one :class:`CaffeFormatError` line. ``fcn_for``:
    the verb's name when it runs the FCN models only (their inputs are images, their
    preprocessing known): an interpreter checkpoint is then one UserInputError line."""
    from . import load

    if not os.path.isfile(path):
        why = "is a folder" if os.path.isdir(path) else "does not exist"
        raise UserInputError(f"{path}: {why}; expected a checkpoint from fcn-port convert "
                             "(or an FCN caffemodel)")
    try:
        model = load(path, map_location=device)
    except FcnPortError as e:
        if "\n" not in str(e).strip():
            raise
        raise NetError(str(e).strip().splitlines()[0]) from None  # the CLI prints one line
    except (OSError, RuntimeError, EOFError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CaffeFormatError(path, "", f"cannot load ({first}); "
                               "expected a checkpoint from fcn-port convert") from None
    from ..port.net import CaffeNet

    if fcn_for and isinstance(model, CaffeNet):
        inputs = ", ".join(model.inputs)
        raise UserInputError(f"{path}: an interpreter checkpoint (a net from convert "
                             f"--prototxt, inputs: {inputs or 'none'}); {fcn_for} runs the FCN "
                             "models, whose inputs are images; run this net from Python: "
                             "models.load(CKPT)(blob=tensor)")
    return model


def check_model(model):
    """``parity --model``'s value checked before any case runs: an official name, ``auto``, or
    a checkpoint that loads (else one error line, not a failed row per case)."""
    from .zoo import official

    if model == "auto":
        return
    if Path(model).exists() or "/" in model or "." in model:
        load_checkpoint(model)
    else:
        official(model)



# convert, net, models

def _hash_early(path):
    """The sha256 of a regular file ``path``, started now in a thread (before numpy loads:
    on 2 cores the hash is the longest part of a safetensors convert), or None."""
    import stat

    from ..port.fileio.hashing import in_background, sha256

    try:
        regular = path is not None and stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        regular = False
    return in_background(sha256, path) if regular else None


def _convert(args):
    if args.caffemodel is None:  # the bundled demo voc-fcn8s, converted into the current dir
        args.caffemodel = str(DEMO_WEIGHTS)
        args.output = args.output or DEMO_WEIGHTS.with_suffix(".pt").name
    check_output_file(args.output or _default_out(args.caffemodel),
                      "-o" if args.output else "the default output (-o)", "a checkpoint file name",
                      inputs=(args.caffemodel, args.prototxt))
    if args.output and not args.output.endswith(CHECKPOINT_ENDINGS):
        raise UserInputError(f"-o {args.output}: a checkpoint's name ends in .pt or .pth "
                             "(torch.save) or .safetensors, which says the format written")
    digest = _hash_early(args.caffemodel)
    from .checkpoint import convert

    out, meta = convert(args.caffemodel, args.output, model=args.model, prototxt=args.prototxt,
                        digest=digest)
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
    p.epilog = examples(
        "fcn-port convert",
        "fcn-port convert fcn8s-heavy-pascal.caffemodel -o voc-fcn8s.pt",
        "fcn-port convert fcn8s-heavy-pascal.caffemodel -o voc-fcn8s.safetensors")
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
    p.epilog = examples(
        "fcn-port net voc-fcn32s --split train --solver -o voc-fcn32s/")
    p.set_defaults(run=_net)

    p = verbs.add_parser("models", help="list the official FCN models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_list)


# export
