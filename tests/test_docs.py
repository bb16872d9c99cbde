"""Docs are tests: every command block of the user-facing Markdown runs exactly as written.

Each ```sh block of README.md, benchmarks/README.md, fuzz/README.md, models/data/README.md (every
tracked ``*.md`` outside tests/) is a session: its commands run in order with ``bash``, in a new
empty folder, or in a fresh copy of the checkout for those that name the repository's own files
(``bash reproduce/voc2011.sh``, ``tests/data/oracle``, ``benchmarks/``), with ``fcn-port`` and
``python`` found on PATH as a user's shell finds them after the README's install (the bin folder
of the Python running the tests). Each ```python block runs as a script in a subprocess, the
same way.

The only changes allowed are declared in one table, tests/docs_table.py:

* :data:`COMMANDS`: every shell command of the docs, with the files it must make and its exit
  status; a command that cannot run here says why (``why``: the internet, a GPU, an install,
  days of training) and gives the stand-in that runs instead (``instead``; None when nothing
  local can stand in, e.g. archives whose published md5 no stand-in matches). A command in the
  docs that the table lacks fails :func:`test_every_documented_command_is_in_the_table`, and an
  entry no doc has fails it too, so docs and table cannot drift apart.
* :data:`INPUTS`: the files the docs assume a user has (``image.jpg``,
  ``fcn8s-heavy-pascal.caffemodel``, ``VGG_ILSVRC_16_layers.caffemodel``, a VOC tree ...),
  mapped to files made here before the first command that names them: the official nets at
  full size with zero weights where a command builds the official full-size net
  (``--net voc-fcn32s``), the bundled small voc-fcn8s where any voc-fcn8s does.
* Downloads run against a local HTTP server through ``FCN_PORT_MIRROR`` (the files at the
  real URLs' paths).

The ``--help`` of every verb is checked too: its examples (``examples:`` epilog lines) must be
commands of this table.
"""
import functools
import http.server
import re
import shutil
import subprocess
import threading

import pytest

from docs_table import BIN, COMMANDS, ROOT, _env, _full_size, _link, _make_inputs


# ---- the docs -----------------------------------------------------------------------------------

def _docs():
    return sorted(p for p in ROOT.rglob("*.md")
                  if not ({"tests", ".git", "build"} & set(p.relative_to(ROOT).parts))
                  and "egg-info" not in str(p))


def blocks(path):
    """``[(language, text)]`` of the fenced code blocks of ``path``."""
    text = path.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text,
                                                          re.S | re.M)]


def commands(block):
    """The command lines of a shell block: continuations joined, comments dropped."""
    out, line = [], ""
    for raw in block.splitlines():
        line += raw
        if line.endswith("\\"):
            line = line[:-1]
            continue
        code = re.sub(r"\s+#.*$", "", line).strip()
        if code and not code.startswith("#"):
            out.append(" ".join(code.split()))
        line = ""
    return out


SHELL = ("sh", "bash", "console", "shell")
SESSIONS = [(p, i, text) for p in _docs() for i, (lang, text) in enumerate(blocks(p))
            if lang in SHELL]
PYTHON = [(p, i, text) for p in _docs() for i, (lang, text) in enumerate(blocks(p))
          if lang == "python"]


def _id(item):
    return f"{item[0].relative_to(ROOT)}#{item[1]}"


def test_every_documented_command_is_in_the_table():
    documented = {c for _, _, text in SESSIONS for c in commands(text)}
    missing = sorted(documented - set(COMMANDS))
    assert not missing, "commands in the docs that the table neither runs nor excuses: " + \
        "; ".join(missing)
    stale = sorted(set(COMMANDS) - documented)
    assert not stale, "table entries no doc or --help shows any more: " + "; ".join(stale)
    for c, spec in COMMANDS.items():
        assert (spec.instead == "=") == (not spec.why), f"{c}: a stand-in needs its reason"


# ---- running them -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """Where the full-size stand-ins are made (once for the module)."""
    return tmp_path_factory.mktemp("full-size")


@pytest.fixture(scope="module")
def mirror(big):
    """A local HTTP server with the released files at their URLs' paths (FCN_PORT_MIRROR)."""
    from fcn_port.reproduce import catalog
    from urllib.parse import urlsplit

    site = big / "site"
    for name, source in (("voc-fcn8s", "voc-fcn8s"), ("vgg16", "vgg16")):
        target = site / urlsplit(catalog.CATALOG[name].url).path.lstrip("/")
        _link(_full_size(source, big), target)
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _checkout(dst):
    """A fresh copy of the repository's files (what a clone has), without caches and builds."""
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, capture_output=True)
    names = [n for n in tracked.stdout.decode().split("\0") if n] if tracked.returncode == 0 \
        else None
    if not names:
        shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns(
            ".git", "__pycache__", "*.egg-info", ".pytest_cache", "voc2011-run"))
        return
    for n in names:
        if (ROOT / n).is_file():
            (dst / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / n, dst / n)


@pytest.mark.parametrize("session", SESSIONS, ids=_id)
def test_each_shell_block_runs_as_written(session, tmp_path, big, mirror):
    path, _, text = session
    cmds = [c for c in commands(text) if c in COMMANDS]
    where = {COMMANDS[c].where for c in cmds}
    folder = tmp_path / "work"
    folder.mkdir()
    if "checkout" in where:
        _checkout(folder)
    for c in cmds:
        spec = COMMANDS[c]
        line = c if spec.instead == "=" else spec.instead
        if line is None:
            continue
        _make_inputs(line, folder, big, skip=spec.makes)
        run = subprocess.run(["bash", "-c", line], cwd=folder, env=_env(MIRROR=mirror),
                             capture_output=True, text=True, timeout=900)
        said = f"`{line}` in {path.relative_to(ROOT)}: exit {run.returncode}\n" + \
            run.stdout[-2000:] + run.stderr[-3000:]
        assert run.returncode == spec.status, said
        assert "Traceback" not in run.stderr and "internal error" not in run.stderr, said
        for made in spec.makes:
            assert (folder / made).is_file() and (folder / made).stat().st_size > 0, \
                f"{said}\n(did not make {made})"


@pytest.mark.parametrize("block", PYTHON, ids=_id)
def test_each_python_block_runs_as_written(block, tmp_path, big):
    path, _, text = block
    folder = tmp_path / "work"
    folder.mkdir()
    _make_inputs(text, folder, big)
    (folder / "block.py").write_text(text)
    run = subprocess.run([str(BIN / "python"), "block.py"], cwd=folder, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{_id(block)}:\n{text}\n{run.stderr[-3000:]}"


# ---- --help examples ------------------------------------------------------------------------

def _help_examples():
    """``[(verb, command)]``: the lines under ``examples:`` of each verb's --help epilog."""
    from fcn_port.cli import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb")
    out = []
    for name, sub in verbs.choices.items():
        epilog = sub.epilog or ""
        if "examples:" in epilog:
            for line in epilog.split("examples:", 1)[1].splitlines():
                code = re.sub(r"\s+#.*$", "", line).strip()
                if code:
                    out.append(" ".join(code.split()))
    return out


def test_help_examples_are_commands_the_docs_run():
    """Each example of a verb's --help is a command of a docs block, so the blocks' test runs
    it (or its declared stand-in) exactly as the help prints it."""
    examples = _help_examples()
    assert len(examples) > 20, "the verbs' --help show too few examples"
    documented = {c for _, _, text in SESSIONS for c in commands(text)}
    missing = [c for c in examples if c not in documented]
    assert not missing, "--help examples no docs block runs: " + "; ".join(missing)
