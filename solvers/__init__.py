"""Caffe's solvers, emulated exactly in float32 (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam,
every lr policy, iter_size, clipping, L1/L2 decay, snapshots and restore).

* :mod:`.lr_policy`: ``GetLearningRate`` and the ``current_step`` bookkeeping;
* :mod:`.rules`: ``ClipGradients``, ``Normalize``, ``Regularize`` and each type's
  ``ComputeUpdateValue``, registered by SolverParameter ``type``;
* :mod:`.solver`: :class:`Solver` (``Step``, ``ApplyUpdate``, ``Snapshot``, ``Restore``) over any
  model's ``(layer, i, nn.Parameter, ParamSpec)`` list;
* :mod:`.build`: the train net and solver from a solver prototxt;
* :mod:`.parity`: replay of the real-Caffe oracle solver cases.
"""
from .build import forward_backward, from_solver_prototxt, read_solver_file
from .errors import SolverError
from .lr_policy import learning_rate
from .solver import Learnable, Solver, learnable

__all__ = ["Learnable", "Solver", "SolverError", "forward_backward", "from_solver_prototxt",
           "learnable", "learning_rate", "read_solver_file"]
