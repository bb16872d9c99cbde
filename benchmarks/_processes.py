"""The convert benchmark's second part: each way to turn the caffemodel into a checkpoint timed
as a whole process, start-up and imports included (what a user waits for):

  naive        ``python _naive.py X.caffemodel out.pt`` (protobuf + numpy + torch.save)
  pt           ``fcn-port convert X.caffemodel -o out.pt``
  safetensors  ``fcn-port convert X.caffemodel -o out.safetensors`` (imports no torch)
  inspect      ``fcn-port inspect X.caffemodel`` (statistics included; its peak RSS against
               the file's size is issue 18's memory target, at most 1.25x)

Each run is ``subprocess.Popen`` + ``os.wait4``: wall seconds from the spawn to the exit, and the
child's own ``ru_maxrss``. Runs are interleaved, each after the same memory warm-up as the
in-process part; an untimed first run of each checks that all three outputs hold the same
tensors (a separate process: ``torch.load(weights_only=True)`` and fcn-port's safetensors reader).
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COMMANDS = {
    "naive": "python _naive.py: ParseFromString + np.array per blob + torch.save",
    "pt": "fcn-port convert -o x.pt (read_weights + torchsave)",
    "safetensors": "fcn-port convert -o x.safetensors (numpy only, no torch import)",
    "inspect": "fcn-port inspect (layers and value statistics; no torch import)",
}
CONVERTS = ("naive", "pt", "safetensors")  # the commands that write a checkpoint


def argv(name, model, out):
    if name == "naive":
        return [sys.executable, os.path.join(HERE, "_naive.py"), model, out]
    if name == "inspect":
        return [sys.executable, "-m", "fcn_port.cli", "inspect", model]
    return [sys.executable, "-m", "fcn_port.cli", "convert", model, "-o", out]


def output(folder, name):
    os.makedirs(os.path.join(folder, "proc"), exist_ok=True)
    return os.path.join(folder, "proc", "out." + ("safetensors" if name == "safetensors" else "pt"))


def _jiffies():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def run_one(name, model, out):
    """(seconds, peak RSS KiB, share of the CPUs other processes used meanwhile) of one whole
    process; raises SystemExit when it fails."""
    if os.path.exists(out):
        os.unlink(out)  # each run writes a new file (see Pitfalls: truncating starts writeback)
    busy0, total0 = _jiffies()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv(name, model, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{err[-4000:]}")
    busy1, total1 = _jiffies()
    own = (usage.ru_utime + usage.ru_stime) * os.sysconf("SC_CLK_TCK")
    return seconds, usage.ru_maxrss, max(0.0, (busy1 - busy0 - own) / max(1, total1 - total0))


def verify(model, folder):
    """Run each command once (untimed) and check that the outputs hold the same tensors."""
    outs = {name: output(folder, name).replace("out.", f"check_{name}.") for name in CONVERTS}
    for name, out in outs.items():
        run_one(name, model, out)
    code = (
        "import json, sys, numpy as np, torch\n"
        "from fcn_port.port.fileio import safetensors as st\n"
        "o = json.loads(sys.argv[1])\n"
        "a = torch.load(o['naive'], weights_only=True)\n"
        "b = torch.load(o['pt'], weights_only=True)['state_dict']\n"
        "c, md = st.read(o['safetensors'])\n"
        "bad = [k for k in a if not (torch.equal(a[k], b[k]) and np.array_equal(a[k].numpy(), c[k]))]\n"
        "bad += [] if list(a) == list(b) == list(c) else ['keys differ']\n"
        "print(json.dumps({'problems': bad[:5], 'tensors': len(a), 'model': md['model']}))\n")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(outs)], capture_output=True,
                          text=True)
    for out in outs.values():
        os.unlink(out)
    if done.returncode != 0:
        raise SystemExit(f"verifying the process outputs failed:\n{done.stderr[-4000:]}")
    check = json.loads(done.stdout.strip().splitlines()[-1])
    if check["problems"]:
        raise SystemExit(f"VERIFICATION FAILED: process outputs differ: {check['problems']}")
    return (f"naive, pt and safetensors outputs hold the same {check['tensors']} tensors "
            f"(keys in the same order, equal values); the safetensors metadata names "
            f"{check['model']}")


def measure(model, folder, runs, warm, log):
    """{name: {"all_s", "best_s", "median_s", "peak_rss_mib"}} over ``runs`` interleaved runs;
    ``warm()`` runs before each (the driver's memory warm-up)."""
    got = {name: [] for name in COMMANDS}
    for i in range(runs):
        for name in COMMANDS:
            warm()
            seconds, rss, others = run_one(name, model, output(folder, name))
            got[name].append((seconds, rss, others))
            log(f"  process run {i + 1}/{runs} {name:12s} {seconds:7.3f} s  peak RSS "
                f"{rss / 1024:7.1f} MiB  other processes {others:4.0%} of the CPUs")
    for name in COMMANDS:
        out = output(folder, name)
        if os.path.exists(out):
            os.unlink(out)
    rows = {}
    for name, results in got.items():
        times = sorted(s for s, _, _ in results)
        best = min(results)
        rows[name] = {"what": COMMANDS[name], "all_s": [round(s, 4) for s, _, _ in results],
                      "best_s": times[0], "median_s": times[len(times) // 2],
                      "peak_rss_mib": max(r for _, r, _ in results) / 1024,
                      "others_cpu_best_run": best[2],
                      "others_cpu_max": max(o for _, _, o in results)}
    return rows


def print_table(rows, size_mib):
    print(f"\nwhole processes (spawn to exit, imports included), {size_mib:.1f} MiB caffemodel:")
    print(f"{'command':12s} {'best s':>8s} {'median s':>9s} {'peak RSS MiB':>13s}  what")
    for name, r in rows.items():
        print(f"{name:12s} {r['best_s']:8.3f} {r['median_s']:9.3f} {r['peak_rss_mib']:13.1f}  "
              f"{r['what']}")
    n, p, s = rows["naive"], rows["pt"], rows["safetensors"]
    print(f"safetensors: {n['best_s'] / s['best_s']:.1f}x quicker than the naive script, "
          f"{p['best_s'] / s['best_s']:.1f}x quicker than convert -o .pt (best of runs); "
          f"target (issue 18) at least 5x the naive script: "
          + ("met" if n["best_s"] >= 5 * s["best_s"] else "MISSED"))
    ratio = rows["inspect"]["peak_rss_mib"] / size_mib
    print(f"inspect: peak RSS {ratio:.2f}x the file; target (issue 18) at most 1.25x: "
          + ("met" if ratio <= 1.25 else "MISSED"))
    busy = max(r["others_cpu_best_run"] for r in rows.values())
    print(f"other processes used at most {busy:.0%} of the CPUs during the best runs"
          + ("  (WARNING: a busy machine; these figures are not clean)" if busy > 0.1 else ""))
