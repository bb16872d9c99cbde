"""The benchmark's figures: per-approach summaries, targets, the machine, the printed table."""
import datetime
import json
import os
import platform
import subprocess
import sys

TARGET_SPEEDUP = 5.0  # (a) / (b) seconds, at least
TARGET_RSS = 1.25  # (b) peak RSS / caffemodel size, at most
MIB = 1 << 20


def summary(results, size):
    """Best of the runs (seconds), worst of them (memory)."""
    best = min(results, key=lambda r: r["seconds"])
    peak = max(r["maxrss_kib"] for r in results) * 1024
    return {
        "best_s": best["seconds"],
        "median_s": sorted(r["seconds"] for r in results)[len(results) // 2],
        "read_s": min(r["read_s"] for r in results), "save_s": min(r["save_s"] for r in results),
        "all_s": [round(r["seconds"], 4) for r in results],
        "peak_rss_mib": peak / MIB, "rss_over_file": peak / size,
        "peak_vmhwm_mib": max(r["vmhwm_kib"] for r in results) / 1024,
        "imports_rss_mib": max(r["imports"]["maxrss_kib"] for r in results) / 1024,
        "anon_growth_mib": max(r["end"]["RssAnon"] - r["imports"]["RssAnon"] for r in results) / 1024,
        "file_growth_mib": max(r["end"]["RssFile"] - r["imports"]["RssFile"] for r in results) / 1024,
        "others_cpu_max": max(r["others_cpu"] for r in results),
        "others_cpu_best_run": best["others_cpu"],
    }


def targets(rows):
    speedup = rows["a"]["best_s"] / rows["b"]["best_s"]
    rss = rows["b"]["rss_over_file"]
    return {"speed": {"value": speedup, "target": f">= {TARGET_SPEEDUP}x", "met": speedup >= TARGET_SPEEDUP},
            "rss": {"value": rss, "target": f"<= {TARGET_RSS}x file size", "met": rss <= TARGET_RSS}}


def environment():
    """The machine and the library versions (the versions from a child: the driver stays small)."""
    env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "python": platform.python_version(), "platform": platform.platform(),
           "nproc": len(os.sched_getaffinity(0)), "cpu": _cpu_model()}
    try:
        with open("/proc/meminfo") as f:
            env["mem_gib"] = round(int(f.readline().split()[1]) / MIB, 1)
    except OSError:
        pass
    code = ("import json, numpy, torch, google.protobuf as p; "
            "from google.protobuf.internal import api_implementation as a; "
            "print(json.dumps({'torch': torch.__version__, 'numpy': numpy.__version__, "
            "'protobuf': p.__version__ + ' (' + a.Type() + ')'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode == 0:
        env.update(json.loads(out.stdout))
    return env


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(rows, describe):
    lines = [f"{'approach':10s} {'best s':>8s} {'median s':>9s} {'read s':>7s} {'save s':>7s} "
             f"{'peak RSS MiB':>13s} {'RSS/file':>9s} {'imports MiB':>12s} {'anon +MiB':>10s} "
             f"{'file +MiB':>10s}  what"]
    for name, s in rows.items():
        lines.append(f"{name:10s} {s['best_s']:8.3f} {s['median_s']:9.3f} {s['read_s']:7.3f} "
                     f"{s['save_s']:7.3f} {s['peak_rss_mib']:13.1f} {s['rss_over_file']:9.2f} "
                     f"{s['imports_rss_mib']:12.1f} {s['anon_growth_mib']:10.1f} "
                     f"{s['file_growth_mib']:10.1f}  {describe[name]}")
    return "\n".join(lines)


def print_report(report, describe):
    env, rows, size = report["environment"], report["approaches"], report["caffemodel"]["bytes"]
    print()
    print(f"caffemodel -> torch.save, best of {report['runs']} (each run after warming "
          f"{report['warm_mib']} MiB); {size:,}-byte voc-fcn8s; "
          f"{env.get('cpu')}, nproc {env.get('nproc')}, {env.get('mem_gib')} GiB; "
          f"Python {env['python']}, torch {env.get('torch')}, numpy {env.get('numpy')}, "
          f"protobuf {env.get('protobuf')}; {env['date']}")
    print(table(rows, describe))
    print()
    t = report["targets"]
    a, b = rows["a"], rows["b"]
    print(f"speed: (a) {a['best_s']:.3f} s / (b) {b['best_s']:.3f} s = {t['speed']['value']:.2f}x   "
          f"target {t['speed']['target']}: " + ("met" if t["speed"]["met"] else "MISSED"))
    print(f"RSS:   (b) {b['peak_rss_mib']:.1f} MiB / file {size / MIB:.1f} MiB = "
          f"{t['rss']['value']:.2f}   target {t['rss']['target']}: "
          + ("met" if t["rss"]["met"] else "MISSED"))
    if "b_torch" in rows:
        bt = rows["b_torch"]
        print(f"(b) against read_weights + plain torch.save: {bt['best_s'] / b['best_s']:.2f}x "
              f"quicker, peak {bt['rss_over_file']:.2f}x -> {b['rss_over_file']:.2f}x the file")
    print(f"medians: (a) {a['median_s']:.3f} s / (b) {b['median_s']:.3f} s = "
          f"{a['median_s'] / b['median_s']:.2f}x")
    busy = max(r["others_cpu_best_run"] for r in rows.values())
    print(f"other processes used at most {busy:.0%} of the CPUs during the best runs"
          + ("  (WARNING: a busy machine; these figures are not clean)" if busy > 0.1 else ""))
    print(f"verified: {report['verified']}")
    print(f"(benchmark took {report['total_s']:.0f} s)")
