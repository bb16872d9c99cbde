"""HDF5 weights of nets that share params by ``ParamSpec.name`` (issue 17): Caffe's
``Net::ToHDF5`` writes a shared param under its owner only, and ``CopyTrainedLayersFromHDF5``
accepts a sharing layer's group without it. Read Caffe's own snapshot of a siamese net (the
oracle's update case), write the same layout, and refuse a missing param nothing shares."""
import h5py
import numpy as np
import pytest
import torch

from fcn_port.port.errors import NetError
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.port.formats.hdf5 import write_hdf5_weights
from fcn_port.port.net import from_prototxt
from fcn_port.solvers.build import from_solver_prototxt
from fcn_port.solvers.update_parity import ulps
from helpers import ORACLE

CASE = ORACLE / "update" / "shared_params_hdf5"


def _layout(path):
    with h5py.File(path) as f:
        return {name: sorted(f["data"][name]) for name in f["data"]}


def test_caffes_hdf5_snapshot_of_a_siamese_net_loads_strictly_and_restores(tmp_path):
    snap = CASE / "snapshots" / "snap_iter_5.caffemodel.h5"
    assert _layout(snap)["ip1_p"] == [] and _layout(snap)["ip1"] == ["0", "1"]
    solver, net = from_solver_prototxt(CASE / "solver.prototxt")
    report = net.load_caffemodel(snap, strict=True)  # was: no params for ['conv1_p', ...]
    assert report["missing"] == [] and report["loaded"] == ["conv1", "ip1", "feat"]
    traj = np.load(CASE / "trajectory.npz")
    for name, i, p, _ in net.param_specs:  # sharers hold the owners' values
        assert not ulps(p.detach().numpy(), traj[f"it/5/{name}/{i}"]).any(), (name, i)
    # Caffe's solverstate.h5 names that file; restored, Caffe's own gradients of steps 5..9
    # lead to Caffe's params at step 10, bit for bit
    solver.restore(CASE / "snapshots" / "snap_iter_5.solverstate.h5", root=CASE)
    grads = np.load(CASE / "grads.npz")
    for k in range(5, 10):
        for lp in solver.params:
            lp.param.grad = torch.from_numpy(grads[f"it/{k}/{lp.layer}/{lp.index}"].copy())
        solver.apply_update()
    for name, i, p, _ in net.param_specs:
        assert not ulps(p.detach().numpy(), traj[f"it/10/{name}/{i}"]).any(), (name, i)
    # and fcn-port's own HDF5 snapshot has Caffe's layout: the sharers' groups empty
    model, _ = solver.snapshot(str(tmp_path / "s"), hdf5=True)
    assert _layout(model) == _layout(CASE / "snapshots" / "snap_iter_10.caffemodel.h5")


def _siamese(tmp_path, share_bias):
    spec = ('param { name: "w" } param { name: "b" }' if share_bias else
            'param { name: "w" } param { }')
    net = tmp_path / "net.prototxt"
    net.write_text(
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
        f'layer {{ name: "a" type: "InnerProduct" bottom: "x" top: "a" {spec} '
        'inner_product_param { num_output: 4 } }\n'
        f'layer {{ name: "b" type: "InnerProduct" bottom: "x" top: "b" {spec} '
        'inner_product_param { num_output: 4 } }\n')
    return net


def test_a_layer_sharing_its_weights_but_not_its_bias(tmp_path):
    """The group of 'b' holds only dataset 1 (its own bias): Caffe's ToHDF5 layout."""
    net = from_prototxt(_siamese(tmp_path, share_bias=False), "TEST")
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-1, 1)
    path = tmp_path / "w.caffemodel.h5"
    params = {}
    for layer, i, p, _ in net.param_specs:
        params.setdefault(layer, []).append(p.detach().numpy().copy())
    write_hdf5_weights(params, path, shared={("b", 0)})
    assert _layout(path) == {"a": ["0", "1"], "b": ["1"]}
    w = read_weights(path)
    assert w.absent == {("b", 0)} and w.params["b"][0].shape == (0,)
    again = from_prototxt(_siamese(tmp_path, share_bias=False), "TEST")
    assert again.load_caffemodel(path, strict=True)["missing"] == []
    for (_, _, p, _), (_, _, q, _) in zip(net.param_specs, again.param_specs):
        assert torch.equal(p, q)
    # the same file into a net that shares nothing: param 0 of 'b' is nowhere
    lone = tmp_path / "lone.prototxt"
    lone.write_text(_siamese(tmp_path, False).read_text().replace('param { name: "w" } ', ""))
    with pytest.raises(NetError):
        from_prototxt(lone, "TEST", weights=path)


def test_binary_snapshots_keep_every_layers_copy(tmp_path):
    """Net::ToProto writes every layer's blobs, sharers included (only HDF5 leaves them out)."""
    solver, net = from_solver_prototxt(CASE / "solver.prototxt")
    model, _ = solver.snapshot(str(tmp_path / "s"), hdf5=False)
    w = read_weights(model)
    assert np.array_equal(w.params["ip1_p"][0], w.params["ip1"][0]) and not w.absent
