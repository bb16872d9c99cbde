"""Caffe's update rules and lr policies written out as plain float64 loops (from
``sgd_solver.cpp`` and ``src/caffe/solvers/*``), against the float32 emulation; and the
settings Caffe refuses. The oracle trajectories are the real proof; these reach the corners
(every type with clipping, iter_size, L1, changing rates, multistep's one-step-per-call)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.upgrade import upgrade_solver
from fcn_port.solvers.build import train_net
from fcn_port.solvers.errors import SolverError
from fcn_port.solvers.lr_policy import learning_rate
from fcn_port.solvers.solver import Solver, learnable


def ref_rate(p, it, step):
    """GetLearningRate, in double; returns (rate, current_step)."""
    if p.lr_policy == "fixed":
        return p.base_lr, step
    if p.lr_policy == "step":
        step = it // p.stepsize
        return p.base_lr * p.gamma ** step, step
    if p.lr_policy == "exp":
        return p.base_lr * p.gamma ** it, step
    if p.lr_policy == "inv":
        return p.base_lr * (1 + p.gamma * it) ** -p.power, step
    if p.lr_policy == "multistep":
        if step < len(p.stepvalue) and it >= p.stepvalue[step]:
            step += 1
        return p.base_lr * p.gamma ** step, step
    if p.lr_policy == "poly":
        return p.base_lr * (1 - it / p.max_iter) ** p.power, step
    if p.lr_policy == "sigmoid":
        return p.base_lr / (1 + math.exp(-p.gamma * (it - p.stepsize))), step


def ref_apply(p, data, diffs, hist, lr_mult, decay_mult, it, step):
    """SGDSolver::ApplyUpdate over float64 arrays, element by element as Caffe's loops do."""
    rate, step = ref_rate(p, it, step)
    if p.clip_gradients >= 0:
        norm = math.sqrt(sum(float((d * d).sum()) for d in diffs))
        if norm > p.clip_gradients:
            diffs = [d * (p.clip_gradients / norm) for d in diffs]
    n = len(data)
    for k in range(n):
        g, w = diffs[k] / p.iter_size, data[k]
        decay = p.weight_decay * decay_mult[k]
        if decay:
            g = g + decay * (w if p.regularization_type == "L2" else np.sign(w))
        lr = rate * lr_mult[k]
        if p.type == "SGD":
            hist[k] = lr * g + p.momentum * hist[k]
            g = hist[k]
        elif p.type == "Nesterov":
            old = hist[k].copy()
            hist[k] = lr * g + p.momentum * hist[k]
            g = (1 + p.momentum) * hist[k] - p.momentum * old
        elif p.type == "AdaGrad":
            hist[k] = hist[k] + g * g
            g = lr * g / (np.sqrt(hist[k]) + p.delta)
        elif p.type == "RMSProp":
            hist[k] = (1 - p.rms_decay) * g * g + p.rms_decay * hist[k]
            g = lr * g / (np.sqrt(hist[k]) + p.delta)
        elif p.type == "AdaDelta":
            hist[k] = (1 - p.momentum) * g * g + p.momentum * hist[k]
            g = g * np.sqrt((hist[n + k] + p.delta) / (hist[k] + p.delta))
            hist[n + k] = (1 - p.momentum) * g * g + p.momentum * hist[n + k]
            g = lr * g
        elif p.type == "Adam":
            t = it + 1
            corr = math.sqrt(1 - p.momentum2 ** t) / (1 - p.momentum ** t)
            hist[k] = (1 - p.momentum) * g + p.momentum * hist[k]
            hist[n + k] = (1 - p.momentum2) * g * g + p.momentum2 * hist[n + k]
            g = lr * corr * hist[k] / (np.sqrt(hist[n + k]) + p.delta)
        diffs[k] = g
    return [w - g for w, g in zip(data, diffs)], step


TYPES = {"SGD": dict(momentum=0.9), "Nesterov": dict(momentum=0.9), "AdaGrad": {},
         "RMSProp": dict(rms_decay=0.9), "AdaDelta": dict(momentum=0.95, base_lr=1.0),
         "Adam": dict(momentum=0.9, momentum2=0.999)}


