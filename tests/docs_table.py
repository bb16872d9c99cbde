"""The table of tests/test_docs.py: every shell command of the user-facing Markdown
(:data:`COMMANDS`: the files it must make, its exit status, and where it cannot run here, the
reason and the stand-in that runs instead) and the files the docs assume a user has
(:data:`INPUTS`, made before the first command that names them)."""
import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    "fcn-port parity tests/data/oracle/update/*": Cmd(where="checkout"),
    "fcn-port parity tests/data/oracle/zoo/googlenet tests/data/oracle/zoo/squeezenet_v1.1":
        Cmd(where="checkout"),
    "fcn-port parity --caffe-blas tests/data/oracle/zoo/resnet50": Cmd(where="checkout"),
    "fcn-port inspect tests/data/oracle/data/lmdb_raw_meanfile_crop/mean.binaryproto":
        Cmd(where="checkout"),
    "fcn-port codegen tests/data/oracle/fcn/voc-fcn8s/net.prototxt tests/data/oracle/fcn/"
    "voc-fcn8s/weights.caffemodel -o fcn8s.py --weights-out fcn8s.safetensors":
        Cmd(("fcn8s.py", "fcn8s.safetensors"), "checkout"),
    "python -m fcn_port.port.datalayers.example lenet-lmdb": Cmd(("lenet-lmdb/mnist_train_lmdb/data.mdb",)),
    "cd lenet-lmdb && fcn-port train --solver lenet_solver.prototxt":
        Cmd(("lenet-lmdb/snapshots/lenet_iter_200.caffemodel",)),
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
    "python benchmarks/caffe_step.py --caffe-python caffe-env/bin/python --pycaffe caffe/python":
        Cmd(where="checkout", why="needs a Caffe build (pycaffe), which the project runs without",
            instead=None),
    "python benchmarks/train_step.py --caffe-s 9.33": Cmd(
        where="checkout", why=BENCH, instead="python benchmarks/train_step.py --size 64 64 "
        "--runs 1 --warmup 0 --model voc-fcn32s --caffe-s 9.33"),
    "fcn-port bench --model voc-fcn8s --train [--fast] --json": Cmd(
        why="[--fast] is optional; " + BENCH, instead="fcn-port bench --model voc-fcn8s --train "
        "--fast --json --size 64 64 --runs 1"),
    "python benchmarks/peers.py": Cmd(
        where="checkout", why=BENCH, instead="python benchmarks/peers.py --size 64 64 --runs 1 "
        "--model voc-fcn32s"),
    "python benchmarks/peers.py --json": Cmd(
        where="checkout", why=BENCH + " (the line above)", instead=None),
    "fcn-port bench --model voc-fcn8s --peers": Cmd(
        why=BENCH, instead="fcn-port bench --model voc-fcn8s --peers --size 64 64 --runs 1"),
    "bash benchmarks/device_check.sh": Cmd(
        where="checkout", why="needs a CUDA device (exit 2 without one); the --dry-run line "
        "below runs every section on the CPU", instead=None),
    "bash benchmarks/device_check.sh --dry-run": Cmd(("device_check.json",), "checkout"),
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
    "fcn-port infer voc-fcn8s-demo.pt --backend fast -o out/": Cmd(("out/demo.png",)),
    "fcn-port infer voc-fcn8s-demo.pt --backend openvino -o out/": Cmd(
        ("out/demo.png",), why="needs the [bench] extra (openvino, onnx), which .ci/run does not "
        "install; tests/models/deploy/test_backend.py runs both peers where they are installed",
        instead=None),
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
_ORACLE_FCN8S = ROOT / "tests" / "data" / "oracle" / "fcn" / "voc-fcn8s"
INPUTS = [
    (r"from fcn8s import", "fcn8s.py", lambda p, big: _cli(
        p.parent, "codegen", _ORACLE_FCN8S / "net.prototxt", _ORACLE_FCN8S / "weights.caffemodel",
        "-o", "fcn8s.py", "--weights-out", "fcn8s.safetensors")),
    (r"fcn8s-heavy-pascal\.caffemodel", "fcn8s-heavy-pascal.caffemodel",
     lambda p, big: _link(FAST_FCN8S, p)),
    (r"voc-fcn8s\.caffemodel", "voc-fcn8s.caffemodel", lambda p, big: _link(FAST_FCN8S, p)),
    (r"X\.caffemodel", "X.caffemodel", lambda p, big: _link(FAST_FCN8S, p)),
    (r"voc-fcn8s\.pt", "voc-fcn8s.pt", lambda p, big: _cli(p.parent, "convert", FAST_FCN8S,
                                                            "-o", p.name)),
    (r"voc-fcn8s-demo\.pt", "voc-fcn8s-demo.pt", lambda p, big: _cli(p.parent, "convert")),
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


def _env(**extra):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               OMP_NUM_THREADS="2", PYTHONDONTWRITEBYTECODE="1", **extra)
    env.pop("FCN_PORT", None)
    return env
