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
    env = dict(os.environ, FCN_PORT=f"{sys.executable} -m fcn_port.cli", PYTHON=sys.executable)
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
