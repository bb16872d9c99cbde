"""solvers/' verbs: ``train`` (``caffe train --solver``), and the hooks ``fcn-port parity`` gets
for solver cases (:func:`solver_case`, :func:`plot_case`), which :mod:`fcn_port.cli` hands to
port/'s parity verb (port never imports solvers).

``fcn-port train`` is ``caffe train`` (``tools/caffe.cpp``, ``train()``): ``--solver`` required,
``--weights`` or ``--snapshot`` (not both), the solver's ``max_iter`` unless ``--max-iter``;
batches for the nets' data layers from ``--batches`` (an npz in the oracle case format, see
:mod:`.data`) and ``--test-batches``. ``--procs N`` runs N processes (:mod:`.distributed`);
under ``torchrun`` the environment says which process this is. Log lines go to stdout, the
progress bar to stderr (a terminal only; ``--quiet`` turns both off, leaving errors).
"""
import os
import sys
import warnings

from fcn_port.port.errors import UserInputError
from fcn_port.port.verbs import check_device, device_arg, examples


def add_verbs(verbs, *, data_sources=None, seg_tests=None):
    """``data_sources(data_root)``: called before training to serve the official data layers
    from dataset readers (cli.py passes reproduce's; solvers cannot import it); it adds
    ``--data-root``. ``seg_tests(solver_param, train_net, root, split=, device=)``: an
    evaluator of the solver's test net (``evaluate()`` -> one dict per head, see
    :mod:`.evalhook`); it adds ``--eval-every`` and ``--eval-split``."""
    p = verbs.add_parser("train", help="train a net from a solver prototxt (caffe train)",
                         description=(
        "Train as 'caffe train --solver' does, with Caffe's solvers emulated exactly: Caffe's "
        "log lines (Iteration N, loss = X / lr = Y, train and test net outputs), test nets "
        "every test_interval, snapshots every 'snapshot' iterations and at the end in "
        "snapshot_format, resumable with --snapshot. SIGINT/SIGTERM: snapshot and stop; "
        "SIGHUP: snapshot and go on. A NaN or Inf loss, gradient or weight stops training "
        "naming the iteration and layer. Writes <snapshot_prefix>_log.csv and _loss.png."))
    p.add_argument("--solver", required=True, metavar="SOLVER.prototxt")
    p.add_argument("--weights", metavar="W.caffemodel",
                   help="start from these weights (binary or HDF5), copied by layer name")
    p.add_argument("--snapshot", metavar="S.solverstate",
                   help="resume from a snapshot (.solverstate or .solverstate.h5) to max_iter; "
                   "'latest': the newest complete one of the solver's snapshot_prefix, or, "
                   "when there is none yet, start afresh (from --weights if given)")
    p.add_argument("--batches", metavar="B.npz", help=(
        "batches for the train net's data layers: it/<k>/<blob> arrays, one batch per forward "
        "pass (iter_size passes per iteration; they cycle when the run needs more)"))
    p.add_argument("--test-batches", metavar="B.npz",
                   help="batches for the test nets' data layers (same format)")
    p.add_argument("--device", type=device_arg, default="cpu",
                   help="cpu (default), cuda, cuda:N, or auto (CUDA when available)")
    p.add_argument("--procs", type=int, default=1, metavar="N",
                   help="data-parallel processes (gloo on CPU, NCCL on CUDA); default 1")
    p.add_argument("--max-iter", type=int, metavar="N", help="override the solver's max_iter")
    p.add_argument("--data-order", choices=("continuous", "caffe"), default="continuous", help=(
        "continuous (default): a resumed run reads the batches the uninterrupted run would, and "
        "processes read disjoint draws; caffe: as Caffe, the data layers start from their first "
        "draw when a snapshot is restored, and with --procs every process's official data "
        "layer reads the same draws (python/train.py seeds each alike)"))
    p.add_argument("--quiet", action="store_true", help="no log lines and no progress bar")
    p.add_argument("--json", action="store_true",
                   help="end with one JSON line: iter, losses, snapshots, log, plot, tests")
    if data_sources is not None:
        p.add_argument("--data-root", metavar="DIR", help=(
            "where the official data layers' folders are (the folder holding e.g. "
            "pascal/VOC2011 and sbdd/dataset); default: relative to the net prototxt, as the "
            "official param_str paths are"))
    if seg_tests is not None:
        p.add_argument("--eval-every", type=int, metavar="N", help=(
            "score the current weights every N iterations and at the end as the official "
            "solve.py + score.py seg_tests do: the solver's test net over its data layer's whole "
            "split, read in order; a log line per head (loss, overall and mean accuracy, mean "
            "IU, fwavacc) and <snapshot_prefix>_eval.csv, _eval.json, _eval.png"))
        p.add_argument("--eval-split", metavar="NAME",
                       help="with --eval-every: score this split instead of the test net's own")
    p.epilog = examples(
        "fcn-port net voc-fcn32s --split train --solver -o voc-fcn32s/",
        "fcn-port train --solver voc-fcn32s/solver.prototxt --weights "
        "vgg16-fcn.caffemodel --data-root data/",
        "fcn-port train --solver voc-fcn32s/solver.prototxt --weights "
        "vgg16-fcn.caffemodel --batches b.npz",
        "fcn-port train --solver voc-fcn32s/solver.prototxt --snapshot "
        "snapshot/train_iter_4000.solverstate --batches b.npz")
    p.set_defaults(run=_train, argv=None, data_sources=data_sources, seg_tests=seg_tests)


