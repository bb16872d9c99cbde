"""The argparse pieces every fcn-port verb shares: :class:`Parser` (the top parser, each verb's
and surgery's sub-verbs') with :class:`HelpFormatter`, which prints an ``examples:`` epilog
(:func:`examples`) line for line. The examples are README commands, run as written by the
docs test (tests/test_docs.py).
"""
import argparse


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