@pytest.mark.parametrize("kind", sorted(TYPES))
@pytest.mark.parametrize("variant", [
    dict(lr_policy="step", stepsize=2, gamma=0.5),
    dict(lr_policy="multistep", stepvalue=[1, 3, 3], gamma=0.3, iter_size=2,
         regularization_type="L1", clip_gradients=0.5),
])
def test_every_rule_follows_caffes_loops(kind, variant):
    values = dict(type=kind, base_lr=0.05, weight_decay=0.01, delta=1e-6, **variant)
    values.update(TYPES[kind])
    p = caffe_pb2.SolverParameter(**values)
    gen = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.randn(3, 4, generator=gen)), nn.Parameter(torch.randn(5, generator=gen))]
    specs = [("a", 0, params[0], caffe_pb2.ParamSpec(lr_mult=1, decay_mult=1)),
             ("a", 1, params[1], caffe_pb2.ParamSpec(lr_mult=2, decay_mult=0.5))]
    solver = Solver(p, specs)
    data = [t.detach().double().numpy().copy() for t in params]
    init = [d.copy() for d in data]
    hist = [np.zeros_like(d) for d in data] * (2 if kind in ("AdaDelta", "Adam") else 1)
    hist = [h.copy() for h in hist]
    step = 0
    for it in range(7):
        grads = [torch.randn(t.shape, generator=gen) for t in params]
        for t, g in zip(params, grads):
            t.grad = g.clone()
        solver.apply_update()
        data, step = ref_apply(p, data, [g.double().numpy() for g in grads], hist, [1, 2],
                               [1, 0.5], it, step)
    assert solver.iter == 7 and solver.current_step == step
    for t, ref, start in zip(params, data, init):
        err = np.abs(t.detach().double().numpy() - ref).max() / np.abs(ref - start).max()
        assert err < 1e-4, (kind, err)  # float32 data: AdaDelta moves ~1e-3, data ulp ~1e-7


POLICIES = [dict(lr_policy="fixed"), dict(lr_policy="step", stepsize=3, gamma=0.1),
            dict(lr_policy="exp", gamma=0.9), dict(lr_policy="inv", gamma=0.1, power=0.75),
            dict(lr_policy="multistep", gamma=0.5, stepvalue=[2, 5, 5, 9]),
            dict(lr_policy="poly", max_iter=20, power=0.9),
            dict(lr_policy="sigmoid", gamma=-0.5, stepsize=4)]


@pytest.mark.parametrize("values", POLICIES, ids=[v["lr_policy"] for v in POLICIES])
def test_lr_policies_follow_caffes_formulas(values):
    p = caffe_pb2.SolverParameter(base_lr=0.02, **values)
    ours, ref = 0, 0
    for it in range(16):
        rate, ours = learning_rate(p, it, ours)
        expected, ref = ref_rate(p, it, ref)
        assert isinstance(rate, np.float32) and ours == ref
        assert abs(float(rate) - expected) <= 2e-7 * abs(expected), (it, rate, expected)


def test_multistep_advances_one_stepvalue_per_call():
    p = caffe_pb2.SolverParameter(base_lr=1, lr_policy="multistep", gamma=0.5, stepvalue=[2, 5, 5])
    steps = [learning_rate(p, it, 0)[1] for it in (0, 1, 2, 9)]
    assert steps == [0, 0, 1, 1]  # from current_step 0, one call moves at most one step
    step, seen = 0, []
    for it in range(8):
        rate, step = learning_rate(p, it, step)
        seen.append(step)
    assert seen == [0, 0, 1, 1, 1, 2, 3, 3]  # the repeated stepvalue 5 takes effect at 6


