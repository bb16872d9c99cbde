"""``fcn-port bench --train``: time the iteration ``fcn-port train`` runs, and nothing else.

``bench`` lives in ``fcn_port.models.verbs`` and models may not import solvers (imports point
down: cli -> reproduce -> solvers -> models -> port), so the verb takes the timing as a hook:
:func:`train_bench` is what ``fcn_port.cli`` hands it
(``models_verbs.add_verbs(verbs, train_step=...)``).

:func:`train_bench` writes the model family's official ``solver.prototxt`` and train net
(:func:`fcn_port.models.solver_param`, :func:`fcn_port.models.net_param`: SGD, ``lr_policy: fixed``,
voc-fcn8s lr 1e-14, momentum 0.99, weight decay 5e-4, lr_mult 0 for the bilinear Deconvolutions,
SoftmaxWithLoss ``normalize: false``) into a temporary folder, builds the :class:`~.train.Trainer`
that ``fcn-port train --solver`` builds from them (the interpreter's net, the process's allocator
set as ``train`` sets it: :func:`~.train.fast_allocator`), copies the model's weights in, feeds the
data layer one fixed random batch at the asked size, and times :meth:`Trainer.iterate`:
``ClearParamDiffs``, forward, the loss, backward, the finite checks, ``ApplyUpdate``: one Caffe
``Solver::Step`` iteration, the very code ``train`` loops over. ``iter_size`` is set to 1, so one
iteration is one batch-1 pass (FCN-AlexNet's official 20 would make it 20).
"""
import os
import tempfile

import torch

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
    """``make_step`` for :func:`fcn_port.models.deploy.bench.bench_train`: the official solver's
    ``step`` over the hand-written model (benchmarks/train_step.py's rows beside the baseline)."""
    return official_solver(model).step


def _write_official(cfg, folder):
    """solver.prototxt (iter_size 1) and the train net it names, in ``folder``."""
    from fcn_port.models import net_param, solver_param
    from fcn_port.port.fileio import atomic_output
    from fcn_port.port.formats.text import to_text

    param = solver_param(cfg)
    param.iter_size = 1
    param.ClearField("test_net")
    param.ClearField("test_iter")
    param.test_interval = 0
    param.snapshot = 0
    param.snapshot_after_train = False
    train = net_param(cfg, cfg.solver.get("splits", ("train",))[0])
    with atomic_output(os.path.join(folder, param.train_net), "w") as f:
        f.write(to_text(train))
    path = os.path.join(folder, "solver.prototxt")
    with atomic_output(path, "w") as f:
        f.write(to_text(param))
    return path, train.layer[0]


def trainer_for(model, size, seed=0, device="cpu"):
    """(trainer, folder): the :class:`~.train.Trainer` of ``model``'s official solver, its net
    holding ``model``'s weights, its data layer fed one random batch of ``size`` (H, W)
    forever; ``folder`` (a TemporaryDirectory) holds its files until it is cleaned up."""
    from fcn_port.models.deploy.bench import sample_labels
    from fcn_port.models.deploy.onnx import sample_inputs

    from .train import Trainer, fast_allocator

    fast_allocator(device)
    cfg, size = model.cfg, tuple(int(s) for s in size)
    folder = tempfile.TemporaryDirectory(prefix="fcn-port-bench-")
    solver_path, data = _write_official(cfg, folder.name)
    blobs = [x.numpy() for x in sample_inputs(cfg, size, seed) + sample_labels(cfg, size, seed)]
    batch = dict(zip(data.top, blobs))
    trainer = Trainer(solver_path, sources={data.name: lambda: batch}, max_iter=2**31 - 1,
                      echo=lambda line: None, progress=False, device=device)
    state = model.state_dict()
    with torch.no_grad():
        for layer, i, param, _ in trainer.net.param_specs:
            param.copy_(state[f"{layer}.{i}"])
    return trainer, folder


def train_bench(model, size=(500, 500), runs=3, warmup=1, device="cpu"):
    """``bench --train``'s figures for ``model`` at ``size``: :meth:`Trainer.iterate` of
    :func:`trainer_for` timed ``runs`` times after ``warmup`` untimed iterations (the first
    allocates the gradients and the history). A JSON-ready report: median/min seconds, the
    GFLOP of forward + backward (3 x forward), GFLOP/s, the losses, peak RSS, the solver."""
    from fcn_port.models.deploy.bench import time_train_step, train_figures

    trainer, folder = trainer_for(model, size, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def iteration(_):  # iterate() reads the loss back (a sync); the update is waited for too
        trainer.iterate()
        sync()
        return trainer.losses[-1]
    with folder:
        r = time_train_step(iteration, None, runs, warmup)
    s = model.cfg.solver
    return {**train_figures(model, size, r), "device": str(device),
            "path": "fcn-port train's iteration",
            "solver": f"SGD lr {s.get('base_lr', 0):g} momentum {s.get('momentum', 0):g} "
                      "weight decay 0.0005"}
