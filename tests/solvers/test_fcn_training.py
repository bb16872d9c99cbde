"""The hand-written FCN models trained by the Caffe solver emulation, against real Caffe.

The oracle cases ``sgd_fcn32s_official`` and ``sgd_fcn8s_atonce_hdf5`` are the official
voc-fcn32s / voc-fcn8s-atonce topologies at 1/16 width (fc 64, 6 classes, no Dropout) trained by
Caffe with the official solver values (lr 1e-10, momentum 0.99, weight decay 5e-4) on a loss
summed over the pixels. Here the same geometry comes from ``fcn_port.models.build`` (not from
the case's prototxt), its params and multipliers from ``FCN.param_specs``, the loss from the
case's own SoftmaxWithLoss layer (the port's implementation), and the update from
``fcn_port.solvers.Solver``: every param at every checkpoint must be within the cases' 1e-2 of
Caffe's (the update relative to how far Caffe moved the blob).
"""
import json

import numpy as np
import pytest
import torch

from conftest import oracle_cases
from fcn_port import models
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import read_net
from fcn_port.port.layers import lookup
from fcn_port.solvers import Solver, read_solver_file
from fcn_port.solvers.build import from_solver_prototxt
from fcn_port.solvers.parity import DEFAULT_RTOL, trajectory_error

CASES = {c.name: c for c in oracle_cases("solver")}
MODELS = {"sgd_fcn32s_official": "voc-fcn32s", "sgd_fcn8s_atonce_hdf5": "voc-fcn8s-atonce"}


def _case_net(case):
    net, _ = read_net(case / "train.prototxt")
    return {lp.name: lp for lp in net.layer}


def _model(case, name):
    """The hand-written FCN with the case's geometry read off its train net."""
    layers = _case_net(case)
    widths = [layers[f"conv{s}_1"].convolution_param.num_output for s in range(1, 6)]
    return models.build(name, classes=layers["score_fr"].convolution_param.num_output,
                        widths=widths, fc=layers["fc6"].convolution_param.num_output)


def _loss_layer(case, model):
    lp = _case_net(case)["loss"]
    shape = (1, model.cfg.classes, 8, 8)
    return lookup(lp)(lp, [shape, (1, 1, 8, 8)], "TRAIN")


def _summary(param_specs_or_learnables):
    return [(x.layer, x.index, tuple(x.param.shape), x.lr_mult, x.decay_mult)
            for x in param_specs_or_learnables]


@pytest.mark.parametrize("case_name", sorted(MODELS))
def test_param_order_and_multipliers_match_the_interpreter(case_name):
    case = CASES[case_name]
    model = _model(case, MODELS[case_name])
    param, _ = read_solver_file(case / "solver.prototxt")
    ours = Solver(param, model.param_specs)
    theirs, _ = from_solver_prototxt(case / "solver.prototxt")
    assert _summary(ours.params) == _summary(theirs.params)
    assert len(ours.params) == len(list(model.parameters()))
    frozen = {x.layer for x in ours.params if x.lr_mult == 0}
    assert frozen == {lp.name for lp in _case_net(case).values()
                      if lp.type in ("Deconvolution", "Scale")}
    # the Solver turns off the gradients Caffe never computes (lr_mult 0)
    assert all(not x.param.requires_grad for x in ours.params if x.layer in frozen)


def _replay(case_name, specs_of=lambda model: model.param_specs):
    """Train the hand-written model on the case's batches; (worst error, compared, our losses,
    Caffe's losses). ``specs_of`` gives the param list handed to the Solver."""
    case = CASES[case_name]
    meta = json.loads((case / "case.json").read_text())
    batches, traj = np.load(case / "batches.npz"), np.load(case / "trajectory.npz")
    model = _model(case, MODELS[case_name]).eval()  # the case has no Dropout
    param, _ = read_solver_file(case / "solver.prototxt")
    solver = Solver(param, specs_of(model))
    init = solver.load_weights(case / "init.caffemodel").params
    loss_layer = _loss_layer(case, model)
    worst, compared, losses = 0.0, 0, []
    for k in range(meta["steps"] + 1):
        if k in meta["checkpoints"]:
            for layer, i, p, _ in model.param_specs:
                err = trajectory_error(p.detach().numpy(), traj[f"it/{k}/{layer}/{i}"],
                                       init[layer][i])
                worst, compared = max(worst, err), compared + 1
        if k == meta["steps"]:
            break
        data = torch.from_numpy(np.array(batches[f"it/{k}/data"], np.float32))
        label = torch.from_numpy(np.array(batches[f"it/{k}/label"], np.float32))

        def forward_backward():
            loss = loss_layer(model(data), label)  # SoftmaxWithLoss, normalize false: a sum
            loss.backward()
            return float(loss.detach())
        losses += solver.step(forward_backward)
    assert compared == len(meta["checkpoints"]) * len(model.param_specs)
    return worst, losses, [float(traj[f"loss/{k}/loss"]) for k in range(meta["steps"])]


@pytest.mark.parametrize("case_name", sorted(MODELS))
def test_hand_written_fcn_follows_caffes_trajectory(case_name):
    worst, losses, caffe = _replay(case_name)
    assert worst <= DEFAULT_RTOL
    assert worst <= 5e-3  # ~1.6e-3 / 1.2e-3 measured: about an ulp of the update
    np.testing.assert_allclose(losses, caffe, rtol=1e-5, atol=0)


def test_the_tolerance_sees_a_wrong_bias_multiplier():
    """Biases at lr_mult 1 (the multipliers dropped) leave Caffe's trajectory far behind."""
    def plain(model):
        return [(layer, i, p, caffe_pb2.ParamSpec(lr_mult=0 if spec.lr_mult == 0 else 1))
                for layer, i, p, spec in model.param_specs]
    worst, _, _ = _replay("sgd_fcn32s_official", plain)
    assert worst > 10 * DEFAULT_RTOL
