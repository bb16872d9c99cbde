"""Coverage-guided fuzzing of fcn-port's readers: binary caffemodel / solverstate (the hand
written wire scanner, BlobProto and protobuf), HDF5 caffemodel headers, and prototxt text.

    python fuzz/fuzz_readers.py --target caffemodel --runs 30000            # built-in engine
    python fuzz/fuzz_readers.py --target prototxt --engine atheris --runs 30000
    python fuzz/fuzz_readers.py --target all --runs 300 --json               # what CI runs

A finding is any exception other than :class:`fcn_port.port.errors.FcnPortError`, an input
that takes longer than ``--time-limit`` seconds, or one that grows the process's peak memory by
more than ``--mem-limit`` MB. Each is saved under ``fuzz/findings/`` (input + traceback). The
time limit is a budget, enforced: an input still running when it runs out is interrupted
(``SIGALRM``) and is a finding, so a hang or a quadratic loop cannot stall the run.

Engines. ``mutate`` (the default, pure Python) starts from small valid seeds (the oracle's
tiny caffemodel, solverstate, prototxts; an HDF5 file written from them) and applies
structure-aware mutations (bit flips, interesting bytes, varint overwrites with huge and
negative lengths, chunk delete / duplicate / splice, truncation; word swaps and line edits for
text). It is coverage-guided: every input runs under ``sys.settrace`` counting lines of
``fcn_port/port`` and an input that reaches a new line joins the corpus. ``atheris`` runs
libFuzzer on the same targets (``atheris.instrument_imports``: edge coverage of fcn_port's
Python code; the C code of protobuf / libhdf5 is not instrumented), with libFuzzer's own
mutations, and line coverage is measured afterwards by replaying its corpus.
"""
import argparse
import hashlib
import json
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORACLE = REPO / "tests" / "data" / "oracle"
FINDINGS = Path(__file__).resolve().parent / "findings"
TARGETS = ("caffemodel", "solverstate", "hdf5", "prototxt", "solver")
WATCH = str(REPO / "port")  # line coverage is counted in these files
_TMP = Path(tempfile.mkdtemp(prefix="fcn-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


# ----------------------------------------------------------------------------- targets

def _write(data, suffix):
    path = _TMP / f"input{suffix}"
    path.write_bytes(data)
    return path


def run_caffemodel(data):
    from fcn_port.port.formats.caffemodel import read_weights
    w = read_weights(_write(data, ".caffemodel"))
    w.nonfinite()


def run_solverstate(data):
    from fcn_port.port.formats.solverstate import read_solverstate
    read_solverstate(_write(data, ".solverstate"))


def run_hdf5(data):
    from fcn_port.port.formats.caffemodel import read_weights
    read_weights(_write(data, ".caffemodel.h5"))


def run_prototxt(data):
    from fcn_port.port.formats import text
    from fcn_port.port.formats.netcheck import check_net
    from fcn_port.port.formats.report import inspect_file
    inspect_file(_write(data, ".prototxt"))
    net, _ = text.read_net(_write(data, ".prototxt"))
    check_net(net, {"Convolution", "ReLU", "Input", "Pooling"})
    text.to_text(net)


def run_solver(data):
    from fcn_port.port.formats import text
    text.read_solver(_write(data, ".prototxt"))


RUN = {t: globals()[f"run_{t}"] for t in TARGETS}


def seeds(target):
    """Small valid files of each kind (bytes)."""
    lr = ORACLE / "solver" / "lr_exp"
    if target == "caffemodel":
        out = [(lr / "init.caffemodel").read_bytes()]
        out.append(_shrunk(ORACLE / "formats" / "v1_legacy" / "weights.caffemodel"))
        out.append(_shrunk(REPO / "port" / "data" / "voc-fcn8s-tiny.caffemodel"))
        return out
    if target == "solverstate":
        return [(ORACLE / "solver" / "sgd_step_itersize" / "snapshots" /
                 "snap_iter_5.solverstate").read_bytes()]
    if target == "hdf5":
        return [_hdf5_seed()]
    if target == "prototxt":
        return [(lr / "train.prototxt").read_bytes(),
                (ORACLE / "formats" / "v1_legacy" / "net.prototxt").read_bytes()]
    return [(lr / "solver.prototxt").read_bytes(),
            (ORACLE / "solver" / "clip_l1" / "solver.prototxt").read_bytes()]


def _shrunk(path):
    """The file's net with every blob cut to a few values (same header, same layer kinds)."""
    import numpy as np
    from fcn_port.port.formats.caffemodel import read_weights, write_weights
    w = read_weights(path, upgrade=False)
    for name, blobs in w.params.items():
        w.params[name] = [np.resize(a, (1,) * (a.ndim - 1) + (2,)).astype(a.dtype) for a in blobs]
    w.legacy = {k for k in w.legacy if w.params[k[0]][k[1]].ndim == 4}
    out = _TMP / "seed.caffemodel"
    write_weights(w, out)
    return out.read_bytes()


def _hdf5_seed():
    import numpy as np
    from fcn_port.port.formats.hdf5 import write_hdf5_weights
    out = _TMP / "seed.caffemodel.h5"
    write_hdf5_weights({"conv1": [np.ones((2, 1, 1, 1), np.float32), np.zeros(2, np.float32)],
                        "score": [np.ones((1, 2), np.float32)]}, out)
    return out.read_bytes()


# ----------------------------------------------------------------------------- mutations

_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x08, 0x0A, 0x12, 0x22, 0x3A, 0xA2, 0x06]
_WORDS = [b"layer", b"layers", b"{", b"}", b"bottom:", b"top:", b"name:", b"type:", b'"x"',
          b"blobs", b"dim:", b"-1", b"1e309", b"nan", b"inf", b"convolution_param",
          b"include { phase: TRAIN }", b"ceil_mode: true", b"\"Convolution\"", b"999999999999",
          b"input: \"data\"", b"num_output:", b"'", b"\"", b"#", b"\\", b"\x00", b"\xff"]


def _varint(n):
    from fcn_port.port.formats.wire import varint

    return varint(n & ((1 << 64) - 1))


def mutate_bytes(data, rng, corpus):
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 6))):
        n = len(data)
        op = rng.randrange(9)
        at = rng.randrange(n) if n else 0
        if op == 0 and n:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            data[at] = rng.choice(_INTERESTING)
        elif op == 2:  # a varint: huge, negative, or off by a little
            v = rng.choice((1 << 62, (1 << 64) - 1, -1, 1 << 31, rng.randrange(1 << 14), n, n + 1))
            data[at:at + rng.randrange(1, 4)] = _varint(v)
        elif op == 3 and n:
            del data[at:at + rng.randrange(1, 64)]
        elif op == 4 and n:
            chunk = data[at:at + rng.randrange(1, 64)]
            data[at:at] = chunk * rng.randrange(1, 4)
        elif op == 5:
            other = rng.choice(corpus)
            a = rng.randrange(len(other) + 1)
            data[at:at] = other[a:a + rng.randrange(1, 256)]
        elif op == 6 and n:
            del data[rng.randrange(n):]
        elif op == 7:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 8 and n >= 4:  # rewrite a float as NaN / Inf / huge
            data[at:at + 4] = rng.choice((b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\xff\xff\x7f\x7f"))
    return bytes(data)


def mutate_text(data, rng, corpus):
    lines = data.split(b"\n")
    for _ in range(rng.choice((1, 1, 2, 4))):
        op = rng.randrange(6)
        i = rng.randrange(len(lines)) if lines else 0
        if op == 0 and lines:
            words = lines[i].split(b" ")
            words[rng.randrange(len(words))] = rng.choice(_WORDS)
            lines[i] = b" ".join(words)
        elif op == 1 and lines:
            del lines[i]
        elif op == 2 and lines:
            lines.insert(i, rng.choice(rng.choice(corpus).split(b"\n") or [b""]))
        elif op == 3:
            lines.insert(i, rng.choice(_WORDS) * rng.choice((1, 2, 50, 400)))
        elif op == 4 and lines:
            lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)]
        elif op == 5:
            return mutate_bytes(b"\n".join(lines), rng, corpus)
    return b"\n".join(lines)