@pytest.mark.parametrize("values, field", [
    (dict(lr_policy="cosine"), "cosine"), (dict(lr_policy="step", gamma=0.1), "stepsize"),
    (dict(lr_policy="sigmoid", gamma=1), "stepsize"), (dict(lr_policy="exp", gamma=-1), "gamma"),
    (dict(lr_policy="poly", power=1), "max_iter"), (dict(), "unknown learning rate policy ''"),
])
def test_bad_lr_settings_name_the_field(values, field):
    with pytest.raises(SolverError, match=field):
        learning_rate(caffe_pb2.SolverParameter(base_lr=1, **values), 0, 0)


def _param(**kw):
    return caffe_pb2.SolverParameter(base_lr=0.1, lr_policy="fixed", **kw)


@pytest.mark.parametrize("values, message", [
    (dict(type="AdaGrad", momentum=0.9), "momentum"), (dict(type="RMSProp", rms_decay=1.0), "rms_decay"),
    (dict(type="Momentum"), "unknown solver type 'Momentum'"), (dict(iter_size=0), "iter_size"),
    (dict(solver_type=caffe_pb2.SolverParameter.NESTEROV), "solver_type"),
])
def test_settings_caffe_refuses(values, message):
    p = nn.Parameter(torch.zeros(2))
    with pytest.raises(SolverError, match=message):
        Solver(_param(**values), [("a", 0, p, caffe_pb2.ParamSpec())])


def test_legacy_solver_type_works_once_upgraded():
    param = _param(solver_type=caffe_pb2.SolverParameter.ADAM)
    upgrade_solver(param)
    solver = Solver(param, [("a", 0, nn.Parameter(torch.zeros(2)), None)])
    assert solver.param.type == "Adam" and len(solver.history) == 2


def test_unknown_regularization_fails_only_when_it_is_used():
    p = nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    Solver(_param(regularization_type="L3"), [("a", 0, p, None)]).apply_update()  # no decay: fine
    with pytest.raises(SolverError, match="L3"):
        Solver(_param(regularization_type="L3", weight_decay=0.1), [("a", 0, p, None)]).apply_update()


def test_learnable_params_are_caffes_shared_ones_once_with_the_owners_multipliers():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))
    specs = [("l1", 0, a, caffe_pb2.ParamSpec(name="w")),
             ("l1", 1, b, caffe_pb2.ParamSpec(lr_mult=2)),
             ("l2", 0, a, caffe_pb2.ParamSpec(name="w", lr_mult=3, decay_mult=0))]
    out = learnable(specs)
    assert [(lp.layer, lp.index, lp.lr_mult, lp.decay_mult) for lp in out] == \
        [("l1", 0, 3, 0), ("l1", 1, 2, 1)]  # the owner set neither: the sharer supplies them
    specs.append(("l3", 0, a, caffe_pb2.ParamSpec(name="w", lr_mult=4)))
    with pytest.raises(SolverError, match="mismatched lr_mult"):
        learnable(specs)


def test_lr_mult_zero_params_get_no_gradient_and_do_not_move():
    w, c = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    solver = Solver(_param(momentum=0.9, weight_decay=0.1),
                    [("up", 0, w, caffe_pb2.ParamSpec(lr_mult=0)), ("fc", 0, c, None)])
    assert not w.requires_grad and c.requires_grad
    losses = solver.step(lambda: float((w * c).sum().backward() or 3.0), n=2)
    assert losses == [3.0, 3.0] and torch.equal(w, torch.ones(3)) and not torch.equal(c, torch.ones(3))
    assert torch.equal(solver.history[0], torch.zeros(3))


def test_train_net_needs_exactly_one_source_and_merges_the_net_state():
    with pytest.raises(SolverError, match="exactly one train net"):
        train_net(_param())
    net = caffe_pb2.NetParameter(name="n", state=caffe_pb2.NetState(level=2))
    param = _param(net_param=net, train_state=caffe_pb2.NetState(stage=["x"]))
    net_param, phase, level, stages = train_net(param)
    assert (phase, level, stages) == ("TRAIN", 2, ("x",))
    with pytest.raises(SolverError, match="exactly one"):
        train_net(_param(net_param=net, net="other.prototxt"))
