"""Docs are tests: every command block of the user-facing Markdown runs exactly as written.

Each ```sh block of README.md, benchmarks/README.md, fuzz/README.md, models/data/README.md (every
tracked ``*.md`` outside tests/) is a session: its commands run in order with ``bash``, in a new
empty folder, or in a fresh copy of the checkout for those that name the repository's own files
(``bash reproduce/voc2011.sh``, ``tests/data/oracle``, ``benchmarks/``), with ``fcn-port`` and
``python`` found on PATH as a user's shell finds them after the README's install (the bin folder
of the Python running the tests). Each ```python block runs as a script in a subprocess, the
same way.

The only changes allowed are declared here, in one table:

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
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent          # where pip put fcn-port beside this python
FAST_FCN8S = ROOT / "port" / "data" / "voc-fcn8s-tiny.caffemodel"   # official topology, 1/16
DEMO_IMAGE = ROOT / "models" / "data" / "demo.jpg"


@dataclass(frozen=True)
class Cmd:
    makes: tuple = ()            # files (folder-relative) the command must leave
    where: str = "empty"         # "empty": a new folder; "checkout": a fresh copy of the repo
    status: int = 0              # the exit status the docs promise
    why: str = ""                # why the command does not run as written here
    instead: str | None = "="    # "=": as written; else the stand-in that runs (None: nothing)


INSTALL = "the install is what .ci/run does before the suite; reinstalling in a test would " \
    "take minutes and change the environment under test"
NET = "needs the internet"
DAYS = "trains the official 100,000 iterations of the full-size net (days on a GPU); the " \
    "stand-in runs the same command for one iteration"
GPU_NET = "needs a GPU and the internet (2.5 GB of data, 0.5 GB of VGG16); --smoke runs the " \
    "same steps on generated data, and tests/reproduce/test_voc2011_smoke.py runs " \
    "--eval-official with its downloads stubbed"
BENCH = "a benchmark takes minutes; the stand-in runs it once, small"

COMMANDS = {
    # ---- README: set-up on a fresh machine
    "pip install torch==2.13.0 -e . && fcn-port convert && fcn-port infer voc-fcn8s-demo.pt":
        Cmd(("voc-fcn8s-demo.pt", "demo.png", "demo_overlay.png"), "checkout", why=INSTALL,
            instead="fcn-port convert && fcn-port infer voc-fcn8s-demo.pt"),
    "pip install torch==2.13.0 -e '.[test]' && python -m pytest":
        Cmd(where="checkout", why=INSTALL + "; the suite is what runs this test: the stand-in "
            "runs a part of it from the checkout", instead="python -m pytest -q -p "
            "no:cacheprovider tests/test_layout.py"),
    "pip install torch==2.13.0 -e .": Cmd(why=INSTALL, instead=None),
    "fcn-port download voc-fcn8s -o weights/ && fcn-port convert "
    "weights/fcn8s-heavy-pascal.caffemodel": Cmd(
        ("weights/fcn8s-heavy-pascal.pt",), why=NET, instead="FCN_PORT_MIRROR=$MIRROR fcn-port "
        "download voc-fcn8s -o weights/ && fcn-port convert weights/fcn8s-heavy-pascal.caffemodel"),
    "taskset -c 1 python -m fcn_port.reproduce.demo.recipe OUT --install models/data": Cmd(
        ("OUT/demo.json", "OUT/heldout.png"), "checkout", why="13 minutes of training; the "
        "stand-in runs the recipe for 3 iterations on 8 images and installs nothing",
        instead="taskset -c 1 python -m fcn_port.reproduce.demo.recipe OUT --iters 3 --train 8 "
        "--val 4"),
    # ---- README: usage
    "fcn-port convert fcn8s-heavy-pascal.caffemodel -o voc-fcn8s.pt": Cmd(("voc-fcn8s.pt",)),
    "fcn-port infer voc-fcn8s.pt image.jpg -o out/":
        Cmd(("out/image.png", "out/image_overlay.png")),
    "fcn-port convert fcn8s-heavy-pascal.caffemodel -o voc-fcn8s.safetensors":
        Cmd(("voc-fcn8s.safetensors",)),
    "fcn-port surgery transplant VGG_ILSVRC_16_layers.caffemodel --net voc-fcn32s -o "
    "vgg16-fcn.caffemodel": Cmd(("vgg16-fcn.caffemodel",)),
    "fcn-port surgery transplant voc-fcn32s.caffemodel --net voc-fcn16s -o start16s.caffemodel":
        Cmd(("start16s.caffemodel",)),
    "fcn-port export voc-fcn8s.pt -o voc-fcn8s.caffemodel --prototxt deploy.prototxt":
        Cmd(("voc-fcn8s.caffemodel", "deploy.prototxt")),
    "fcn-port surgery expand-score voc-fcn8s.caffemodel --classes 25 -o wide.caffemodel":
        Cmd(("wide.caffemodel",)),
    "fcn-port surgery color-d VGG_ILSVRC_16_layers.caffemodel --net nyud-fcn32s-color-d -o "
    "color-d.caffemodel": Cmd(("color-d.caffemodel",)),
    "fcn-port inspect voc-fcn8s.caffemodel": Cmd(),
    "fcn-port inspect VGG_ILSVRC_16_layers.caffemodel": Cmd(),
    "fcn-port inspect train.prototxt solver.prototxt snapshot/train_iter_4000.solverstate": Cmd(),
    "fcn-port inspect --json X.caffemodel": Cmd(),
    "fcn-port net voc-fcn32s --split train --solver -o voc-fcn32s/":
        Cmd(("voc-fcn32s/train.prototxt", "voc-fcn32s/val.prototxt",
             "voc-fcn32s/solver.prototxt")),
    "fcn-port train --solver voc-fcn32s/solver.prototxt --weights vgg16-fcn.caffemodel "
    "--batches b.npz": Cmd(("snapshot/train_iter_1.caffemodel",
                            "snapshot/train_iter_1.solverstate"), why=DAYS,
                           instead="fcn-port train --solver voc-fcn32s/solver.prototxt "
                           "--weights vgg16-fcn.caffemodel --batches b.npz --max-iter 1"),
    "fcn-port train --solver voc-fcn32s/solver.prototxt --snapshot "
    "snapshot/train_iter_4000.solverstate --batches b.npz":
        Cmd(("snapshot/train_iter_2.caffemodel",), why=DAYS + " (resuming the snapshot the line "
            "above made)", instead="fcn-port train --solver voc-fcn32s/solver.prototxt "
            "--snapshot snapshot/train_iter_1.solverstate --batches b.npz --max-iter 2"),
    "fcn-port train --solver voc-fcn32s/solver.prototxt --weights vgg16-fcn.caffemodel "
    "--batches b.npz --procs 2": Cmd(("snapshot/train_iter_1.caffemodel",), why=DAYS,
                                     instead="fcn-port train --solver "
                                     "voc-fcn32s/solver.prototxt --weights vgg16-fcn.caffemodel "
                                     "--batches b.npz --procs 2 --max-iter 1"),
    "fcn-port train --solver voc-fcn32s/solver.prototxt --weights vgg16-fcn.caffemodel "
    "--data-root data/": Cmd(("snapshot/train_iter_1.caffemodel",), why=DAYS,
                             instead="fcn-port train --solver voc-fcn32s/solver.prototxt "
                             "--weights vgg16-fcn.caffemodel --data-root data/ --max-iter 1"),
    "fcn-port eval voc-fcn8s.pt --dataset voc --root data/pascal/VOC2011": Cmd(),
    "fcn-port eval fcn8s-heavy-pascal.caffemodel --dataset voc --root VOC2011 --json --grid "
    "grid.png": Cmd(("grid.png",)),
    "fcn-port download --list": Cmd(),
    "fcn-port download voc-fcn8s -o weights/":
        Cmd(("weights/fcn8s-heavy-pascal.caffemodel", "weights/downloads.json"), why=NET,
            instead="FCN_PORT_MIRROR=$MIRROR fcn-port download voc-fcn8s -o weights/"),
    "fcn-port download voc2011 sbd seg11valid --extract -o data/":
        Cmd(why=NET + " (2 GB), and fcn-port checks VOC 2011's and SBD's published md5, which "
            "no local stand-in can match; tests/reproduce/test_download.py extracts stand-in "
            "archives with the check bypassed", instead=None),
    "fcn-port download vgg16 -o ilsvrc-nets/":
        Cmd(("ilsvrc-nets/VGG_ILSVRC_16_layers.caffemodel",), why=NET,
            instead="FCN_PORT_MIRROR=$MIRROR fcn-port download vgg16 -o ilsvrc-nets/"),
    "fcn-port parity tests/data/oracle/layers/* tests/data/oracle/fcn/*": Cmd(where="checkout"),
    "fcn-port parity --json --rtol 2e-6 tests/data/oracle/fcn/voc-fcn8s":
        Cmd(where="checkout"),
    "bash reproduce/voc2011.sh --smoke":
        Cmd(("voc2011-run/results/results.md", "voc2011-run/results/curves.png",
             "voc2011-run/voc-fcn8s/voc-fcn8s.caffemodel"), "checkout"),
    "bash reproduce/voc2011.sh --work run --device cuda":
        Cmd(where="checkout", why=GPU_NET, instead=None),
    "bash reproduce/voc2011.sh --work run --device cuda --atonce":
        Cmd(where="checkout", why=GPU_NET, instead=None),
    "bash reproduce/voc2011.sh --work official --eval-official":
        Cmd(where="checkout", why=GPU_NET, instead=None),
    # ---- benchmarks/README.md
    "python benchmarks/caffemodel_read.py": Cmd(
        where="checkout", why=BENCH, instead="python benchmarks/caffemodel_read.py --runs 1 "
        "--no-processes --warm-mib 0"),
    "python benchmarks/caffemodel_read.py --runs 7": Cmd(
        where="checkout", why=BENCH + " (the line above)", instead=None),
    "python benchmarks/caffemodel_read.py --dir /tmp/fcnb --keep": Cmd(
        where="checkout", why=BENCH + " (the line above; --dir DIR --keep)", instead=None),
    "python benchmarks/caffemodel_read.py --json": Cmd(
        where="checkout", why=BENCH + " (the line above)", instead=None),
    "python benchmarks/caffemodel_read.py --warm-mib 0": Cmd(
        where="checkout", why=BENCH + " (the first line)", instead=None),
    "python benchmarks/caffemodel_read.py --only-processes --runs 5": Cmd(
        where="checkout", why=BENCH, instead="python benchmarks/caffemodel_read.py "
        "--only-processes --runs 1 --warm-mib 0 --json"),
    "python benchmarks/caffemodel_read.py --no-processes": Cmd(
        where="checkout", why=BENCH + " (the first line)", instead=None),
    "python benchmarks/fcn_forward.py": Cmd(
        where="checkout", why=BENCH, instead="python benchmarks/fcn_forward.py --size 64 64 "
        "--runs 1 --warmup 0 --no-compile --retries 0 --json --model voc-fcn32s"),
    "python benchmarks/fcn_forward.py --json": Cmd(
        where="checkout", why=BENCH + " (the line above)", instead=None),
    "python benchmarks/fcn_forward.py --no-compile --size 256 256 --model voc-fcn32s": Cmd(
        where="checkout", why=BENCH + " (the first line, with --model voc-fcn32s)",
        instead=None),
    "fcn-port bench --model voc-fcn8s --fast": Cmd(
        why=BENCH, instead="fcn-port bench --model voc-fcn8s --fast --size 64 64 --runs 1"),
    "python benchmarks/train_step.py": Cmd(
        where="checkout", why=BENCH, instead="python benchmarks/train_step.py --size 64 64 "
        "--runs 1 --warmup 0 --model voc-fcn32s"),
    "python benchmarks/train_step.py --runs 2 --json": Cmd(
        where="checkout", why=BENCH + " (the line above)", instead=None),
    "fcn-port bench --model voc-fcn8s --train [--fast] --json": Cmd(
        why="[--fast] is optional; " + BENCH, instead="fcn-port bench --model voc-fcn8s --train "
        "--fast --json --size 64 64 --runs 1"),
    # ---- fuzz/README.md
    "python fuzz/fuzz_readers.py --target all --runs 300": Cmd(
        where="checkout", why="CI's tests/port/formats fuzz runs these targets", instead=
        "python fuzz/fuzz_readers.py --target all --runs 20"),
    "python fuzz/fuzz_readers.py --target caffemodel --runs 30000 --seed 1 --json": Cmd(
        where="checkout", why="30,000 inputs take minutes", instead="python "
        "fuzz/fuzz_readers.py --target caffemodel --runs 50 --seed 1 --json"),
    "python fuzz/fuzz_readers.py --target prototxt --engine atheris --runs 20000": Cmd(
        where="checkout", why="needs atheris (pip install atheris), not a dependency",
        instead=None),
    "python fuzz/fuzz_readers.py --target prototxt --replay fuzz/corpus/prototxt": Cmd(
        where="checkout", why="fuzz/corpus is what a fuzzing run leaves (not committed); the "
        "stand-in replays a folder of the repository's prototxts", instead="python "
        "fuzz/fuzz_readers.py --target prototxt --replay reproduce/demo"),
    # ---- models/data/README.md
    "fcn-port convert": Cmd(("voc-fcn8s-demo.pt",)),
    "fcn-port infer voc-fcn8s-demo.pt": Cmd(("demo.png", "demo_overlay.png")),
}


# ---- what the docs assume a user has -----------------------------------------------------------

def _zeros_caffemodel(path, shapes, net=None):
    from fcn_port.port.formats.caffemodel import write_weights

    params = {}
    for key, shape in shapes.items():
        layer, _ = key.rsplit(".", 1)
        params.setdefault(layer, []).append(np.zeros(shape, np.float32))
    write_weights(params, path, net=net)


@functools.lru_cache(maxsize=None)
def _full_size(name, folder):
    """The official ``name`` (or ``vgg16``, VGG16's ILSVRC classifier) at full size with zero
    weights, as a V2 caffemodel, made once per folder."""
    from fcn_port import models
    from fcn_port.models.checkpoint import expected_shapes
    from fcn_port.reproduce.synthetic import base_net_param

    path = Path(folder) / f"{name}.caffemodel"
    if name == "vgg16":
        _zeros_caffemodel(path, _vgg16_shapes(), base_net_param())
    else:
        _zeros_caffemodel(path, expected_shapes(models.config(name)), models.deploy_net(name))
    return path


def _vgg16_shapes():
    widths, shapes, cin = (64, 128, 256, 512, 512), {}, 3
    for s, n in enumerate((2, 2, 3, 3, 3), 1):
        for i in range(1, n + 1):
            shapes[f"conv{s}_{i}.0"], shapes[f"conv{s}_{i}.1"] = (widths[s - 1], cin, 3, 3), \
                (widths[s - 1],)
            cin = widths[s - 1]
    for name, shape in (("fc6", (4096, 512 * 7 * 7)), ("fc7", (4096, 4096)), ("fc8", (1000, 4096))):
        shapes[f"{name}.0"], shapes[f"{name}.1"] = shape, (shape[0],)
    return shapes


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _voc_tree(dst, tmp):
    from fcn_port.reproduce.synthetic import make_dataset

    make_dataset(tmp, 4, 3, (64, 80), seed=0)
    shutil.copytree(Path(tmp) / "pascal" / "VOC2011", dst)


def _data_tree(dst):
    from fcn_port.reproduce.synthetic import make_dataset

    make_dataset(dst, 4, 3, (64, 80), seed=0)


def _net_files(folder, names):
    from fcn_port import models
    from fcn_port.models.spec import net_param, solver_param
    from fcn_port.port.formats.text import write_text

    cfg = models.config("voc-fcn32s")
    for name in names:
        write_text(solver_param(cfg) if name == "solver" else net_param(cfg, name),
                   folder / f"{name}.prototxt")


def _batches(path):
    rng = np.random.default_rng(0)
    np.savez(path, **{"it/0/data": rng.normal(0, 50, (1, 3, 64, 64)).astype(np.float32),
                      "it/0/label": rng.integers(0, 21, (1, 1, 64, 64)).astype(np.float32)})


def _tiny_deploy(path):
    """The deploy net of the bundled small voc-fcn8s (its widths read from its blobs)."""
    from fcn_port import models
    from fcn_port.models.spec import net_param
    from fcn_port.port.formats.caffemodel import read_weights
    from fcn_port.port.formats.text import write_text

    p = read_weights(FAST_FCN8S).params
    widths = [int(p[f"conv{s}_1"][0].shape[0]) for s in range(1, 6)]
    cfg = models.config("voc-fcn8s", widths=widths, fc=int(p["fc6"][0].shape[0]))
    write_text(net_param(cfg, "deploy"), path)


def _solverstate(path):
    src = ROOT / "tests" / "data" / "oracle" / "solver" / "sgd_step_itersize" / "snapshots"
    _link(src / "snap_iter_5.solverstate", path)


# (pattern of the name as the docs write it, what to make, how) - made before the first
# command or block that names it, unless the command makes it itself
INPUTS = [
    (r"fcn8s-heavy-pascal\.caffemodel", "fcn8s-heavy-pascal.caffemodel",
     lambda p, big: _link(FAST_FCN8S, p)),
    (r"voc-fcn8s\.caffemodel", "voc-fcn8s.caffemodel", lambda p, big: _link(FAST_FCN8S, p)),
    (r"X\.caffemodel", "X.caffemodel", lambda p, big: _link(FAST_FCN8S, p)),
    (r"voc-fcn8s\.pt", "voc-fcn8s.pt", lambda p, big: _cli(p.parent, "convert", FAST_FCN8S,
                                                            "-o", p.name)),
    (r"image\.jpg", "image.jpg", lambda p, big: _link(DEMO_IMAGE, p)),
    (r"a\.jpg", "a.jpg", lambda p, big: _link(DEMO_IMAGE, p)),
    (r"VGG_ILSVRC_16_layers\.caffemodel", "VGG_ILSVRC_16_layers.caffemodel",
     lambda p, big: _link(_full_size("vgg16", big), p)),
    (r"voc-fcn32s\.caffemodel", "voc-fcn32s.caffemodel",
     lambda p, big: _link(_full_size("voc-fcn32s", big), p)),
    (r"vgg16-fcn\.caffemodel", "vgg16-fcn.caffemodel",
     lambda p, big: _link(_full_size("voc-fcn32s", big), p)),
    (r"(?<![\w/])train\.prototxt", "train.prototxt", lambda p, big: _net_files(p.parent,
                                                                                ["train"])),
    (r"(?<![\w/])solver\.prototxt", "solver.prototxt", lambda p, big: _net_files(p.parent,
                                                                                  ["solver"])),
    (r"voc-fcn32s/solver\.prototxt", "voc-fcn32s",
     lambda p, big: (p.mkdir(), _net_files(p, ["train", "val", "solver"]))),
    (r"deploy\.prototxt", "deploy.prototxt", lambda p, big: _tiny_deploy(p)),
    (r"snapshot/train_iter_4000\.solverstate", "snapshot/train_iter_4000.solverstate",
     lambda p, big: _solverstate(p)),
    (r"(?<![\w/])train_iter_4000\.solverstate", "train_iter_4000.solverstate",
     lambda p, big: _solverstate(p)),
    (r"b\.npz", "b.npz", lambda p, big: _batches(p)),
    (r"(?<![\w/])data/", "data", lambda p, big: _data_tree(p)),
    (r"(?<![\w/])VOC2011(?![\w/])", "VOC2011", lambda p, big: _voc_tree(p, big / "voc-tmp")),
]


def _cli(folder, *argv):
    subprocess.run([str(BIN / "fcn-port"), *map(str, argv)], cwd=folder, check=True,
                   capture_output=True, env=_env())


def _make_inputs(text, folder, big, skip=()):
    for pattern, name, make in INPUTS:
        path = folder / name
        if name not in skip and not path.exists() and re.search(pattern, text):
            make(path, big)


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


def _env(**extra):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               OMP_NUM_THREADS="2", PYTHONDONTWRITEBYTECODE="1", **extra)
    env.pop("FCN_PORT", None)
    return env


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