# ----------------------------------------------------------------------------- the loop

class LineCoverage:
    """Lines of ``fcn_port/port`` reached, by sys.settrace (Python code only)."""

    def __init__(self):
        self.lines = set()
        self._new = 0

    def _local(self, frame, event, arg):
        if event == "line":
            key = (frame.f_code.co_filename, frame.f_lineno)
            if key not in self.lines:
                self.lines.add(key)
                self._new += 1
        return self._local

    def _global(self, frame, event, arg):
        return self._local if frame.f_code.co_filename.startswith(WATCH) else None

    def run(self, fn, data, budget=None):
        """Run ``fn(data)`` traced, interrupted after ``budget`` seconds (:class:`OverBudget`);
        return (new lines, exception or None)."""
        self._new = 0
        timed = budget is not None and hasattr(signal, "setitimer")
        if timed:
            old = signal.signal(signal.SIGALRM, _over_budget)
            signal.setitimer(signal.ITIMER_REAL, budget)
        sys.settrace(self._global)
        try:
            fn(data)
            error = None
        except BaseException as e:  # noqa: BLE001  (judged by the caller)
            error = e
        finally:
            sys.settrace(None)
            if timed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
        return self._new, error


class OverBudget(BaseException):
    """An input ran past its time budget (a BaseException: no reader's ``except Exception``
    swallows it)."""