def _check_file(path, what):
    if path is not None and not os.path.isfile(path):
        why = "is a folder, not a file" if os.path.isdir(path) else "no such file"
        raise UserInputError(f"{what} {path}: {why}")


def _check_dir(path, what):
    if path is not None and not os.path.isdir(path):
        why = "is a file, not a folder" if os.path.exists(path) else "no such folder"
        raise UserInputError(f"{what} {path}: {why}")


def _check_snapshot(path):
    """``--snapshot`` names a solverstate; a caffemodel there is a common slip (weights)."""
    from fcn_port.port.formats.sniff import sniff

    if path.endswith((".caffemodel", ".caffemodel.h5")) or (
            not path.endswith((".solverstate", ".solverstate.h5")) and sniff(path) != "hdf5"
            and path.endswith(".h5")):
        raise UserInputError(f"--snapshot {path}: a caffemodel (weights), not a solverstate; "
                             "resume with the .solverstate Caffe wrote beside it, or start from "
                             f"these weights with --weights {path}")


def _latest_snapshot(args):
    """``--snapshot latest``: the newest complete snapshot of the solver's snapshot_prefix
    (solvers.snapshots.newest_snapshot); with none, start afresh (from --weights if given)."""
    from .build import read_solver_file
    from .distributed import says_once
    from .snapshots import newest_snapshot

    param = read_solver_file(args.solver)[0]
    found = newest_snapshot(param.snapshot_prefix) if param.snapshot_prefix else None
    if not args.quiet and says_once():
        print(f"--snapshot latest: {'resuming from ' + found if found else 'no snapshot yet'}"
              f"{'' if found or not args.weights else ', starting from ' + args.weights}",
              file=sys.stderr)
    args.snapshot = found
    if found:
        args.weights = None


