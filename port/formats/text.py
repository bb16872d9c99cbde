"""Prototxt: nets and solvers as protobuf text, read strictly and written the way Caffe reads them.

Caffe reads prototxt with protobuf's TextFormat into the current schema and then applies its
upgrades (:mod:`.upgrade`). One spelling needs care here: some Caffe forks (and the build that
wrote this project's oracle) define PoolingParameter field 13 as ``bool ceil_mode`` where BVLC
master has ``RoundMode round_mode``. ``ceil_mode: true|false`` is accepted in text and read as
``round_mode: CEIL|FLOOR``, and the translation is reported with the upgrades.
"""
import re

from google.protobuf import text_format

from .. import fileio
from ..errors import CaffeFormatError
from .proto import caffe_pb2

_CEIL_MODE = re.compile(r"\bceil_mode(\s*:\s*)(true|false|True|False|t|f|1|0)\b")
_PREFIX = re.compile(r"\bfcn_port\.caffe\.")


def _translate_ceil_mode(text):
    """Rewrite ``ceil_mode: <bool>`` (outside comments and strings) as ``round_mode: CEIL|FLOOR``."""
    lines, notes = text.split("\n"), []
    for n, line in enumerate(lines):
        code, rest = _split_comment(line)
        if "ceil_mode" not in code:
            continue
        def repl(m):
            mode = "CEIL" if m.group(2) in ("true", "True", "t", "1") else "FLOOR"
            notes.append(f"line {n + 1}: ceil_mode: {m.group(2)} -> round_mode: {mode}")
            return f"round_mode{m.group(1)}{mode}"
        lines[n] = _CEIL_MODE.sub(repl, code) + rest
    return "\n".join(lines), notes


def _split_comment(line):
    """(code, comment) of one prototxt line; '#' inside a quoted string is not a comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i], line[i:]
    return line, ""


def parse_text(text, cls, path="<text>"):
    """Parse prototxt ``text`` into a new ``cls`` message; return (message, notes).

    A syntax error or an unknown field raises CaffeFormatError naming ``path:line:column``.
    """
    text, notes = _translate_ceil_mode(text)
    msg = cls()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        what = _PREFIX.sub("", str(e))
        what = re.sub(r"^\d+:\d+ : ", "", what)
        raise CaffeFormatError(f"{path}:{line}:{col}" if line else path, "",
                               f"{what} (expected a {cls.DESCRIPTOR.name} in prototxt)") from None
    return msg, notes


def read_text(path, cls):
    """Read a prototxt file into ``cls``; return (message, notes)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CaffeFormatError(path, "", f"cannot open ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CaffeFormatError(path, f"byte {e.start}", "not UTF-8 text; expected a prototxt "
                                                         f"({cls.DESCRIPTOR.name})") from None
    return parse_text(text, cls, str(path))


def read_net(path, *, upgrade=True):
    """Read a net prototxt (train/val/deploy) as a V2 NetParameter; return (net, upgrades)."""
    net, notes = read_text(path, caffe_pb2.NetParameter)
    if upgrade:
        from .upgrade import upgrade_net

        notes += upgrade_net(net, path=str(path))
    return net, notes


def read_solver(path, *, upgrade=True):
    """Read a solver prototxt; return (SolverParameter, upgrades)."""
    solver, notes = read_text(path, caffe_pb2.SolverParameter)
    if upgrade:
        from .upgrade import upgrade_solver

        notes += upgrade_solver(solver)
    return solver, notes


def to_text(msg):
    """The prototxt of ``msg`` (2-space indents, fields in schema order, as Caffe's tools print)."""
    return text_format.MessageToString(msg, use_short_repeated_primitives=False)


def write_text(msg, path):
    """Write ``msg`` as prototxt, all or nothing."""
    with fileio.atomic_output(path, mode="w") as f:
        f.write(to_text(msg))
