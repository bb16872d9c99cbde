"""Caffe's solver loop and its state (``solver.cpp``: ``Solver::Step``, ``Snapshot``, ``Restore``).

How Caffe runs an iteration (``Solver::Step``, BVLC master)
-----------------------------------------------------------
1. ``ClearParamDiffs``: every param diff = 0.
2. ``iter_size`` times ``loss += net->ForwardBackward()``: each pass adds its gradient into the
   diffs; then ``loss /= iter_size`` (float) and ``UpdateSmoothedLoss`` (running mean over the
   last ``average_loss`` losses of this ``Step`` call).
3. ``ApplyUpdate`` (:mod:`.rules`): the rate for the current ``iter_``, clip, then per learnable
   param normalize, regularize and compute the update, ``Net::Update`` (``data -= diff``), and
   ``++iter_`` (in BVLC master the increment is inside ``SGDSolver::ApplyUpdate``, and so it is
   in :meth:`Solver.apply_update`).
4. ``snapshot && iter_ % snapshot == 0``: ``Snapshot()``.

Learnable params are Caffe's ``learnable_params_`` (``Net::AppendParam``): every param blob in
layer order, except that a blob shared by name (``ParamSpec.name``) appears once, at its owner.
The owner's ``lr_mult``/``decay_mult`` apply; a sharer that sets one the owner did not set
supplies it, a sharer that sets a different one is an error. A param with ``lr_mult: 0`` gets no
gradient in Caffe (``set_param_propagate_down(false)``): here its ``requires_grad`` is turned
off, so it is not computed either, and its diff counts as 0 (weight decay still enters the
history arithmetic, multiplied by a zero rate, exactly as in Caffe).

Snapshots (``Solver::Snapshot``): the weights go to ``<prefix>_iter_<N>.caffemodel`` (binary,
``Net::ToProto`` of the TRAIN net) or ``<prefix>_iter_<N>.caffemodel.h5`` (``Net::ToHDF5``), then
the state to ``.solverstate`` / ``.solverstate.h5``; ``learned_net`` is the weights file's name
exactly as formed from ``snapshot_prefix``. Names are relative to the current directory, as in
Caffe. ``Restore`` picks HDF5 by the ``.h5`` ending and reloads ``learned_net`` (by layer name)
before the history.

Where fcn-port differs: Caffe writes both files in place (``WriteProtoToBinaryFile``,
``H5Fcreate``), so a crash mid-write leaves a truncated file under the final name, possibly the
newest. Here each file goes to a hidden temporary name and is renamed when complete, fsync'ed
(``durable_writes``) so that the caffemodel is on disk before the solverstate naming it: a
crash at any point leaves the newest complete ``.solverstate`` naming a complete caffemodel
(:func:`.snapshots.newest_snapshot` finds it; the killed write's ``.part`` file is all that is
left, and the trainer removes it, :func:`.snapshots.prepare_snapshots`).
"""
import os

import numpy as np
import torch

from fcn_port.port.fileio import durable_writes
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.solverstate import SolverState, read_solverstate, write_solverstate

from . import lr_policy, rules
from .errors import SolverError
from .lr_policy import learning_rate

F32 = np.float32


class Learnable:
    """One entry of Caffe's ``learnable_params_``: the owner's (layer, blob index), the
    parameter, and the resolved ``lr_mult`` / ``decay_mult``."""

    __slots__ = ("layer", "index", "param", "lr_mult", "decay_mult")

    def __init__(self, layer, index, param, lr_mult, decay_mult):
        self.layer, self.index, self.param = layer, index, param
        self.lr_mult, self.decay_mult = lr_mult, decay_mult

    def __repr__(self):
        return (f"Learnable({self.layer}.{self.index}, {tuple(self.param.shape)}, "
                f"lr_mult={self.lr_mult}, decay_mult={self.decay_mult})")


