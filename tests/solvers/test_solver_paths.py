"""Paths a solver prototxt names: read files must be regular files, snapshot_prefix is checked
before training (one line, exit 2, nothing written), and outputs never write through a symlink
planted at their names."""
import os

import pytest

from fcn_port.cli import main


def _fails(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcn-port: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


def _train(folder, *extra):
    return ["train", "--solver", str(folder / "solver.prototxt"), "--batches",
            str(folder / "b.npz"), "--quiet", "--max-iter", "2", *extra]


@pytest.mark.parametrize("extra, words", [
    ('snapshot_prefix: "train.prototxt/tiny"\n', ["snapshot_prefix", "not a folder"]),
    ('snapshot_prefix: "missing/deeper/"\n', ["snapshot_prefix", "file name"]),
    ('weights: "/dev/zero"\n', ["weights", "/dev/zero", "not a file"]),
    ('weights: "."\n', ["weights", "not a file"]),
])
def test_a_bad_solver_path_is_refused_before_training(tmp_path, kit, monkeypatch, capsys, extra,
                                                      words):
    folder = kit.make_folder(tmp_path, n=2)
    (folder / "solver.prototxt").write_text(kit.SOLVER.replace('snapshot_prefix: "snap/tiny"\n',
                                                               "") + extra)
    monkeypatch.chdir(folder)
    before = sorted(os.listdir(folder))
    _fails(capsys, _train(folder), *words)
    assert sorted(os.listdir(folder)) == before  # nothing written, no folder made


def test_a_net_path_that_is_a_device_is_refused(tmp_path, kit, monkeypatch, capsys):
    folder = kit.make_folder(tmp_path, n=2)
    text = (folder / "solver.prototxt").read_text()
    (folder / "solver.prototxt").write_text(text.replace('"train.prototxt"', '"/dev/zero"'))
    monkeypatch.chdir(folder)
    _fails(capsys, _train(folder), "train_net", "/dev/zero", "not a file")


def test_an_absolute_snapshot_prefix_elsewhere_is_allowed_as_in_caffe(tmp_path, kit, monkeypatch):
    folder = kit.make_folder(tmp_path / "run", n=2)
    elsewhere = tmp_path / "elsewhere" / "deep"
    text = (folder / "solver.prototxt").read_text()
    (folder / "solver.prototxt").write_text(text.replace('"snap/tiny"', f'"{elsewhere}/tiny"'))
    monkeypatch.chdir(folder)
    assert main(_train(folder)) == 0
    assert sorted(os.listdir(elsewhere)) == ["tiny_iter_2.caffemodel", "tiny_iter_2.solverstate",
                                             "tiny_log.csv", "tiny_loss.png"]


def test_symlinks_planted_at_output_names_are_replaced_not_written_through(tmp_path, kit,
                                                                           monkeypatch):
    folder = kit.make_folder(tmp_path, n=2)
    monkeypatch.chdir(folder)
    (folder / "snap").mkdir()
    victims = {}
    for name in ("tiny_iter_2.caffemodel", "tiny_iter_2.solverstate", "tiny_log.csv",
                 "tiny_loss.png"):
        victim = tmp_path / f"victim_{name}"
        victim.write_text("precious")
        (folder / "snap" / name).symlink_to(victim)
        victims[name] = victim
    assert main(_train(folder)) == 0
    for name, victim in victims.items():
        assert victim.read_text() == "precious", name
        assert not (folder / "snap" / name).is_symlink(), name
