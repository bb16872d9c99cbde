"""Caffe's solvers, emulated exactly in float32 (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam,
every lr policy, iter_size, clipping, L1/L2 decay, snapshots and restore).

* :mod:`.lr_policy`: ``GetLearningRate`` and the ``current_step`` bookkeeping;
* :mod:`.rules`: ``ClipGradients``, ``Normalize``, ``Regularize`` and each type's
  ``ComputeUpdateValue``, registered by SolverParameter ``type``;
* :mod:`.solver`: :class:`Solver` (``Step``, ``ApplyUpdate``, ``Snapshot``, ``Restore``) over any
  model's ``(layer, i, nn.Parameter, ParamSpec)`` list;
* :mod:`.build`: the train net and solver from a solver prototxt;
* :mod:`.parity`: replay of the real-Caffe oracle solver cases;
* :mod:`.train`: ``Solver::Solve`` (:class:`Trainer`), with :mod:`.data` (batches bound to
  data layers), :mod:`.testnet` (test nets), :mod:`.distributed` (several processes),
  :mod:`.log` (CSV log, loss curves) and :mod:`.verbs` (``fcn-port train``).
"""
from ..port.lazy import exports

# imported on first use, so that `fcn-port --help` (which imports .verbs) starts without torch
_LAZY = {"forward_backward": "build", "from_solver_prototxt": "build",
         "read_solver_file": "build", "SolverError": "errors", "learning_rate": "lr_policy",
         "Learnable": "solver", "Solver": "solver", "learnable": "solver",
         "Trainer": "train", "NonFiniteError": "train", "NpzBatches": "data",
         "Feeder": "data", "register_source_factory": "data", "newest_snapshot": "snapshots"}


__getattr__ = exports(__name__, _LAZY)
__all__ = sorted(_LAZY)
