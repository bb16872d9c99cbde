#!/usr/bin/env python
"""fcn-port's forward pass against the runtimes a user would pick instead.

    python benchmarks/peers.py [--model voc-fcn8s] [--size 500 500] [--runs 7] [--json]

One process, one model (the official net with seeded random He-normal weights), one input:
fcn-port eager, fcn-port's fast path (``fast_model``: the blank margins, conv+ReLU fused,
channels-last), ONNX Runtime and OpenVINO (float32) on fcn-port's own ONNX export, timed
interleaved (see ``fcn_port.models.deploy.peers``), glibc keeping freed memory for all. It
prints each one's median and min and its error against eager, and the target: the fast path at
least 1.2x quicker than the best peer, within 1e-5 of eager. The exit status is 0 when the
target is missed (it prints MISSED): this is a measurement. A peer that is not installed is
reported as such (``pip install 'fcn-port[bench]'``). About 1.5 minutes at 500 x 500 on 2 cores.
"""
import argparse
import datetime
import json
import os
import sys

import torch

from fcn_port import models
from fcn_port.models.deploy import bench as B
from fcn_port.models.deploy.peers import compare, table

TARGET, RTOL = 1.2, 1e-5


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="voc-fcn8s")
    ap.add_argument("--size", nargs=2, type=int, default=[500, 500], metavar=("H", "W"))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    B.keep_freed_memory()
    model = B.random_weights(models.build(args.model), seed=0)
    report = compare(model, args.size, args.runs,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
    fast = report["runtimes"][f"fast ({report['fast_path']})"]
    ratio = report.get("fast_vs_best_peer")
    report.update(model=args.model, date=datetime.datetime.now().isoformat(timespec="seconds"),
                  torch=torch.__version__, cpus=os.cpu_count(), load=os.getloadavg(),
                  target=TARGET, met=bool(ratio and ratio >= TARGET
                                          and fast["error_vs_eager"] <= RTOL))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.model} at {args.size[0]} x {args.size[1]}, {report['threads']} thread(s), "
          f"median of {args.runs}, interleaved")
    print("\n".join(table(report)))
    if ratio is None:
        print("no peer installed: pip install 'fcn-port[bench]'")
    else:
        print(f"fast path vs the best peer ({report['best_peer']}): {ratio:.2f}x; target "
              f">= {TARGET}x within {RTOL:g}: {'MET' if report['met'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
