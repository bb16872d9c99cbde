"""``bench --train``: the models-level verb reports what the hook it is handed measures (models
cannot import solvers; fcn_port.cli hands it ``solvers.bench.train_bench``, which times
``fcn-port train``'s own iteration). No timing is asserted."""
import argparse
import json
import re

import pytest
import torch

from fcn_port import models
from fcn_port.models import verbs
from fcn_port.models.deploy import bench
from fcn_port.models.deploy.onnx import sample_inputs
from fcn_port.port.errors import UnsupportedError
from fcn_port.solvers.bench import official_solver, train_bench, trainer_for


def _parser(train_step):
    p = argparse.ArgumentParser()
    verbs.add_verbs(p.add_subparsers(dest="verb"), train_step=train_step)
    return p


@pytest.mark.parametrize("fast", [False, True])
def test_bench_train_json_has_a_train_object(capsys, fast):
    args = _parser(train_bench).parse_args(
        ["bench", "--train", "--runs", "1", "--warmup", "0", "--size", "40", "32", "--json"]
        + (["--fast", "--no-compile"] if fast else []))
    args.run(args)
    t = json.loads(capsys.readouterr().out)["train"]
    assert t["median_s"] > 0 and t["runs"] == 1 and t["size"] == [40, 32]
    assert t["path"] == "fcn-port train's iteration"
    assert len(t["losses"]) == 1 and all(v > 0 for v in t["losses"])
    assert "lr 1e-14" in t["solver"]  # the bundled model is a voc-fcn8s


def test_bench_train_without_the_solver_hook_is_unsupported():
    args = _parser(None).parse_args(["bench", "--train", "--size", "32", "32"])
    with pytest.raises(UnsupportedError, match="solvers"):
        args.run(args)


def test_official_solver_values_and_iter_size_one():
    model = models.build("voc-fcn-alexnet", widths=(8, 8, 8, 8, 8), fc=8, classes=3)
    s = official_solver(model)
    assert (s.param.base_lr, s.param.momentum) == pytest.approx((1e-4, 0.9))
    assert s.param.iter_size == 1  # the official 20 passes would make one step 20 batches
    assert s.param.weight_decay == pytest.approx(5e-4) and s.param.lr_policy == "fixed"
    assert [lp.layer for lp in s.params if lp.lr_mult == 0] == ["upscore"]


def test_train_step_counts_three_forwards_and_trains():
    model = bench.random_weights(models.build("voc-fcn32s", widths=(4, 4, 4, 4, 4), fc=8,
                                              classes=3), seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = bench.bench_train(model, lambda m: official_solver(m, base_lr=1e-6).step, (32, 32),
                          runs=1, warmup=1)
    assert r["gflop"] == pytest.approx(3 * bench.flops(model, (32, 32)) / 1e9)
    after = model.state_dict()
    assert not torch.equal(after["fc6.0"], before["fc6.0"])
    assert torch.equal(after["upscore.0"], before["upscore.0"])  # lr_mult 0: bilinear, fixed


def test_bench_train_table_says_what_its_numbers_are(capsys):
    args = _parser(train_bench).parse_args(
        ["bench", "--train", "--runs", "1", "--warmup", "0", "--size", "40", "32"])
    args.run(args)
    line = next(x for x in capsys.readouterr().out.splitlines() if "train step" in x)
    assert re.search(r"\d GFLOP/s \(\d+\.\d GFLOP a step\)", line), line


def test_bench_times_the_iteration_train_runs(monkeypatch):
    """One code path: what ``bench --train`` times is ``Trainer.iterate``, the loop body of
    ``Trainer.solve``; its first loss is the official loss of the model's weights on the batch
    (the hand-written model's, the interpreter net built from the official train prototxt)."""
    from fcn_port.solvers.train import Trainer

    model = bench.random_weights(models.build("voc-fcn8s", widths=(4, 4, 4, 4, 4), fc=8,
                                              classes=3), seed=2)
    calls = []
    real = Trainer.iterate
    monkeypatch.setattr(Trainer, "iterate", lambda self, *a: calls.append(1) or real(self, *a))
    trainer, folder = trainer_for(model, (40, 32))
    with folder:
        for layer in trainer.net.modules():  # Dropout as in TEST, to compare with the model
            if type(layer).__name__ == "Dropout":
                layer.phase = "TEST"
        trainer.iterate()
        assert calls == [1] and trainer.solver.iter == 1
        inputs = sample_inputs(model.cfg, (40, 32))
        labels = bench.sample_labels(model.cfg, (40, 32))
        with torch.no_grad():
            want = float(bench.train_loss(model.cfg)(model.eval()(*inputs), labels))
        assert trainer.losses[0] == pytest.approx(want, rel=1e-6)
        r = train_bench(model, (40, 32), runs=1, warmup=0)
        assert len(calls) == 2 and r["path"] == "fcn-port train's iteration"
