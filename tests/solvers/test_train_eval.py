"""``fcn-port train --eval-every`` (solvers/evalhook.py, the Trainer's hooks, reproduce's
segtests hook passed down by cli.py) on the official voc-fcn32s train/val nets at reduced
width, trained from generated SBD files and scored on generated VOC files: evaluations at the
right iterations in the CSV and JSON, each equal to a separate ``fcn-port eval`` of the snapshot
written at that iteration (solve.py's ``step(N)`` then ``seg_tests``: the weights scored are
the snapshot's), and the errors that must come before training starts."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fcn_port import models
from fcn_port.cli import main
from fcn_port.models.deploy.export import export
from fcn_port.solvers.evalhook import METRICS
import vocdata as VOC  # the VOC/SBD generators (tests/vocdata.py)

WIDTHS = ["--widths", "2", "4", "4", "8", "8", "--fc", "8"]


@pytest.fixture
def setup(tmp_path, monkeypatch, clean_registry):
    monkeypatch.chdir(tmp_path)
    net = tmp_path / "voc-fcn32s"
    for split in (["--split", "train", "--solver"], ["--split", "val"]):
        assert main(["net", "voc-fcn32s", *split, *WIDTHS, "-o", str(net)]) == 0
    solver = net / "solver.prototxt"
    solver.write_text(solver.read_text().replace("snapshot: 4000", "snapshot: 2"))
    VOC.make_sbd(tmp_path / "data" / "sbdd" / "dataset", n=4)
    ids = VOC.make_voc(tmp_path / "data" / "pascal" / "VOC2011", n=3)
    torch.manual_seed(0)           # random weights: Caffe's zero init would score all ties
    model = models.build("voc-fcn32s", widths=(2, 4, 4, 8, 8), fc=8)
    with torch.no_grad():
        for key, p in model.named_parameters():
            p.normal_(0, 0.1 if "upscore" in key else 0.3)
    export(model, tmp_path / "w.caffemodel")
    args = ["train", "--solver", str(solver), "--weights", str(tmp_path / "w.caffemodel"),
            "--data-root", str(tmp_path / "data")]
    return tmp_path, args, ids


def test_eval_every_matches_eval_of_the_snapshots(setup, capsys):
    tmp_path, args, ids = setup
    assert main(args + ["--max-iter", "5", "--eval-every", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("score vs label (3 images): loss ") == 3 and "mean IU" in out
    snap = tmp_path / "snapshot"
    with open(snap / "train_eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iter"]) for r in rows] == [2, 4, 5]      # every 2, and the end
    assert {r["score"] for r in rows} == {"score"} and {r["label"] for r in rows} == {"label"}
    evals = json.loads((snap / "train_eval.json").read_text())["evaluations"]
    assert [e["iter"] for e in evals] == [2, 4, 5]
    assert (snap / "train_eval.png").stat().st_size > 0
    for row, e in zip(rows, evals):
        (head,) = e["heads"]
        assert head["images"] == 3 and len(head["per_class"]) == 21
        for k in METRICS + ("loss",):
            assert float(row[k]) == pytest.approx(head[k], rel=1e-12)
        assert main(["eval", str(snap / f"train_iter_{e['iter']}.caffemodel"), "--dataset",
                     "voc", "--root", str(tmp_path / "data" / "pascal" / "VOC2011"),
                     "--json"]) == 0
        (alone,) = json.loads(capsys.readouterr().out)["heads"]
        for k in METRICS:
            assert alone[k] == head[k], (e["iter"], k)
        assert alone["loss"] == pytest.approx(head["loss"], rel=1e-6)
        assert alone["per_class"] == head["per_class"]
    assert evals[0]["heads"][0]["loss"] != evals[-1]["heads"][0]["loss"]  # the weights moved
    # solve.py's solver.step(2) calls each restart Caffe's smoothed loss (issue 17): after
    # iterations 2 and 4 the window holds that iteration's loss alone, then the mean of two
    with open(snap / "train_log.csv", newline="") as f:
        log = {int(r["iter"]): (float(r["loss"]), float(r["smoothed_loss"]))
               for r in csv.DictReader(f)}
    f32 = np.float32
    assert sorted(log) == [0, 1, 2, 3, 4]
    for it in (0, 2, 4):
        assert log[it][1] == log[it][0]
    for it in (1, 3):
        assert log[it][1] == float((f32(log[it - 1][1]) + f32(log[it][0])) / f32(2))


def test_a_resume_keeps_the_evaluation_taken_at_the_stop(setup, capsys):
    """A run that stops at iteration 3 (SIGINT and max_iter end alike: a snapshot, then the
    evaluation of those weights) and is resumed with --snapshot latest keeps the evaluation
    at 3 in the CSV, the JSON and the plot, and does not score iteration 3 twice."""
    tmp_path, args, ids = setup
    assert main(args + ["--max-iter", "3", "--eval-every", "2"]) == 0
    snap = tmp_path / "snapshot"
    first = json.loads((snap / "train_eval.json").read_text())["evaluations"]
    assert [e["iter"] for e in first] == [2, 3]
    resume = [a for a in args if a != args[args.index("--weights") + 1] and a != "--weights"]
    assert main(resume + ["--snapshot", "latest", "--max-iter", "5", "--eval-every", "2"]) == 0
    evals = json.loads((snap / "train_eval.json").read_text())["evaluations"]
    assert [e["iter"] for e in evals] == [2, 3, 4, 5] and evals[1] == first[1]
    with open(snap / "train_eval.csv", newline="") as f:
        assert [int(r["iter"]) for r in csv.DictReader(f)] == [2, 3, 4, 5]
    assert capsys.readouterr().out.count("Iteration 3 score vs label") == 1


def test_eval_split_and_json(setup, capsys):
    tmp_path, args, ids = setup
    voc = tmp_path / "data" / "pascal" / "VOC2011" / "ImageSets" / "Segmentation"
    (voc / "two.txt").write_text("\n".join(ids[:2]) + "\n")
    assert main(args + ["--max-iter", "2", "--eval-every", "2", "--eval-split", "two",
                        "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["eval"]["csv"].endswith("train_eval.csv")
    evals = json.loads(Path(result["eval"]["json"]).read_text())["evaluations"]
    assert [(e["iter"], e["heads"][0]["images"]) for e in evals] == [(2, 2)]


@pytest.mark.parametrize("extra, words", [
    (["--eval-every", "0"], "--eval-every"),
    (["--eval-split", "seg11valid"], "--eval-every"),
    (["--eval-every", "1", "--eval-split", "nope"], "nope.txt"),
    (["--eval-every", "1", "NO-TEST-NET"], "test net"),
])
def test_eval_errors_come_before_training(setup, capsys, extra, words):
    tmp_path, args, _ = setup
    if "NO-TEST-NET" in extra:
        extra = extra[:-1]
        solver = Path(args[2])
        text = solver.read_text()
        solver.write_text("\n".join(line for line in text.splitlines()
                                    if not line.startswith(("test_net", "test_iter"))) + "\n")
    assert main(args + ["--max-iter", "1"] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcn-port: error:") and words in err and err.count("\n") == 1
    assert not (tmp_path / "snapshot").exists()                # nothing trained or written


def test_hook_schedule_and_files_without_a_net(tmp_path):
    """SegTestHook alone: scores at multiples of N and at an end that is not one, the PNG drawn
    once, rows as the evaluator gave them."""
    from types import SimpleNamespace

    from fcn_port.solvers.evalhook import SegTestHook

    calls = []

    class Fake:
        def evaluate(self):
            calls.append(len(calls))
            return [{"score": "score", "label": "label", "images": 1, "loss": 1.5 * len(calls),
                     "overall_acc": 0.5, "mean_acc": 0.25, "mean_iu": None, "fwavacc": 0.1}]

    lines = []
    hook = SegTestHook(3, Fake(), tmp_path / "s" / "run", echo=lines.append)
    begun = []
    trainer = SimpleNamespace(solver=SimpleNamespace(iter=0, begin=lambda: begun.append(
        trainer.solver.iter)))
    for it in range(1, 8):
        trainer.solver.iter = it
        hook.after_iter(trainer)
    assert begun == [3, 6]  # solve.py's next step(3) starts there: the smoothed loss restarts
    assert hook.at_end(trainer) == tmp_path / "s" / "run_eval.png"
    assert hook.close() is None                                  # drawn once
    assert [e["iter"] for e in hook.evaluations] == [3, 6, 7] and len(calls) == 3
    with open(tmp_path / "s" / "run_eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["iter"], r["loss"], r["mean_iu"]) for r in rows] == [
        ("3", "1.5", ""), ("6", "3.0", ""), ("7", "4.5", "")]
    assert "Iteration 6 score vs label" in lines[1] and "mean IU -" in lines[1]