def _train(args):
    import json

    _check_file(args.solver, "--solver")
    _check_file(args.weights, "--weights")
    if args.snapshot == "latest":
        _latest_snapshot(args)
    _check_file(args.snapshot, "--snapshot")
    if args.snapshot:
        _check_snapshot(args.snapshot)
    _check_file(args.batches, "--batches")
    _check_file(args.test_batches, "--test-batches")
    if args.weights and args.snapshot:
        raise UserInputError("give --snapshot to resume training or --weights to finetune, "
                             "not both (as caffe train)")
    if args.procs < 1:
        raise UserInputError(f"--procs must be >= 1, not {args.procs}")
    if args.max_iter is not None and args.max_iter < 0:
        raise UserInputError(f"--max-iter must be >= 0, not {args.max_iter}")
    args.device = check_device(args.device)
    every, eval_split = getattr(args, "eval_every", None), getattr(args, "eval_split", None)
    if every is not None and every < 1:
        raise UserInputError(f"--eval-every must be >= 1, not {every}")
    if eval_split is not None and every is None:
        raise UserInputError("--eval-split needs --eval-every")
    if args.data_sources is not None:
        _check_dir(getattr(args, "data_root", None), "--data-root")
        args.data_sources(getattr(args, "data_root", None))
    if args.procs > 1:
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            raise UserInputError("--procs inside torchrun: torchrun already starts the processes")
        from .distributed import check_procs, launch

        check_procs(args.procs, args.device)
        _dry_run(args)  # a bad solver, net, weights or batches: one line, before N processes
        return launch(_without_procs(sys.argv[1:] if args.argv is None else args.argv),
                      args.procs)
    from . import distributed
    from .train import NonFiniteError, fast_allocator

    group = distributed.from_env(args.device)
    fast_allocator(group.device)
    try:
        quiet = args.quiet or not group.root
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            else:
                from .data import DataWarning

                warnings.simplefilter("always", DataWarning)
                warnings.showwarning = _warn_line
            trainer = _trainer(args, group, quiet)
            if every is not None and group.root:
                trainer.hooks.append(_eval_hook(args, trainer, every, eval_split))
            try:
                result = trainer.solve()
            except NonFiniteError as e:
                if group.active and not e.found_here:  # the rank that found it says so
                    return 2
                raise
            if trainer.hooks:
                result["eval"] = {k: str(getattr(trainer.hooks[0], f"{k}_path"))
                                  for k in ("csv", "json", "png")}
        if args.json and group.root:
            print(json.dumps(result))
        elif group.root and not quiet and result["plot"]:
            print(f"wrote {result['log']} and {result['plot']}")
            if result.get("eval"):
                print("wrote " + ", ".join(result["eval"].values()))
    finally:
        group.close()
    return 0


def _trainer(args, group, quiet):
    from .data import NpzBatches
    from .train import Trainer

    return Trainer(
        args.solver, weights=args.weights, snapshot=args.snapshot,
        sources=NpzBatches(args.batches) if args.batches else None,
        test_sources=NpzBatches(args.test_batches) if args.test_batches else None,
        max_iter=args.max_iter, group=group, data_order=args.data_order,
        echo=(lambda line: None) if quiet else (lambda line: print(line, flush=True)),
        progress=not quiet)


def _dry_run(args):
    """``--procs N``: what each process builds before training (the solver, its nets, the
    weights or snapshot, the batches bound to the data layers), built once here on the
    ``meta`` device, which allocates nothing, so a mistake is one line before N processes
    start."""
    import torch

    from .distributed import Group

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        _trainer(args, Group(device="meta"), quiet=True)


def _eval_hook(args, trainer, every, split):
    """``--eval-every``: the evaluator (built and checked now, before training) in a hook."""
    from .evalhook import SegTestHook

    root = os.path.dirname(os.path.abspath(args.solver))
    evaluator = args.seg_tests(trainer.param, trainer.net, root, split=split,
                               device=trainer.device)
    return SegTestHook(every, evaluator, trainer.param.snapshot_prefix,
                       start_iter=trainer.solver.iter, echo=trainer.echo)


def _warn_line(message, category, filename, lineno, file=None, line=None):
    print(f"fcn-port: warning: {message}", file=sys.stderr, flush=True)


def _without_procs(argv):
    """The train command line without ``--procs N`` / ``--procs=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--procs":
            skip = True
        elif not a.startswith("--procs="):
            out.append(a)
    return out


# ---- hooks for port/'s parity verb ----------------------------------------------------------

def solver_case(case, rtol=None):
    """``fcn-port parity`` on an oracle solver case (:func:`.parity.run_solver_case`);
    ``rtol`` None is the solver default (1e-2)."""
    from .parity import DEFAULT_RTOL, run_solver_case

    return run_solver_case(case, DEFAULT_RTOL if rtol is None else rtol)


def plot_case(folder, row):
    """``fcn-port parity --plot DIR``: ``DIR/<case>_loss.png`` for a solver case's row."""
    from .log import plot_case_losses

    return plot_case_losses(folder, row)

