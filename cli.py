"""``fcn-port``: assembles each package's verbs into one command. Nothing imports this module.

Each package owns its verbs (``port/verbs.py``, ``models/verbs.py``, ...) and adds them with
``add_verbs(subparsers)``; a verb sets ``run`` to a function of the parsed arguments that
returns the exit status (None means 0). Every error fcn-port raises on purpose
(:class:`~fcn_port.port.errors.FcnPortError`: a broken file, a net that cannot run, an
unsupported request, a bad argument) becomes one ``fcn-port: error:`` line and exit status 2.
Heavy modules (torch) are imported by the verbs that need them, so ``--help`` starts fast.

    python -m fcn_port.cli VERB ...   # the same as fcn-port VERB ... (torchrun uses this)
"""
import argparse
import importlib
import os
import sys

from .port import verbs as port_verbs
from .port.errors import FcnPortError
from .models import verbs as models_verbs
from .solvers import verbs as solvers_verbs
from .reproduce import verbs as reproduce_verbs


def _official_net(name):
    return importlib.import_module("fcn_port.models").deploy_net(name)


def _model_case(case, model, rtol):
    return importlib.import_module("fcn_port.models.parity").run_model_case(case, model, rtol)


def _model_check(model):
    return models_verbs.check_model(model)


def _train_step(model, size, runs, warmup):
    return importlib.import_module("fcn_port.solvers.bench").train_bench(model, size, runs, warmup)


def _data_sources(data_root):
    importlib.import_module("fcn_port.reproduce.datasets").register(data_root=data_root)


def _seg_tests(param, train_net, root, *, split=None, device="cpu"):
    return importlib.import_module("fcn_port.reproduce.segtests").solver_evaluator(
        param, train_net, root, split=split, device=device)


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked (see ``__init__``)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__

        print(f"fcn-port {__version__}")
        parser.exit()


def build_parser():
    parser = port_verbs.Parser(prog="fcn-port", description=(
        "Caffe FCN nets, weights and solvers in PyTorch, with no numerical drift."))
    parser.add_argument("--version", action=_Version)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB",
                                  parser_class=port_verbs.Parser)
    port_verbs.add_verbs(verbs, net_by_name=_official_net, model_runner=_model_case,
                         model_check=_model_check,
                         solver_runner=solvers_verbs.solver_case,
                         loss_plotter=solvers_verbs.plot_case)
    models_verbs.add_verbs(verbs, train_step=_train_step)
    solvers_verbs.add_verbs(verbs, data_sources=_data_sources, seg_tests=_seg_tests)
    reproduce_verbs.add_verbs(verbs)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if argv is not None:
        args.argv = list(argv)  # what ``train --procs N`` re-runs in each process
    try:
        return args.run(args) or 0
    except FcnPortError as e:
        return _fail(f"error: {e}", 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 0
    except MemoryError:
        return _fail(f"error: out of memory running '{args.verb}'", 2)
    except OSError as e:  # the system refused (disk full, permission, ...): name the file
        where = f"{e.filename}: " if e.filename else ""
        return _fail(f"error: {where}{e.strerror or e}", 2)
    except Exception as e:  # a bug in fcn-port: one line; the traceback on request
        if os.environ.get("FCN_PORT_DEBUG"):
            raise
        return _fail(f"internal error: {type(e).__name__}: {e} (a bug in fcn-port; rerun with "
                     "FCN_PORT_DEBUG=1 for the traceback and please report it)", 1)


def _fail(line, status):
    """Print ``fcn-port: <line>`` as exactly one line: newlines in a message folded, other
    control characters (a name from a file could hold ESC or CR) escaped."""
    from .port.formats.protoutil import printable

    print("fcn-port: " + printable(" ".join(str(line).split("\n")), limit=1 << 20),
          file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