def _over_budget(signum, frame):
    raise OverBudget()


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _judge(target, data, error, seconds, grew, time_limit, mem_limit):
    """A finding's description, or None when the input was handled well."""
    from fcn_port.port.errors import FcnPortError
    if isinstance(error, OverBudget):
        kind = f"slow: stopped at the {time_limit:g} s budget"
    elif error is not None and not isinstance(error, FcnPortError):
        if isinstance(error, KeyboardInterrupt):
            raise error
        kind = f"uncaught {type(error).__name__}: {str(error)[:200]}"
    elif seconds > time_limit:
        kind = f"slow: {seconds:.1f} s"
    elif grew > mem_limit:
        kind = f"memory: peak grew {grew:.0f} MB"
    elif error is not None and "\n" in str(error):
        kind = "multi-line message"
    else:
        return None
    digest = hashlib.sha1(data).hexdigest()[:12]
    FINDINGS.mkdir(exist_ok=True)
    (FINDINGS / f"{target}-{digest}.bin").write_bytes(data)
    tb = "".join(traceback.format_exception(error)) if error is not None else kind
    (FINDINGS / f"{target}-{digest}.txt").write_text(f"{kind}\n\n{tb}")
    return {"target": target, "input": f"{target}-{digest}.bin", "kind": kind}


def fuzz(target, runs, seed=0, time_limit=10.0, mem_limit=512.0, corpus_dir=None):
    """Run ``runs`` mutated inputs through ``target``; return figures and findings."""
    rng, cov = random.Random(seed), LineCoverage()
    corpus = seeds(target)
    if corpus_dir and Path(corpus_dir).is_dir():
        corpus += [p.read_bytes() for p in sorted(Path(corpus_dir).iterdir()) if p.is_file()]
    mutate = mutate_text if target in ("prototxt", "solver") else mutate_bytes
    fn, findings, seen = RUN[target], [], set()
    for data in list(corpus):
        cov.run(fn, data, budget=time_limit)
    start = time.monotonic()
    for i in range(runs):
        data = mutate(rng.choice(corpus), rng, corpus)[:1 << 20]
        peak, t0 = _peak_mb(), time.monotonic()
        new, error = cov.run(fn, data, budget=time_limit)
        seconds, grew = time.monotonic() - t0, _peak_mb() - peak
        if new:
            corpus.append(data)
        found = _judge(target, data, error, seconds, grew, time_limit, mem_limit)
        if found and found["kind"].split(":")[0] not in seen:
            seen.add(found["kind"].split(":")[0])
            findings.append(found)
    return {"target": target, "engine": "mutate", "inputs": runs, "corpus": len(corpus),
            "lines": len(cov.lines), "seconds": round(time.monotonic() - start, 1),
            "findings": findings}


