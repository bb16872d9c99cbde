"""Snapshot files around a training run: where they go, which one to resume, what a killed run
left behind (``solver.cpp``: ``Solver::Snapshot``, ``SnapshotFilename``; ``caffe train``).

How Caffe does it: ``SnapshotFilename`` is ``snapshot_prefix + "_iter_" + iter + extension``,
relative to the current directory (any path; an existing folder as prefix gets the solver
file's stem, ``upgrade_snapshot_prefix``). ``Solver::Init`` calls
``CheckSnapshotWritePermissions``: when ``snapshot`` is set, ``snapshot_prefix`` must be too,
and Caffe writes and deletes a probe file ``<prefix>_iter_<iter>.tempfile``, aborting ("Cannot
write to snapshot prefix ...") when it cannot, a missing folder included; with ``snapshot: 0``
nothing is checked, and the final snapshot (``snapshot_after_train``) can fail at the end.
Caffe writes each file in place, so a crash can leave a truncated file under its final name.
Resuming is by hand: ``caffe train --snapshot``.

Where fcn-port differs (and agrees): the same names and the same freedom of path;
:func:`prepare_snapshots` checks the folder before training starts whatever ``snapshot`` is
(without a probe file: the folder must be writable, and missing folders are made at the first
write instead of refused) and removes the temporary ``.part`` files of a killed run; snapshots are written atomically in order (see
:meth:`.solver.Solver.snapshot`), so :func:`newest_snapshot` can pick the newest state that is
complete and names complete weights.
"""
import contextlib
import os
import re

from fcn_port.port.formats.solverstate import read_solverstate

from .errors import SolverError
from .solver import _learned_net_path


def newest_snapshot(prefix):
    """The newest ``<prefix>_iter_<N>.solverstate[.h5]`` that can be resumed: it reads whole
    and the weights file it names is found and reads whole (checked in that order, newest
    first; a snapshot cut short by a crash is skipped). None when there is none."""
    from fcn_port.port.errors import FcnPortError
    from fcn_port.port.formats.caffemodel import read_weights

    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"_iter_(\d+)\.solverstate(\.h5)?$")
    folder = os.path.dirname(prefix) or "."
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    found = sorted(((int(m.group(1)), n) for n in names if (m := pattern.match(n))), reverse=True)
    for _, name in found:
        path = os.path.join(os.path.dirname(prefix), name)
        try:
            state = read_solverstate(path)
            if state.learned_net:
                read_weights(_learned_net_path(state, None))
            return path
        except (FcnPortError, OSError):
            continue
    return None


def prepare_snapshots(prefix, where="the solver"):
    """Before training (Caffe's ``CheckSnapshotWritePermissions`` probes only when
    ``snapshot`` is set, so a run with ``snapshot: 0`` fails at its final snapshot, maybe days
    in): ``snapshot_prefix`` may name any path, as in Caffe, but its folder (or the
    nearest one that exists: missing ones are made at the first write) must be a writable
    folder, its last part must be a file name, and the temporary files a killed run left there
    (:func:`partial_snapshots`) are removed. Returns those."""
    prefix = os.fspath(prefix)
    folder, base = os.path.dirname(prefix), os.path.basename(prefix)
    if not base or base in (".", "..") or any(ord(c) < 32 for c in prefix):
        raise SolverError(f"{where}: snapshot_prefix {prefix!r} does not end in a file name "
                          "(snapshots are <snapshot_prefix>_iter_N.caffemodel); expected e.g. "
                          "'snapshot/train'")
    place = os.path.abspath(folder or ".")
    while not os.path.lexists(place):  # made when the first file is written, not before
        place = os.path.dirname(place)
    if not os.path.isdir(place) or not os.access(place, os.W_OK | os.X_OK):
        what = "not a folder" if not os.path.isdir(place) else "not writable"
        raise SolverError(f"{where}: snapshot_prefix '{prefix}': '{place}' is {what}; expected "
                          "a place to write snapshots and the log")
    stale = partial_snapshots(prefix)
    for path in stale:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return stale


def partial_snapshots(prefix):
    """Temporary files of snapshots that a killed run left (``.<name>_iter_<N>.*.part``,
    :func:`~fcn_port.port.fileio.atomic_output`'s names), for the trainer to remove."""
    base = os.path.basename(os.fspath(prefix))
    folder = os.path.dirname(os.fspath(prefix)) or "."
    pattern = re.compile(r"\." + re.escape(base) + r"_iter_\d+\.(caffemodel|solverstate)"
                         r"(\.h5)?\.[^/]*\.part$")
    try:
        return sorted(os.path.join(os.path.dirname(os.fspath(prefix)), n)
                      for n in os.listdir(folder) if pattern.match(n))
    except OSError:
        return []
