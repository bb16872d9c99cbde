"""fcn_port.port.fileio.atomic_output: all or nothing, never through a symlink, durable on
request, and its test hook (a write paused half-way, killed: no final name, only the .part)."""
import os
import subprocess
import sys

import pytest

from fcn_port.port.fileio import atomic_output, durable_writes
from fcn_port.port.fileio.files import HOLD_ENV
from helpers import kill_at_hold


def _hidden(folder):
    return [n for n in os.listdir(folder) if n.startswith(".")]


@pytest.mark.parametrize("mode", ["wb", None])
def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path, mode):
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(out, mode) as f:
            if mode is None:
                with open(f, "wb") as g:
                    g.write(b"new, cut short")
            else:
                f.write(b"new, cut short")
            raise RuntimeError("the writer failed")
    assert out.read_bytes() == b"old" and _hidden(tmp_path) == []
    with atomic_output(out) as f:
        f.write(b"new")
    assert out.read_bytes() == b"new" and _hidden(tmp_path) == []


def test_a_symlink_at_the_final_name_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "model.caffemodel"
    link.symlink_to(victim)
    with atomic_output(link) as f:
        f.write(b"weights")
    assert victim.read_text() == "keep me"
    assert not link.is_symlink() and link.read_bytes() == b"weights"


def test_durable_writes_fsync_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def record(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", record)
    with atomic_output(tmp_path / "plain.bin") as f:
        f.write(b"x")
    assert synced == []  # not asked for
    with durable_writes():
        with atomic_output(tmp_path / "a.bin") as f:
            f.write(b"a")
        with atomic_output(tmp_path / "b.h5", mode=None) as tmp:
            with open(tmp, "wb") as g:
                g.write(b"b")
    folder = os.path.realpath(tmp_path)
    files = [p for p in synced if p != folder]
    assert len(files) == 2 and all(os.path.basename(p).endswith(".part") for p in files)
    assert synced.count(folder) == 2  # after each rename
    assert (tmp_path / "a.bin").read_bytes() == b"a" and (tmp_path / "b.h5").read_bytes() == b"b"


CHILD = """
import sys
from fcn_port.port.fileio import atomic_output
with atomic_output(sys.argv[1]) as f:
    f.write(b"first piece")
    f.write(b"second piece")
"""


def test_the_hold_hook_pauses_after_the_first_write_and_a_kill_leaves_only_the_part(tmp_path):
    out = tmp_path / "snap_iter_4.caffemodel"
    held, before, _ = kill_at_hold([sys.executable, "-c", CHILD, str(out)], "*_iter_4.caffemodel")
    assert before == []  # the hold is announced first, as fcn-port: test hold: PATH
    env = dict(os.environ, **{HOLD_ENV: "*_iter_4.caffemodel"})
    assert not out.exists()
    assert _hidden(tmp_path) == [os.path.basename(held)]
    with open(held, "rb") as f:
        assert f.read() == b"first piece"  # written in part: the first write call only
    # a name the pattern does not match is written as usual, in the same environment
    run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "x_iter_2.caffemodel")],
                         env=env, capture_output=True, timeout=60)
    assert run.returncode == 0 and (tmp_path / "x_iter_2.caffemodel").read_bytes() == \
        b"first piecesecond piece"