def replay_coverage(target, folder):
    """Line coverage of ``target`` over every file in ``folder`` (an atheris corpus)."""
    cov = LineCoverage()
    files = [p for p in Path(folder).iterdir() if p.is_file()] if Path(folder).is_dir() else []
    for data in seeds(target) + [p.read_bytes() for p in files]:
        cov.run(RUN[target], data)
    return len(cov.lines), len(files)


def run_atheris(target, runs, corpus_dir):
    import atheris
    from fcn_port.port.errors import FcnPortError
    with atheris.instrument_imports(include=["fcn_port"]):
        import fcn_port.port.formats.caffemodel  # noqa: F401
        import fcn_port.port.formats.hdf5  # noqa: F401
        import fcn_port.port.formats.report  # noqa: F401
        import fcn_port.port.formats.solverstate  # noqa: F401
        import fcn_port.port.formats.text  # noqa: F401
    os.makedirs(corpus_dir, exist_ok=True)
    for i, data in enumerate(seeds(target)):
        Path(corpus_dir, f"seed-{i}").write_bytes(data)

    def one(data):
        try:
            RUN[target](data)
        except FcnPortError:
            pass
    atheris.Setup([sys.argv[0], f"-runs={runs}", "-max_len=65536", "-timeout=10",
                   "-rss_limit_mb=2048", f"-artifact_prefix={FINDINGS}/{target}-", corpus_dir], one)
    FINDINGS.mkdir(exist_ok=True)
    atheris.Fuzz()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="all", choices=TARGETS + ("all",))
    p.add_argument("--runs", type=int, default=1000, help="inputs per target")
    p.add_argument("--engine", default="mutate", choices=("mutate", "atheris"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus", help="atheris: corpus folder (default fuzz/corpus/TARGET)")
    p.add_argument("--replay", metavar="DIR", help="only measure line coverage over DIR's files")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="S",
                   help="each input's time budget: past it, it is stopped and a finding")
    p.add_argument("--mem-limit", type=float, default=512.0, metavar="MB",
                   help="an input that grows the peak memory by more is a finding")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    targets = TARGETS if args.target == "all" else (args.target,)
    if args.replay:
        for t in targets:
            lines, n = replay_coverage(t, args.replay)
            print(json.dumps({"target": t, "replayed": n, "lines": lines}))
        return 0
    if args.engine == "atheris":
        if len(targets) != 1:
            p.error("atheris fuzzes one --target per process")
        corpus = args.corpus or str(Path(__file__).resolve().parent / "corpus" / targets[0])
        run_atheris(targets[0], args.runs, corpus)
        return 0
    if args.time_limit <= 0 or args.mem_limit <= 0:
        p.error("--time-limit and --mem-limit must be > 0")
    results = [fuzz(t, args.runs, args.seed, args.time_limit, args.mem_limit) for t in targets]
    for r in results:
        print(json.dumps(r) if args.json else
              f"{r['target']}: {r['inputs']} inputs in {r['seconds']} s, corpus {r['corpus']}, "
              f"{r['lines']} lines of fcn_port/port reached, {len(r['findings'])} findings"
              + "".join(f"\n  {f['kind']} ({f['input']})" for f in r["findings"]))
    return 1 if any(r["findings"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
