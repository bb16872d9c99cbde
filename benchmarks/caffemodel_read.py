#!/usr/bin/env python
"""caffemodel -> torch.save: fcn-port against the obvious protobuf approach.

    python benchmarks/caffemodel_read.py [--runs 5] [--dir DIR [--keep]] [--json]

Writes a full-size VOC FCN-8s caffemodel (134,489,759 random float32 parameters, 538 MB,
written by ``write_weights`` with the official net's header; ``_fcn8s.py``), then times each
approach in a fresh Python process, so that each has its own peak RSS (``_child.py``):

  (a)       baseline  ``NetParameter.ParseFromString(f.read())``, ``np.array(blob.data)`` per
                      blob, ``torch.from_numpy``, ``torch.save(state, path)``
  (b)       fcn-port  ``read_weights(path)``, ``torchsave.save(weights.state_dict(), path)``
  (b_torch) fcn-port  ``read_weights(path)``, plain ``torch.save`` (what (b) replaces)
  (c)       fcn-port  ``read_weights(path)`` alone

Then (unless --no-processes; ``_processes.py``) the whole commands, spawn to exit: the naive
script (``_naive.py``), ``fcn-port convert -o x.pt`` and ``fcn-port convert -o x.safetensors``.

Seconds run from after the imports to the return of the save (outputs stay in the page cache,
not fsynced, by all). An untimed first run of each saving approach warms the page cache and
checks that the outputs hold the same tensors as (a)'s and that their CRCs are right. Runs are
interleaved, each after touching and freeing ``--warm-mib`` of memory in a throwaway process
(so every approach starts from the same memory state: see Pitfalls in README.md); the best of
``--runs`` is reported (and the median). Exit status 0 when a target is missed (this is a
measurement), 1 when the outputs disagree or a step fails.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import _child
import _processes
import _report

MODEL = "voc-fcn8s-random.caffemodel"

# The driver never imports numpy or torch: Linux charges a child's ru_maxrss with the parent's
# peak when the parent exec's it (vfork), so the parent must stay small for the figures to hold.


def _spawn(args, what):
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _log(quiet, msg):
    print(msg, file=sys.stderr if quiet else sys.stdout, flush=True)


def _output(folder, name):
    """``<folder>/<name>/out.pt``: one file name for all, as torch.save records it inside."""
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    return os.path.join(folder, name, "out.pt")


def _cpu_jiffies():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _warm(mib):
    """Touch and free ``mib`` MiB in a throwaway process, so that the run that follows finds
    memory the host has just backed (see Pitfalls in README.md): every approach then starts
    from the same state, the one in which the baseline is quickest."""
    if mib:
        code = f"import numpy; a = numpy.ones({mib} << 20, numpy.uint8); print(int(a[::4096].sum()))"
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def _run(name, model, out, keep_output=False, warm_mib=0):
    """One fresh process. Its output is deleted unless kept: each run writes a new file, since
    truncating an existing one makes ext4 (auto_da_alloc) start writeback on close. Records
    how busy the machine was besides (``others_cpu``: share of all CPUs, over the process)."""
    _warm(warm_mib)
    busy0, total0 = _cpu_jiffies()
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = _spawn(["--child", name, "--model", model, "--out", out], f"approach {name}")
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, total1 = _cpu_jiffies()
    own = (own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime) * os.sysconf("SC_CLK_TCK")
    result["others_cpu"] = max(0.0, (busy1 - busy0 - own) / max(1, total1 - total0))
    if not keep_output and os.path.exists(out):
        os.unlink(out)
    return result


def _verify(model, folder, expected, quiet):
    """Untimed first runs of the saving approaches (warming the page cache); compare to (a)."""
    outs = {name: _output(folder, name) for name in _child.SAVES}
    for name in _child.SAVES:
        _run(name, model, outs[name], keep_output=True)
    others = [outs[n] for n in _child.SAVES if n != "a"]
    check = _spawn(["--child", "verify", "--model", outs["a"], "--out",
                    json.dumps({"others": others, **expected})], "verification")
    for path in outs.values():
        os.unlink(path)
    if check["problems"]:
        raise SystemExit("VERIFICATION FAILED: outputs differ from the baseline's:\n  "
                         + "\n  ".join(check["problems"]))
    same = [n for n, s in zip(_child.SAVES[1:], check["identical"]) if s]
    text = (f"{', '.join(_child.SAVES[1:])} hold the tensors of (a) (same keys and order, "
            "torch.equal), zipfile finds every CRC right; "
            + (f"{', '.join(same)} byte-identical to (a)'s file" if same else "files not byte-identical"))
    _log(quiet, f"  verified: {text}")
    return text


def _timed(runs, model, folder, warm_mib, quiet):
    results = {name: [] for name in _child.APPROACHES}
    for i in range(runs):  # interleaved, so that drifts (load, writeback) hit all alike
        for name in _child.APPROACHES:
            r = _run(name, model, _output(folder, name), warm_mib=warm_mib)
            results[name].append(r)
            _log(quiet, f"  run {i + 1}/{runs} {name:8s} {r['seconds']:7.3f} s  "
                        f"peak RSS {r['maxrss_kib'] / 1024:7.1f} MiB  "
                        f"other processes {r['others_cpu']:4.0%} of the CPUs")
    return results


def _measure(args, folder, model):
    started = time.perf_counter()
    quiet = args.json
    env = _report.environment()
    made = _spawn(["--child", "make", "--model", model, "--seed", str(args.seed)]
                  + (["--keep"] if args.keep else []), "writing the caffemodel")
    size = made["size"]
    _log(quiet, f"{model}: {size:,} bytes ({size / _report.MIB:.1f} MiB), {made['params']:,} float32 "
                "parameters, " + ("reused" if made["reused"] else f"written in {made['seconds']:.1f} s"))
    report = {}
    if not args.only_processes:
        verified = _verify(model, folder, {"keys": made["keys"], "params": made["params"]}, quiet)
        timed = _timed(args.runs, model, folder, args.warm_mib, quiet)
        rows = {n: _report.summary(timed[n], size) for n in _child.APPROACHES}
        report = _in_process(rows, verified)
    if not args.no_processes:
        checked = _processes.verify(model, folder)
        _log(quiet, f"  verified: {checked}")
        report["processes"] = _processes.measure(
            model, folder, args.runs, lambda: _warm(args.warm_mib), lambda m: _log(quiet, m))
        report["processes_verified"] = checked
    return {
        "environment": env,
        "caffemodel": {"path": model, "bytes": size, "mib": size / _report.MIB,
                       "params": made["params"], "reused": made["reused"]},
        "runs": args.runs,
        "warm_mib": args.warm_mib,
        **report,
        "total_s": time.perf_counter() - started,
    }


def _in_process(rows, verified):
    return {
        "approaches": {n: {"what": _child.APPROACHES[n], **rows[n]} for n in rows},
        "targets": _report.targets(rows),
        "verified": verified,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed runs per approach (best is kept)")
    p.add_argument("--dir", help="where the caffemodel and outputs go (default: a temp dir)")
    p.add_argument("--keep", action="store_true",
                   help="keep the caffemodel afterwards, and reuse it if present with the right size")
    p.add_argument("--seed", type=int, default=0, help="random weights' seed")
    p.add_argument("--warm-mib", type=int, default=3072,
                   help="before each timed run, touch and free this much memory (0: do not)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--no-processes", action="store_true",
                   help="skip the whole-process timings (naive script, convert -o .pt / .safetensors)")
    p.add_argument("--only-processes", action="store_true",
                   help="only the whole-process timings")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child == "make":
        return _child.make(args.model, args.keep, args.seed)
    if args.child == "verify":
        spec = json.loads(args.out)
        return _child.verify(args.model, spec["others"], spec["keys"], spec["params"])
    if args.child:
        return _child.run(args.child, args.model, args.out)
    if args.runs < 1:
        p.error("--runs must be at least 1")

    own_dir = args.dir is None
    folder = tempfile.mkdtemp(prefix="fcn-port-bench-") if own_dir else os.path.abspath(args.dir)
    os.makedirs(folder, exist_ok=True)
    model = os.path.join(folder, MODEL)
    try:
        report = _measure(args, folder, model)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            if "approaches" in report:
                _report.print_report(report, _child.APPROACHES)
            if "processes" in report:
                _processes.print_table(report["processes"], report["caffemodel"]["mib"])
                print(f"verified: {report['processes_verified']}")
    finally:
        for name in (*_child.APPROACHES, "proc"):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
        if args.keep:
            _log(args.json, f"kept {model} (reuse it with --dir {folder} --keep)")
        elif own_dir:
            shutil.rmtree(folder, ignore_errors=True)
        elif os.path.exists(model):
            os.unlink(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
