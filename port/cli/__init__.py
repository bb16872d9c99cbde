"""The ``fcn-port`` command: thin verbs over the library. Bad input prints one clear line.

Each module named in ``VERB_MODULES`` adds its verbs with ``add_verbs(subparsers)``; a verb sets
``run`` to a function of the parsed arguments that returns the exit status (None means 0).
Library errors (:class:`CaffeFormatError`, :class:`NetError`) become one ``fcn-port: error:``
line and exit status 2.
"""
import argparse
import importlib
import sys

from ..errors import CaffeFormatError, NetError
from .formats import DEFAULT_WEIGHTS, layer_table  # noqa: F401  (public names)

VERB_MODULES = ("formats", "models", "infer", "offsets", "surgery", "export", "bench")


def build_parser():
    from ... import __version__

    parser = argparse.ArgumentParser(prog="fcn-port", description=(
        "Caffe FCN nets, weights and solvers in PyTorch, with no numerical drift."))
    parser.add_argument("--version", action="version", version=f"fcn-port {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_verbs(verbs)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (CaffeFormatError, NetError) as e:
        print(f"fcn-port: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcn-port: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
