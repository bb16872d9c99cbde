#!/usr/bin/env python
"""Real Caffe's training step on this machine: the baseline of ``train_step.py``'s target.

    python benchmarks/caffe_step.py --caffe-python PY [--pycaffe DIR] [--runs 3] [--json]

The net is the official voc-fcn8s train net as fcn-port writes it (``models.net_param``), its
Python data layer replaced by an Input layer of a 1 x 3 x 500 x 500 image and its label (random,
seeded), the convolutions filled with ``msra`` (the time does not depend on the values); the
solver has the official values (SGD, lr 1e-14 fixed, momentum 0.99, weight decay 5e-4). ``PY``
is a Python that can ``import caffe`` (with ``--pycaffe``: that folder put on its
``PYTHONPATH``). One untimed ``solver.step(1)``, then the median of ``--runs``, with
``OPENBLAS_NUM_THREADS`` and ``OMP_NUM_THREADS`` set to torch's thread count. Give the result
to ``train_step.py --caffe-s`` for a same-day ratio.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from google.protobuf import text_format

from fcn_port import models
from fcn_port.port.formats.proto import caffe_pb2

SOLVER = """net: "{net}"
base_lr: 1e-14
lr_policy: "fixed"
momentum: 0.99
weight_decay: 0.0005
max_iter: 100000
display: 0
solver_mode: CPU
"""

TIMER = """
import json, statistics, sys, time
import numpy as np
import caffe
caffe.set_mode_cpu()
solver = caffe.SGDSolver(sys.argv[1])
rng = np.random.default_rng(0)
solver.net.blobs["data"].data[...] = rng.normal(0, 50, solver.net.blobs["data"].data.shape)
solver.net.blobs["label"].data[...] = rng.integers(0, 21, solver.net.blobs["label"].data.shape)
solver.step(1)
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    solver.step(1)
    times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "runs": times}))
"""


def write_net(folder, model="voc-fcn8s", size=(500, 500)):
    """The train net (Input instead of the Python data layer) and its solver; the solver's path."""
    net = models.net_param(models.build(model).cfg, "train")
    data = caffe_pb2.LayerParameter(name="data", type="Input", top=["data", "label"])
    data.input_param.shape.add().dim.extend([1, 3, *size])
    data.input_param.shape.add().dim.extend([1, 1, *size])
    net.layer[0].CopyFrom(data)
    for lp in net.layer:
        if lp.type == "Convolution":
            lp.convolution_param.weight_filler.type = "msra"
    net_path, solver_path = (os.path.join(folder, n) for n in ("train.prototxt",
                                                                "solver.prototxt"))
    with open(net_path, "w") as f:
        f.write(text_format.MessageToString(net))
    with open(solver_path, "w") as f:
        f.write(SOLVER.format(net=net_path))
    return solver_path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--caffe-python", required=True, metavar="PY",
                    help="a Python that can import caffe")
    ap.add_argument("--pycaffe", metavar="DIR", help="put DIR on that Python's PYTHONPATH")
    ap.add_argument("--model", default="voc-fcn8s")
    ap.add_argument("--size", nargs=2, type=int, default=[500, 500], metavar=("H", "W"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    threads = str(torch.get_num_threads())
    env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads,
               GLOG_minloglevel="2")
    if args.pycaffe:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.pycaffe,
                                                          env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="fcn-port-caffe-step-") as folder:
        solver = write_net(folder, args.model, tuple(args.size))
        run = subprocess.run([args.caffe_python, "-c", TIMER, solver, str(args.runs)],
                             env=env, capture_output=True, text=True)
    if run.returncode:
        print(f"caffe_step: {args.caffe_python} failed:\n{run.stderr[-2000:]}", file=sys.stderr)
        return 1
    report = {**json.loads(run.stdout.strip().splitlines()[-1]), "model": args.model,
              "size": args.size, "threads": int(threads)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"real Caffe, {args.model} at {args.size[0]} x {args.size[1]}, {threads} thread(s): "
              f"median {report['median_s']:.3f} s, min {report['min_s']:.3f} s over "
              f"{args.runs} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
