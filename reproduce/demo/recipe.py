"""How the bundled demo model was made, as a script anyone can run again.

    taskset -c 1 python -m fcn_port.reproduce.demo.recipe OUT [--iters N] [--install DIR]

The official VOC recipe (``shared/FCN_FACTS.md`` §1; ``voc-fcn32s/solve.py`` and the staged
16s / 8s ones) transplants VGG16's ILSVRC weights into the FCN train net
(``surgery.transplant``, then ``surgery.interp`` on the ``up`` layers), trains with ``SGDSolver``
on SBD ``train`` and scores on ``seg11valid`` with ``score.seg_tests``. This script does the same
steps with fcn-port's own commands, each run as ``python -m fcn_port.cli ...`` and printed, so
the printed lines are the recipe:

1. ``fcn-port synthetic OUT/data`` with the base net: generated SBD / VOC
   trees (:mod:`fcn_port.reproduce.synthetic`) and a random VGG16-layout base net;
2. ``fcn-port net voc-fcn8s --split train|val --widths .. --fc ..``: the official nets, reduced
   width, and this folder's ``solver.prototxt`` next to them;
3. ``fcn-port surgery transplant BASE --net train.prototxt``: the official transplant (fc6 / fc7
   coerced into convolutions, fc8 dropped, ``up`` layers bilinear);
4. ``fcn-port train --solver solver.prototxt --weights init.caffemodel --data-root OUT/data``;
5. scoring of the last snapshot on the held-out split with :mod:`fcn_port.reproduce.score`
   (score.py's metrics), ``OUT/demo.json`` and a picture of held-out predictions,
   ``OUT/heldout.png``.

Where we differ from the official recipe, on purpose: the data (generated shapes, not SBD /
VOC); the base net is random, not trained on ImageNet; voc-fcn8s is trained in one stage from
the base net (the official one goes 32s -> 16s -> 8s, each from the last); and the solver
(``solver.prototxt`` says how: Adam at 1e-3, 3000 iterations, instead of SGD at 1e-14 with
momentum 0.99 for 100,000). Everything else (the nets, layer names, the unnormalized loss, batch
1, the data layers' order from seed 1337, the transplant) is the official one.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
WIDTHS = (8, 16, 32, 64, 64)
FC = 128
SIZE = (120, 160)
N_TRAIN, N_VAL = 600, 50
DEMO_NAME = "voc-fcn8s-demo"


def run(argv, cwd=None, log=print):
    """Run one step as a child process (``fcn-port`` is ``python -m fcn_port.cli``)."""
    shown = ["fcn-port", *argv[2:]] if argv[:2] == ["-m", "fcn_port.cli"] else ["python", *argv]
    log(("(cd %s && " % cwd if cwd else "") + " ".join(map(str, shown)) + (")" if cwd else ""))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=env, check=True)


def cli(*args):
    return ["-m", "fcn_port.cli", *args]


def prepare(out, *, n_train=N_TRAIN, n_val=N_VAL, size=SIZE, widths=WIDTHS, fc=FC, seed=SEED,
            iters=None, log=print):
    """Steps 1-3: data, base net, nets + solver, transplant. Returns the net folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w = [str(v) for v in widths]
    run(cli("synthetic", out / "data", "--train", n_train, "--val", n_val,
         "--size", *size, "--seed", seed, "--base", out / "base.caffemodel", "--widths", *w,
         "--fc", fc), log=log)
    nets = out / "voc-fcn8s"
    for split in ("train", "val"):
        run(cli("net", "voc-fcn8s", "--split", split, "--widths", *w, "--fc", fc, "-o", nets),
            log=log)
    solver = (HERE / "solver.prototxt").read_text()
    solver = solver.replace("test_iter: 50", f"test_iter: {n_val}")
    if iters is not None:
        solver = solver.replace("max_iter: 3000", f"max_iter: {iters}")
    _write(nets / "solver.prototxt", solver.encode())
    log(f"cp {HERE / 'solver.prototxt'} {nets / 'solver.prototxt'}")
    run(cli("surgery", "transplant", out / "base.caffemodel", "--net", nets / "train.prototxt",
            "-o", out / "init.caffemodel"), log=log)
    return nets


