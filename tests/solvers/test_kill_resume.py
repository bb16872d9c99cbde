"""SIGKILL in the middle of a snapshot write, then resume: the newest complete snapshot is found,
no final name holds a partial file, and the continuation is bit-identical to a run that was never
killed (same weights, same history, the same bytes in the caffemodel and solverstate files).

The kill is made deterministic by fileio's test hook (``FCN_PORT_TEST_HOLD_WRITE``): the write
of the named file pauses after its first write call (binary) or before its rename (HDF5), says
so on stderr, and waits to be killed."""
import json
import os
import signal
import sys

import numpy as np
import pytest

from fcn_port.cli import main
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.port.formats.solverstate import read_solverstate
from fcn_port.solvers.snapshots import newest_snapshot
from helpers import kill_at_hold

EXTRA = {"BINARYPROTO": "snapshot: 2\n", "HDF5": "snapshot: 2\nsnapshot_format: HDF5\n"}
EXT = {"BINARYPROTO": "", "HDF5": ".h5"}


def _train(folder, *extra):
    return ["train", "--solver", str(folder / "solver.prototxt"), "--batches",
            str(folder / "b.npz"), "--quiet", *extra]


def _run_killed(folder, hold, timeout=120):
    """``fcn-port train`` to iteration 6 in a child, killed with SIGKILL once the write of the
    file matching ``hold`` is paused; returns the temporary path it was writing."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    held, _, status = kill_at_hold([sys.executable, "-m", "fcn_port.cli",
                                    *_train(folder, "--max-iter", "6")], hold, cwd=folder,
                                   env=env, timeout=timeout)
    assert os.path.exists(held)  # the temporary file, written in part or whole
    assert status == -signal.SIGKILL
    return held


def _identical(a, b, ext):
    wa, wb = read_weights(a), read_weights(b)
    assert wa.params.keys() == wb.params.keys()
    for layer in wa.params:
        for x, y in zip(wa.params[layer], wb.params[layer]):
            assert np.array_equal(np.asarray(x), np.asarray(y)), layer  # bit for bit
    if not ext:  # the binary writer is deterministic: the very same bytes
        assert open(a, "rb").read() == open(b, "rb").read()


@pytest.mark.parametrize("which, fmt", [("caffemodel", "BINARYPROTO"), ("solverstate", "HDF5")])
def test_sigkill_during_a_snapshot_then_resume_is_bit_identical(tmp_path, kit, monkeypatch,
                                                                which, fmt):
    ext = EXT[fmt]
    ref = kit.make_folder(tmp_path / "ref", extra=EXTRA[fmt], n=6)
    monkeypatch.chdir(ref)  # snapshot names are relative to the current directory, as Caffe's
    assert main(_train(ref, "--max-iter", "6")) == 0  # the run that is never killed

    run = kit.make_folder(tmp_path / "run", extra=EXTRA[fmt], n=6)
    monkeypatch.chdir(run)
    held = _run_killed(run, f"tiny_iter_4.{which}{ext}")
    snap = run / "snap"
    names = sorted(os.listdir(snap))
    # the final names hold only complete files: iteration 2's pair, and iteration 4's weights
    # when the kill came during its state (written after them)
    final = {f"tiny_iter_2.caffemodel{ext}", f"tiny_iter_2.solverstate{ext}", "tiny_log.csv"}
    if which == "solverstate":
        final.add(f"tiny_iter_4.caffemodel{ext}")
    assert {n for n in names if not n.startswith(".")} == final
    assert [n for n in names if n.startswith(".")] == [os.path.basename(held)]
    assert held.endswith(".part") and os.path.basename(held).startswith(f".tiny_iter_4.{which}")
    if which == "solverstate":  # complete, and the same as the uninterrupted run's
        _identical(snap / f"tiny_iter_4.caffemodel{ext}",
                   ref / "snap" / f"tiny_iter_4.caffemodel{ext}", ext)
    log = (snap / "tiny_log.csv").read_text().splitlines()
    assert log[0] == "iter,loss,smoothed_loss,lr" and len(log) >= 5  # iterations 0..3 at least

    # resume from the newest complete snapshot, in a process of its own as a user would
    state = newest_snapshot("snap/tiny")
    assert state == f"snap/tiny_iter_2.solverstate{ext}"
    assert read_solverstate(state).iter == 2
    assert main(_train(run, "--snapshot", state, "--max-iter", "6")) == 0
    assert not [n for n in os.listdir(snap) if n.startswith(".")]  # the .part was removed
    assert sorted(os.listdir(snap)) == sorted(os.listdir(ref / "snap"))
    for k in (4, 6):
        _identical(snap / f"tiny_iter_{k}.caffemodel{ext}",
                   ref / "snap" / f"tiny_iter_{k}.caffemodel{ext}", ext)
        a = read_solverstate(snap / f"tiny_iter_{k}.solverstate{ext}")
        b = read_solverstate(ref / "snap" / f"tiny_iter_{k}.solverstate{ext}")
        assert (a.iter, a.current_step, a.learned_net) == (b.iter, b.current_step, b.learned_net)
        assert all(np.array_equal(x, y) for x, y in zip(a.history, b.history))
        assert len(a.history) == len(b.history) > 0
    # the log continues where the snapshot was: the same iterations as the uninterrupted run
    ours = [r.split(",")[0] for r in (snap / "tiny_log.csv").read_text().splitlines()]
    theirs = [r.split(",")[0] for r in (ref / "snap" / "tiny_log.csv").read_text().splitlines()]
    assert ours == theirs


def test_the_train_log_is_rewritten_whole_and_a_cut_last_row_is_dropped(tmp_path):
    from fcn_port.solvers.log import FIELDS, TrainLog, open_csv_log

    csv = tmp_path / "snap" / "tiny_log.csv"
    csv.parent.mkdir()
    whole = "iter,loss,smoothed_loss,lr\r\n0,2.5,2.5,0.01\r\n1,2.25,2.375,0.01\r\n"
    csv.write_text(whole + "2,2.0", newline="")  # a kill cut the row of iteration 2
    # a failure while the header and kept rows are rewritten leaves the old file as it was
    with pytest.raises(ValueError):
        open_csv_log(csv, FIELDS, [{"iter": 0, "not a field": 1}])
    assert csv.read_bytes().decode() == whole + "2,2.0"
    assert [n for n in os.listdir(csv.parent) if n.startswith(".")] == []
    log = TrainLog(tmp_path / "snap" / "tiny", start_iter=2)  # resumed at iteration 2
    log.add(2, 2.0, 2.25, 0.01)
    log.close()
    assert csv.read_bytes().decode() == whole + "2,2.0,2.25,0.01\r\n"


def test_a_resumed_run_skips_what_is_not_its_own_log(tmp_path):
    """Earlier logs that would end in internal errors (issue 16): a field over csv's 128 KB
    limit, a NUL byte, bytes that are not UTF-8, in the train CSV; deep JSON, wrong types and
    a FIFO as the eval JSON. The rows before the bad one are kept; a bad eval file is dropped."""
    from fcn_port.solvers.evalhook import SegTestHook
    from fcn_port.solvers.log import TrainLog

    snap = tmp_path / "snap"
    snap.mkdir()
    good = "iter,loss,smoothed_loss,lr\r\n0,2.5,2.5,0.01\r\n"
    for bad in ["1," + "9" * 200_000 + ",1,1\r\n", "1,\x002,2,0.01\r\n", "1,\udcff,1,1\r\n"]:
        (snap / "tiny_log.csv").write_bytes((good + bad).encode("utf-8", "surrogateescape"))
        log = TrainLog(snap / "tiny", start_iter=5)
        assert [r["iter"] for r in log.rows] == [0]
        log.close()
    head = {"score": "score", "label": "label", "images": 1, "loss": 1.0, "overall_acc": 0.5,
            "mean_acc": 0.5, "mean_iu": 0.5, "fwavacc": 0.5}
    evals = [{"iter": 2, "heads": [head]}]
    texts = ["[" * 100_000 + "]" * 100_000, json.dumps({"evaluations": {"iter": 2}}),
             json.dumps({"evaluations": [{"iter": "2", "heads": [head]}]}),
             json.dumps({"evaluations": [{"iter": 2, "heads": [{**head, "mean_iu": "x"}]}]}),
             json.dumps({"evaluations": [{"iter": 2, "heads": "all"}]}) + "\xff"]
    for text in texts:
        (snap / "tiny_eval.json").write_text(text, encoding="latin-1")
        assert SegTestHook(2, None, snap / "tiny", start_iter=5).evaluations == []
    (snap / "tiny_eval.json").write_text(json.dumps({"evaluations": evals + [[1]]}))
    assert SegTestHook(2, None, snap / "tiny", start_iter=5).evaluations == evals
    (snap / "tiny_eval.json").unlink()
    os.mkfifo(snap / "tiny_eval.json")
    assert SegTestHook(2, None, snap / "tiny", start_iter=5).evaluations == []
