"""Binary and HDF5 solverstates against the snapshots real Caffe wrote.
"""
import re

import numpy as np
import pytest

from fcn_port.port.formats import caffemodel, solverstate
from helpers import case_params


SOLVER = case_params("solver")


def _snapshots(case):
    return sorted((case / "snapshots").glob("*"), key=lambda p: (p.suffix, p.name))


@pytest.mark.parametrize("case", SOLVER)
def test_caffe_snapshots_match_the_trajectory_caffe_recorded(case):
    """snap_iter_k.caffemodel(.h5) = params after k steps in trajectory.npz (both from Caffe)."""
    traj = np.load(case / "trajectory.npz")
    init = caffemodel.read_weights(case / "init.caffemodel")
    for name, blobs in init.params.items():  # it/0 is the weights before any step
        for i, a in enumerate(blobs):
            key = f"it/0/{name}/{i}"
            if key in traj:
                np.testing.assert_array_equal(a, traj[key])
    snaps = [p for p in _snapshots(case) if ".caffemodel" in p.name]
    for snap in snaps:
        k = int(re.search(r"_iter_(\d+)", snap.name).group(1))
        w = caffemodel.read_weights(snap)
        checked = 0
        for name, blobs in w.params.items():
            for i, a in enumerate(blobs):
                if f"it/{k}/{name}/{i}" in traj:
                    np.testing.assert_array_equal(a, traj[f"it/{k}/{name}/{i}"])
                    checked += 1
        assert checked, snap


@pytest.mark.parametrize("case", SOLVER)
def test_solverstates_read_and_round_trip(case, tmp_path):
    states = [p for p in _snapshots(case) if ".solverstate" in p.name]
    init = caffemodel.read_weights(case / "init.caffemodel")
    learnable = [a.shape for blobs in init.params.values() for a in blobs]
    for path in states:
        s = solverstate.read_solverstate(path)
        k = int(re.search(r"_iter_(\d+)", path.name).group(1))
        assert s.iter == k
        assert s.learned_net == f"snapshots/{path.name.replace('solverstate', 'caffemodel')}"
        # SGD keeps one history blob per param blob (lr_mult 0 ones included), in net order
        n = len(learnable)
        assert len(s.history) in (n, 2 * n)
        assert [h.shape for h in s.history[:n]] == learnable
        out = tmp_path / path.name
        solverstate.write_solverstate(s, out)
        again = solverstate.read_solverstate(out)
        assert (again.iter, again.current_step, again.learned_net) == (s.iter, s.current_step, s.learned_net)
        for a, b in zip(s.history, again.history):
            assert a.shape == b.shape and np.array_equal(a, b)
        if s.format == "binary":
            assert out.read_bytes() == path.read_bytes()