def learnable(param_specs):
    """Caffe's learnable params from ``(layer, i, nn.Parameter, ParamSpec)`` tuples in Caffe's
    param order (``CaffeNet.param_specs``): shared ones deduplicated by identity, multipliers
    resolved as ``Net::AppendParam`` does."""
    out, owner = [], {}  # out: [Learnable, has lr_mult, has decay_mult]
    for layer, i, p, spec in param_specs:
        spec = spec if spec is not None else caffe_pb2.ParamSpec()
        k = owner.get(id(p))
        if k is None:
            owner[id(p)] = len(out)
            out.append([Learnable(layer, i, p, spec.lr_mult, spec.decay_mult),
                        spec.HasField("lr_mult"), spec.HasField("decay_mult")])
            continue
        entry = out[k]
        for has, field in ((1, "lr_mult"), (2, "decay_mult")):
            if not spec.HasField(field):
                continue
            mine, theirs = getattr(spec, field), getattr(entry[0], field)
            if entry[has] and mine != theirs:
                raise SolverError(f"layer '{layer}': shared param '{spec.name}' has mismatched "
                                  f"{field} ({mine} here, {theirs} at its owner "
                                  f"'{entry[0].layer}')")
            setattr(entry[0], field, mine)
            entry[has] = True
    return [entry[0] for entry in out]


