"""A stock LMDB-fed Caffe example (Caffe's MNIST LeNet recipe on generated digits) trains with
``fcn-port train --solver`` and no Python: Data layers bound to their LMDBs, the TEST net's
Accuracy, snapshots."""
import re

from fcn_port import cli
from fcn_port.port.datalayers.example import write_example


def test_lenet_on_lmdb_trains_from_the_command_line(tmp_path, monkeypatch, capsys):
    write_example(str(tmp_path / "ex"), train=128, test=32, batch=16, max_iter=30)
    monkeypatch.chdir(tmp_path / "ex")
    assert cli.main(["train", "--solver", "lenet_solver.prototxt"]) == 0
    out = capsys.readouterr().out
    assert "<- LMDBData mnist_train_lmdb (Caffe's data layer)" in out
    losses = [float(v) for v in re.findall(r"Iteration \d+, loss = ([\d.e+-]+)", out)]
    assert len(losses) >= 3 and losses[-1] < losses[0] / 2
    accuracy = [float(v) for v in re.findall(r"accuracy = ([\d.e+-]+)", out)]
    assert accuracy[-1] > accuracy[0]
    assert (tmp_path / "ex" / "snapshots" / "lenet_iter_30.caffemodel").exists()
