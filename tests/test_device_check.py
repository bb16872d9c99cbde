"""benchmarks/device_check.sh's CPU dry run: every section runs and records its figures, so the
script a GPU session runs once is known to work before a device comes."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_device_check_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "check.json"
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--dry-run",
                        "--out", str(out)], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}, timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    failed = {k: v["error"] for k, v in report.items() if isinstance(v, dict) and "error" in v}
    assert not failed, failed
    assert report["dry_run"] and report["device"] == "cpu"
    assert report["cuda_tests"]["rc"] == 0 and "passed" in report["cuda_tests"]["summary"]
    assert report["update_cases_cuda"]["all_pass"]  # on the CPU: the 0-ulp cases
    assert len(report["update_cases_cuda"]["cases"]) >= 8
    assert report["forward"]["fast"]["error"] <= 1e-5
    assert report["train_step"]["median_s"] > 0 and report["reader"]["images_per_s"] > 0
    assert set(report["voc2011_hours"]) >= {"voc-fcn32s", "voc-fcn8s", "section_s"}


def test_device_check_without_a_device_says_so_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
