"""``bash reproduce/voc2011.sh --smoke``: the whole recipe (generated VOC 2011 + SBD, a reduced
VGG16 base transplanted into FCN-32s, 32s -> 16s -> 8s with the official solvers and data layers,
evaluation on seg11valid during and after each stage, the report) end to end, as CI runs it;
then a second run, which must find every stage done and redo nothing."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "reproduce" / "voc2011.sh"
STAGES = ("voc-fcn32s", "voc-fcn16s", "voc-fcn8s")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_smoke_runs_end_to_end_and_resumes(tmp_path):
    env = dict(os.environ, FCN_PORT=f"{sys.executable} -m fcn_port.cli")
    work = tmp_path / "run"
    run = subprocess.run(["bash", str(SCRIPT), "--smoke", "--work", str(work)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = work / "results"
    md = (results / "results.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| voc-fcn")]
    assert [r.split(" | ")[0][2:] for r in rows] == list(STAGES)
    assert "SMOKE" in md and "63.6" in rows[0] and "65.5" in rows[2]
    doc = json.loads((results / "results.json").read_text())
    assert [r["stage"] for r in doc["rows"]] == list(STAGES)
    for r in doc["rows"]:
        assert r["images"] == 8 and 0 <= r["overall_acc"] <= 1 and r["split"] == "seg11valid"
    assert Image.open(results / "curves.png").size[0] >= 600
    for m in STAGES:
        assert Image.open(results / f"{m}-grid.png").size[0] >= 600
        evals = (work / m / "snapshot" / "train_eval.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in evals[1:]] == ["10", "20"]
        assert (work / m / f"{m}.caffemodel").stat().st_size > 0
    # 16s started from the trained 32s: the transplant's source is 32s's final weights
    again = subprocess.run(["bash", str(SCRIPT), "--smoke", "--work", str(work)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training" not in again.stdout and "scoring" not in again.stdout
    assert (results / "results.md").read_text() == md
    # a stage stopped after its last snapshot resumes from it (nothing left to train), and
    # its weights score as before
    (work / "voc-fcn8s" / "voc-fcn8s.caffemodel").unlink()
    (results / "voc-fcn8s.json").unlink()
    third = subprocess.run(["bash", str(SCRIPT), "--smoke", "--work", str(work)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "voc-fcn8s: training" in third.stdout and "voc-fcn16s: training" not in third.stdout
    assert (results / "results.md").read_text() == md


def test_bad_option_is_one_line_exit_2(tmp_path):
    run = subprocess.run(["bash", str(SCRIPT), "--smok"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--smok" in run.stderr
    run = subprocess.run(["bash", str(SCRIPT), "--smoke", "--eval-official"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "exclude" in run.stderr
    for argv in (["--work"], ["--work", "--smoke"], ["--device"], ["--iters", "--smoke"]):
        run = subprocess.run(["bash", str(SCRIPT), *argv], capture_output=True, text=True)
        assert run.returncode == 2 and run.stderr.count("\n") == 1, (argv, run.stderr)
        assert run.stderr.startswith(f"voc2011.sh: error: {argv[0]} needs"), run.stderr


def test_help_is_the_header_only():
    run = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "bash reproduce/voc2011.sh --smoke" in run.stdout
    lines = run.stdout.splitlines()
    assert "set -" not in run.stdout and not any(line.startswith("#") for line in lines)
    assert "--device to auto" in " ".join(run.stdout.split())


def test_needs_no_python_on_path_and_runs_from_any_folder(tmp_path):
    """Every step is an fcn-port verb: with only the fcn-port given (no ``python`` on PATH),
    a relative --work from another folder is made there and used by every stage."""
    fcn = tmp_path / "bin" / "fcn-port"
    fcn.parent.mkdir()
    fcn.write_text(f"#!/bin/sh\nexec {sys.executable} -m fcn_port.cli \"$@\"\n")
    fcn.chmod(0o755)
    env = {"PATH": f"{fcn.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    if shutil.which("python", path=env["PATH"]):
        pytest.skip("a python on the system PATH: the test could not tell")
    run = subprocess.run(["bash", str(SCRIPT), "--smoke", "--work", "w", "--iters", "1",
                          "--eval-every", "1"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "device: cpu" in run.stderr or "device: cuda" in run.stderr
    assert (tmp_path / "w" / "results" / "results.md").is_file()
    assert (tmp_path / "w" / "voc-fcn8s" / "voc-fcn8s.caffemodel").is_file()


STUB = '''
import json, os, sys
from pathlib import Path
argv = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(" ".join(argv) + "\\n")
if argv[0] == "download":  # no network here: make the released files' names appear
    out = Path(argv[argv.index("-o") + 1])
    out.mkdir(parents=True, exist_ok=True)
    files = {"voc-fcn32s": "fcn32s-heavy-pascal", "voc-fcn16s": "fcn16s-heavy-pascal",
             "voc-fcn8s": "fcn8s-heavy-pascal", "voc-fcn8s-atonce": "fcn8s-atonce-pascal"}
    if argv[1] in files:
        (out / (files[argv[1]] + ".caffemodel")).write_bytes(b"")
elif argv[0] == "eval":  # the released FCN-8s figures, for every model
    assert Path(argv[1]).is_file(), argv[1]
    Path(argv[argv.index("--grid") + 1]).write_bytes(b"")
    print(json.dumps({"model": "x", "split": "seg11valid", "images": 736, "heads": [
        {"overall_acc": 0.912212, "mean_acc": 0.776146, "mean_iu": 0.655126,
         "fwavacc": 0.845445}]}))
else:
    from fcn_port.cli import main
    sys.exit(main(argv))
'''


def test_eval_official_downloads_and_scores_the_released_files(tmp_path):
    """--eval-official's steps, with download and eval stubbed (no network, no 2 GB of data):
    what it fetches, which released file it scores for each model, and the real report."""
    stub = tmp_path / "stub.py"
    stub.write_text(STUB)
    log = tmp_path / "calls.log"
    env = dict(os.environ, FCN_PORT=f"{sys.executable} {stub}",
               STUB_LOG=str(log))
    work = tmp_path / "official"
    run = subprocess.run(["bash", str(SCRIPT), "--eval-official", "--work", str(work)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    calls = log.read_text().splitlines()
    assert calls[0].startswith("download voc2011 seg11valid -o") and "--extract" in calls[0]
    assert not any(" sbd " in c or "vgg16" in c for c in calls)  # scoring needs neither
    evals = [c.split()[1] for c in calls if c.startswith("eval ")]
    assert [Path(e).name for e in evals] == ["fcn32s-heavy-pascal.caffemodel",
                                            "fcn16s-heavy-pascal.caffemodel",
                                            "fcn8s-heavy-pascal.caffemodel",
                                            "fcn8s-atonce-pascal.caffemodel"]
    md = (work / "results" / "results.md").read_text()
    assert "released caffemodels" in md and md.count("| 91.22 | 77.61 | 65.51 | 84.54 |") == 4
