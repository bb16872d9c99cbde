"""Caffe's SGD with an official model's solver values, for timing a training step.

``fcn-port bench --train`` lives in ``fcn_port.models.verbs`` (the ``bench`` verb), and models
may not import solvers (imports point down: cli -> reproduce -> solvers -> models -> port).
So the verb takes the update as a hook: :func:`official_step` is what ``fcn_port.cli`` hands
it (``models_verbs.add_verbs(verbs, train_step=...)``), and
:func:`fcn_port.models.deploy.bench.bench_train` times whatever ``make_step`` it is given.

:func:`official_step` builds a :class:`~.solver.Solver` from the official ``solver.prototxt``
values of the model's family (:func:`fcn_port.models.solver_param`: SGD, ``lr_policy: fixed``,
voc-fcn32s lr 1e-10 / voc-fcn8s 1e-14, momentum 0.99, weight decay 5e-4) over the model's
``param_specs`` (lr_mult 1/2 and decay_mult 1/0 for weights/biases, lr_mult 0 for the bilinear
Deconvolutions and at-once Scale layers) and returns its ``step``: ``ClearParamDiffs``, the
forward-backward pass, then ``ApplyUpdate`` (normalize, L2 regularize, ``history = momentum *
history + local_rate * diff``, ``data -= history``), all in place on the model's parameters.
``iter_size`` is set to 1, so one step is one batch-1 pass (FCN-AlexNet's official 20 would
make one step 20 passes).
"""
from .solver import Solver


def official_solver(model, **changes):
    """A :class:`Solver` over ``model.param_specs`` with the official solver values of
    ``model.cfg`` (``iter_size`` 1 unless ``changes`` say otherwise; ``changes`` set any
    SolverParameter field)."""
    from fcn_port.models import solver_param

    param = solver_param(model.cfg)
    param.iter_size = 1
    for field, value in changes.items():
        setattr(param, field, value)
    return Solver(param, model.param_specs)


def official_step(model):
    """``make_step`` for :func:`fcn_port.models.deploy.bench.bench_train`: the official
    solver's ``step`` (one Caffe iteration given a forward-backward function)."""
    return official_solver(model).step