class Solver:
    """Caffe's ``SGDSolver`` family over a list of parameters.

    ``param``: a SolverParameter (``type`` already upgraded from ``solver_type``); ``params``:
    ``(layer, i, nn.Parameter, ParamSpec)`` tuples in Caffe's param order, shared params repeated
    (``CaffeNet.param_specs``, or the same from a hand-written model). ``net_param`` (the train
    NetParameter) is needed only to write snapshots; ``root`` is where :meth:`restore` looks for a
    ``learned_net`` not found from the current directory (the solver file's folder).

    State: ``iter`` (updates done), ``current_step`` (lr schedule), ``history`` (float32 tensors
    in Caffe's ``history_`` order: one per learnable param, a second set for AdaDelta and Adam),
    ``smoothed_loss``.
    """

    def __init__(self, param, params, *, net_param=None, root=None, phase="TRAIN"):
        self.param = caffe_pb2.SolverParameter()
        self.param.CopyFrom(param)
        self.rule = rules.rule_for(self.param)
        lr_policy.check(self.param)
        if self.param.average_loss < 1:
            raise SolverError(f"average_loss: must be >= 1, got {self.param.average_loss}")
        if self.param.iter_size < 1:
            raise SolverError(f"iter_size: must be >= 1, got {self.param.iter_size}")
        self.param_specs = list(params)
        self.params = learnable(self.param_specs)
        for lp in self.params:
            if lp.lr_mult == 0:
                lp.param.requires_grad_(False)
        self.history = [torch.zeros_like(lp.param, memory_format=torch.contiguous_format)
                        for _ in range(self.rule.history_sets) for lp in self.params]
        self.iter, self.current_step = 0, 0
        self.net_param, self.root, self.phase = net_param, root, phase
        self.smoothed_loss, self._losses, self._start = 0.0, [], 0

    # ---- one iteration ---------------------------------------------------------------------

    def step(self, forward_backward, n=1, *, snapshot=False):
        """Run ``n`` iterations (Caffe's ``Step(n)``); return the loss of each, in order.

        ``forward_backward()`` runs one forward and backward pass of the net's summed loss (the
        gradients add into ``param.grad``) and returns the loss as a number; it is called
        ``iter_size`` times per iteration, so it supplies each pass's batch itself. With
        ``snapshot``, Caffe's snapshots are written when ``iter % snapshot == 0``."""
        losses = []
        self.begin()
        for _ in range(n):
            losses.append(self.accumulate(forward_backward))
            self.apply_update()
            if snapshot and self.param.snapshot and self.iter % self.param.snapshot == 0:
                self.snapshot()
        return losses

    def begin(self):
        """The start of Caffe's ``Step``: the smoothed-loss window (``losses_``) restarts here."""
        self._start, self.smoothed_loss, self._losses = self.iter, 0.0, []

    def accumulate(self, forward_backward):
        """The first half of one ``Step`` iteration: ``ClearParamDiffs``, ``iter_size`` calls of
        ``forward_backward`` (gradients add up), ``loss /= iter_size`` and
        ``UpdateSmoothedLoss``. Returns the iteration's loss; :meth:`apply_update` follows
        (a multi-process run all-reduces the gradients in between, as Caffe's
        ``on_gradients_ready`` callbacks do)."""
        for lp in self.params:
            lp.param.grad = None  # ClearParamDiffs
        size = self.param.iter_size
        loss = F32(0)
        for _ in range(size):
            loss = F32(loss + F32(forward_backward()))
        loss = F32(loss / F32(size))
        self._smooth(loss, self._start)
        return float(loss)

    def _smooth(self, loss, start):
        """``Solver::UpdateSmoothedLoss``: mean of the last ``average_loss`` losses (float)."""
        avg, smoothed = self.param.average_loss, F32(self.smoothed_loss)
        if len(self._losses) < avg:
            self._losses.append(loss)
            size = F32(len(self._losses))
            smoothed = (smoothed * (size - F32(1)) + loss) / size
        else:
            idx = (self.iter - start) % avg
            smoothed = smoothed + (loss - self._losses[idx]) / F32(avg)
            self._losses[idx] = loss
        self.smoothed_loss = float(smoothed)

    def learning_rate(self):
        """``GetLearningRate`` at the current ``iter`` (advances ``current_step`` as Caffe does)."""
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        return rate

    def apply_update(self):
        """``SGDSolver::ApplyUpdate`` on the gradients in ``param.grad``: clip, normalize,
        regularize, compute the update into the diff, ``data -= diff``, ``iter += 1``.
        Returns the learning rate used (a float32 value)."""
        rate = self.learning_rate()
        diffs = [self._diff(lp) for lp in self.params]
        rules.clip_gradients(diffs, self.param.clip_gradients)
        n, decay = len(self.params), F32(self.param.weight_decay)
        with torch.no_grad():
            for k, (lp, diff) in enumerate(zip(self.params, diffs)):
                rules.normalize(diff, self.param.iter_size)
                rules.regularize(diff, lp.param, float(decay * F32(lp.decay_mult)),
                                 self.param.regularization_type)
                update = self.rule.gpu if diff.device.type == "cuda" else self.rule.update
                update(diff, self.history[k::n], float(rate * F32(lp.lr_mult)), self.param,
                       self.iter)
            for lp, diff in zip(self.params, diffs):  # Net::Update
                lp.param.sub_(diff)
        self.iter += 1
        return float(rate)

    @staticmethod
    def _diff(lp):
        p = lp.param
        if p.grad is None or lp.lr_mult == 0:  # Caffe: a cleared diff nothing wrote into
            p.grad = torch.zeros_like(p, memory_format=torch.contiguous_format)
        return p.grad

    # ---- state -------------------------------------------------------------------------------

    def state(self, learned_net=""):
        """The solver's :class:`SolverState` (history as float32 numpy arrays)."""
        return SolverState(self.iter, self.current_step, learned_net,
                           [h.detach().to("cpu", torch.float32).numpy() for h in self.history])

    def restore(self, state, *, root=None, weights=True):
        """Caffe's ``Solver::Restore`` from a SolverState or a ``.solverstate[.h5]`` path
        (Caffe picks the HDF5 reader by the ``.h5`` ending; here the file's content decides).

        Like Caffe: ``learned_net`` (when set and ``weights``) is loaded by layer name first,
        then ``iter``, ``current_step`` and the history (same count as this solver's, each of
        its param's size). Caffe opens ``learned_net`` relative to the current directory; when it
        is not there this looks relative to ``root`` (default: the solver's ``root``, the solver
        file's folder), then for its file name beside the state file. Returns the weights path
        loaded (or None)."""
        if not isinstance(state, SolverState):
            state = read_solverstate(state)
        where = state.path or "solver state"
        loaded = None
        if weights and state.learned_net:
            loaded = self._find_learned_net(state, root if root is not None else self.root)
            self.load_weights(loaded)
        if len(state.history) != len(self.history):
            raise SolverError(f"{where}: {len(state.history)} history blobs, this {self.param.type} "
                              f"solver has {len(self.history)} (Caffe: incorrect length of "
                              "history blobs)")
        with torch.no_grad():
            for k, (h, a) in enumerate(zip(self.history, state.history)):
                a = np.asarray(a, dtype=np.float32)
                if a.size != h.numel():
                    raise SolverError(f"{where}: history blob {k} has {a.size} values, param "
                                      f"{self._name(k)} has {h.numel()}")
                h.copy_(torch.from_numpy(a.copy()).reshape(h.shape))
        self.iter, self.current_step = state.iter, state.current_step
        return loaded

    def _name(self, k):
        lp = self.params[k % len(self.params)]
        return f"{lp.layer}.{lp.index}"

    def _find_learned_net(self, state, root):
        return _learned_net_path(state, root)

    def load_weights(self, weights):
        """``Net::CopyTrainedLayersFrom`` into this solver's params: a caffemodel path (binary
        or HDF5) or ``Weights``; blobs go by (layer name, index), layers the net lacks are
        ignored, blob counts and shapes must agree."""
        from fcn_port.port.net import copy_trained_layers

        targets = {}
        for layer, i, p, _ in self.param_specs:
            targets.setdefault(layer, []).append(p)
        return copy_trained_layers(weights, targets, SolverError)

    # ---- snapshots ----------------------------------------------------------------------------

    def snapshot(self, prefix=None, *, hdf5=None, net_param=None):
        """``Solver::Snapshot``: write ``<prefix>_iter_<iter>.caffemodel[.h5]`` (the TRAIN net's
        ``Net::ToProto`` header and the current weights) and then the ``.solverstate[.h5]``
        whose ``learned_net`` is that file's name. ``prefix`` defaults to ``snapshot_prefix``,
        ``hdf5`` to ``snapshot_format == HDF5``; each file is written whole or not at all.
        Returns (weights path, state path)."""
        from fcn_port.port.net import sharers, to_proto
        from fcn_port.port.formats.caffemodel import write_weights
        from fcn_port.port.formats.hdf5 import write_hdf5_weights

        prefix = prefix if prefix is not None else self.param.snapshot_prefix
        net_param = net_param if net_param is not None else self.net_param
        if not prefix:
            raise SolverError("snapshot_prefix: not set; Caffe needs it to name snapshots")
        if net_param is None:
            raise SolverError("snapshot: the solver was built without its net_param")
        if self.param.snapshot_diff:
            raise SolverError("snapshot_diff: writing diffs into snapshots is not supported")
        if hdf5 is None:
            hdf5 = self.param.snapshot_format == caffe_pb2.SolverParameter.HDF5
        base = f"{os.fspath(prefix)}_iter_{self.iter}"
        model = base + (".caffemodel.h5" if hdf5 else ".caffemodel")
        params = {}
        for layer, i, p, _ in self.param_specs:  # shared params: under every layer (binary)
            params.setdefault(layer, []).append(p.detach().to("cpu", torch.float32).numpy())
        header = to_proto(net_param, self.phase)
        state = base + (".solverstate.h5" if hdf5 else ".solverstate")
        if os.path.dirname(base):  # Caffe fails on a missing folder; here it is made
            os.makedirs(os.path.dirname(base), exist_ok=True)
        with durable_writes():  # the weights on disk before the state that names them
            if hdf5:  # a shared param under its owner only, as Net::ToHDF5
                write_hdf5_weights(params, model, net=header,
                                   shared=sharers((l, i, p) for l, i, p, _ in self.param_specs))
            else:
                write_weights(params, model, net=header)
            write_solverstate(self.state(model), state, hdf5=hdf5)
        return model, state


def _learned_net_path(state, root):
    """Where ``state.learned_net`` is (see :meth:`Solver.restore`); SolverError if nowhere."""
    name = state.learned_net
    tried = [name]
    if os.path.isfile(name):  # a regular file only: a FIFO named there would block the read
        return name
    if root is not None and not os.path.isabs(name):
        tried.append(os.path.join(root, name))
        if os.path.isfile(tried[-1]):
            return tried[-1]
    if state.path:
        tried.append(os.path.join(os.path.dirname(state.path), os.path.basename(name)))
        if os.path.isfile(tried[-1]):
            return tried[-1]
    raise SolverError(f"{state.path or 'solver state'}: learned_net '{name}' not found "
                      f"(tried {', '.join(tried)})")