def train(out, nets, log=print):
    """Step 4; returns (last snapshot, wall seconds, CPU seconds of the training process)."""
    import resource

    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run(cli("train", "--solver", "solver.prototxt", "--weights", Path(out).resolve() /
            "init.caffemodel", "--data-root", Path(out).resolve() / "data"), cwd=nets, log=log)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    snaps = sorted((nets / "snapshot").glob("train_iter_*.caffemodel"),
                   key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return snaps[-1], seconds, cpu


def evaluate(weights, voc_dir, n_show=6):
    """Score ``weights`` on the held-out seg11valid split: (metrics as
    :meth:`~fcn_port.reproduce.score.Confusion.metrics`, [(id, gt, pred)] of the first
    ``n_show``)."""
    import torch

    from ...models import load
    from ...models.infer import predict
    from ..score import Confusion
    from ..voc import VOCSeg

    net = load(str(weights)).eval()
    reader = VOCSeg(voc_dir, "seg11valid")
    conf, shown = Confusion(21), []
    for i, name in enumerate(reader.ids):
        gt = reader.label(i)[0, 0].astype(np.int64)
        pred = predict(net, torch.from_numpy(reader.image(i)))[0].numpy()
        conf.add(gt, pred)
        if i < n_show:
            shown.append((name, gt, pred))
    return conf.metrics(), shown


def heldout_png(shown, voc_dir, path):
    """Rows of image | ground truth | prediction, VOC colours (void in its colour)."""
    from PIL import Image

    from ...models.preprocess import open_rgb
    from ...models.vis import color_seg
    from ...port.fileio import atomic_output

    rows = []
    for name, gt, pred in shown:
        rgb = np.array(open_rgb(Path(voc_dir) / "JPEGImages" / f"{name}.jpg"))
        rows.append(np.concatenate([rgb, color_seg(gt), color_seg(pred)], 1))
    with atomic_output(path) as f:
        Image.fromarray(np.concatenate(rows, 0)).save(f, format="PNG")


def pick_demo(voc_dir):
    """The held-out id whose ground truth shows the most classes (the first of those)."""
    from ..voc import VOCSeg

    reader = VOCSeg(voc_dir, "seg11valid")
    counts = [len(set(np.unique(reader.label(i))) - {0, 255}) for i in range(len(reader.ids))]
    return reader.ids[int(np.argmax(counts))]


def install(out, snapshot, demo_id, report, into):
    """Copy the model, the demo image, its label PNG, the report and the held-out picture
    into ``into``."""
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    voc = Path(out) / "data" / "pascal" / "VOC2011"
    copies = [(snapshot, f"{DEMO_NAME}.caffemodel"), (voc / "JPEGImages" / f"{demo_id}.jpg",
                                                      "demo.jpg"),
              (voc / "SegmentationClass" / f"{demo_id}.png", "demo_gt.png")]
    if (Path(out) / "heldout.png").is_file():
        copies.append((Path(out) / "heldout.png", "heldout.png"))
    for src, name in copies:
        _write(into / name, Path(src).read_bytes())
    _write(into / "demo.json", (json.dumps(report, indent=1) + "\n").encode())


def _write(path, data):
    """``data`` into ``path``, whole or not at all."""
    from ...port.fileio import atomic_output

    with atomic_output(path) as f:
        f.write(data)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fcn_port.reproduce.demo.recipe", description=(
        "Remake the bundled demo model: generated data, a random VGG16-layout base net, the "
        "official voc-fcn8s nets at widths 8 16 32 64 64 / fc 128, the official transplant, "
        "fcn-port train with reproduce/demo/solver.prototxt, held-out scoring. Run it on one "
        "core (taskset -c N) to compare the time with models/data/README.md."))
    p.add_argument("out", metavar="OUT", help="work folder (created)")
    p.add_argument("--iters", type=int, help="max_iter instead of the solver's 3000")
    p.add_argument("--train", type=int, default=N_TRAIN, help=f"train images ({N_TRAIN})")
    p.add_argument("--val", type=int, default=N_VAL, help=f"held-out images ({N_VAL})")
    p.add_argument("--install", metavar="DIR", help=(
        "copy the model, demo.jpg, demo_gt.png and demo.json there (models/data to replace "
        "the bundled ones)"))
    args = p.parse_args(argv)
    out = Path(args.out)
    nets = prepare(out, n_train=args.train, n_val=args.val, iters=args.iters)
    snapshot, seconds, cpu = train(out, nets)
    voc = out / "data" / "pascal" / "VOC2011"
    metrics, shown = evaluate(snapshot, voc)
    heldout_png(shown, voc, out / "heldout.png")
    demo_id = pick_demo(voc)
    from ..score import VOC_CLASSES

    report = {"seed": SEED, "widths": list(WIDTHS), "fc": FC, "size": list(SIZE),
              "train_images": args.train, "val_images": args.val,
              "iterations": int(snapshot.stem.rsplit("_", 1)[1]), "train_seconds": round(seconds),
              "train_cpu_seconds": round(cpu),
              "snapshot": str(snapshot.relative_to(out)), "demo_id": demo_id,
              "heldout": {k: metrics[k] for k in ("overall_acc", "mean_acc", "mean_iu",
                                                  "fwavacc")},
              "heldout_iu": {VOC_CLASSES[c]: round(float(v), 4)
                             for c, v in enumerate(metrics["iu"]) if v == v}}
    _write(out / "demo.json", (json.dumps(report, indent=1) + "\n").encode())
    print(json.dumps(report, indent=1))
    if args.install:
        install(out, snapshot, demo_id, report, args.install)
        print(f"installed into {args.install}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
