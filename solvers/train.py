"""Caffe's training loop (``solver.cpp``: ``Solver::Solve``, ``Solver::Step``, ``Solver::TestAll``).

What Caffe does, and :class:`Trainer` mirrors
----------------------------------------------
``Solver::Init``: ``Caffe::set_random_seed(random_seed)`` when ``random_seed >= 0`` (before the
nets are built, so fillers are seeded too), the train net, the test nets. ``caffe train``
(``tools/caffe.cpp``) refuses ``--snapshot`` together with ``--weights``, copies ``--weights``
in, and installs a ``SignalHandler`` with its defaults ``--sigint_effect stop`` and
``--sighup_effect snapshot``.

``Solve``: ``Restore`` the ``--snapshot``, ``Step(max_iter - iter_)``; then, unless it just
wrote one, ``Snapshot`` when ``snapshot_after_train`` (default true); stop there if a stop was
requested (``Optimization stopped early.``); else one more forward-only pass to display the
loss when ``iter_ % display == 0``, ``TestAll`` when ``iter_ % test_interval == 0``, and
``Optimization Done.``

``Step``, per iteration: ``TestAll`` when ``test_interval`` divides ``iter_`` (at 0 only with
``test_initialization``); ``ClearParamDiffs``; ``iter_size`` forward/backward passes; the mean
loss into ``UpdateSmoothedLoss`` (mean of the last ``average_loss``); on ``display`` iterations
``Iteration N, loss = <smoothed>`` and ``Train net output #i: <blob> = <v>`` for each element
of each output blob (of the last pass; `` (* w = w*v loss)`` for losses);
``on_gradients_ready`` callbacks (the multi-GPU all-reduce, :mod:`.distributed`);
``ApplyUpdate`` (which prints ``Iteration N, lr = <rate>`` on display iterations);
``++iter_``; ``GetRequestedAction``: a scheduled snapshot (``iter_ % snapshot == 0``) or a
requested one is written, a requested stop leaves the loop.

Where fcn-port differs
----------------------
* SIGTERM is treated like SIGINT (stop; ``caffe train`` ignores it and dies without a
  snapshot), so a batch system's polite kill keeps the work. Handlers are installed only in
  the main thread and restored afterwards.
* **Non-finite values stop training** (Caffe trains on): a NaN/Inf loss or gradient stops
  before the update, naming the iteration and the first layer in net order with a non-finite
  top (the passes are re-run without gradients to find it) or param gradient; a non-finite
  weight after an update names the first param it appears in. Nothing is snapshotted after
  that, so the last good snapshot stays the newest (snapshots are written atomically).
* The ``Iteration N, loss = X`` line omits Caffe master's ``(x iter/s, ys/N iters)``: the
  progress bar (tqdm, stderr, only on a terminal) shows the speed. Numbers print as C++
  streams do (6 significant digits).
* Snapshot folders are created when missing and checked writable before training (Caffe
  fails at the first snapshot); snapshots are written atomically in order (weights, then the
  state naming them), so a kill leaves the newest complete state resumable; the ``.part``
  files a killed run left beside them are removed at the next start.
* Every iteration goes to ``<snapshot_prefix>_log.csv``, and a loss curve to
  ``<snapshot_prefix>_loss.png`` at the end (:mod:`.log`).
* Test nets are built only when the run will test (:mod:`.testnet`).
* With several processes, process ``r`` seeds ``random_seed + r`` (its own dropout masks);
  the weights are rank 0's, broadcast at the start.
"""
import math
import os
import sys

import numpy as np
import torch

from fcn_port.port.errors import UserInputError

from . import distributed
from .build import from_solver_prototxt, read_solver_file
from .data import Feeder, source_layers
from .errors import SolverError
from .log import TrainLog
from .signals import NoSignals, SignalActions
from .snapshots import prepare_snapshots
from .testnet import build_test_nets, declared, loss_weights, tests_due

F32 = np.float32


class NonFiniteError(SolverError):
    """Training met a NaN or Inf loss, gradient or weight; the message names the iteration and
    the first layer where it appeared. ``found_here``: this process found it (with several,
    every one stops, and only the finder, or the root for the shared gradient, reports it)."""

    def __init__(self, message, found_here=True):
        super().__init__(message)
        self.found_here = found_here


def fast_allocator(device):
    """On CPU, let glibc keep freed memory (:func:`fcn_port.models.deploy.bench.keep_freed_memory`):
    autograd frees and re-allocates the activations and gradients every iteration, and big blocks
    mapped afresh are first-touched again each time (benchmarks/README.md: the step took half
    the time with it). The numbers are unchanged. Process-wide, so ``fcn-port train`` and
    ``bench --train`` call it, not the library."""
    if torch.device(device).type == "cpu":
        from fcn_port.models.deploy.bench import keep_freed_memory

        keep_freed_memory()


def _g(x):
    return f"{x:g}"


class Trainer:
    """A solver prototxt's training run, as ``caffe train --solver``.

    ``sources`` / ``test_sources``: the train / test nets' batches (:class:`~.data.Feeder`: a
    source, or ``{data layer name: source}``); ``python_layers``: code for ``Python`` layers
    with bottoms; ``weights``: a caffemodel to start from; ``snapshot``: a ``.solverstate[.h5]``
    to resume; ``max_iter`` overrides the solver's. ``echo(line)`` prints log lines (rank 0);
    ``progress``: a tqdm bar on stderr when it is a terminal. ``group``: this process's
    :class:`~.distributed.Group`. ``hooks``: objects with ``after_iter(trainer)`` (after each
    iteration) and ``at_end(trainer)`` (once, unless training failed), e.g. :mod:`.evalhook`.
    ``data_order``: ``"continuous"`` or ``"caffe"`` (:class:`~.data.Feeder`)."""

    def __init__(self, solver_path, *, sources=None, test_sources=None, python_layers=None,
                 weights=None, snapshot=None, max_iter=None, device="cpu", group=None,
                 echo=print, progress=True, hooks=(), data_order="continuous"):
        if weights is not None and snapshot is not None:
            raise UserInputError("give --snapshot to resume training or --weights to finetune, "
                                 "not both (as caffe train)")
        self.group = group or distributed.Group(device=device)
        self.device, self.progress = self.group.device, progress and self.group.root
        self._echo = echo if self.group.root else (lambda line: None)
        param, _ = read_solver_file(solver_path)
        if max_iter is not None:
            param.max_iter = max_iter
        self.param, root = param, os.path.dirname(os.path.abspath(solver_path))
        if param.random_seed >= 0:
            torch.manual_seed(param.random_seed + self.group.rank)

        def shapes(layers, phase):  # the data sources bound to the train net's data layers
            self.feeder = Feeder(source_layers(layers, python_layers or {}), sources,
                                 phase=phase, root=root, rank=self.group.rank,
                                 world=self.group.world, iter_size=param.iter_size,
                                 what="train net", order=data_order,
                                 seed=param.random_seed if param.random_seed >= 0 else None)
            return self.feeder.shapes()
        self.solver, self.net = from_solver_prototxt(
            solver_path, weights=weights, param=param, shapes=shapes, device=self.device,
            python_layers=python_layers)
        for line in self.feeder.feeds:
            self._echo(line)
        self.restored = None
        if self.group.root:  # the folder made and writable now, a killed run's .part removed
            for part in prepare_snapshots(param.snapshot_prefix, solver_path):
                self._echo(f"Removed {part} (a snapshot cut short by an earlier run)")
        if snapshot is not None:
            self._echo(f"Restoring previous solver status from {snapshot}")
            self.restored = self.solver.restore(snapshot)
        distributed.broadcast_state(self.group, self.solver)
        self.feeder.start = self.solver.iter  # "caffe" order: the data layers start here
        self.tests, self.test_results = [], []
        if tests_due(param, self.solver.iter, param.max_iter) and self.group.root:
            self.tests = build_test_nets(param, self.net, test_sources, root=root,
                                         device=self.device, python_layers=python_layers)
        elif declared(param) and self.group.root:
            self._echo(f"Test net(s) not built: test_interval {param.test_interval} is not "
                       f"reached by max_iter {param.max_iter} (test_initialization: "
                       f"{str(param.test_initialization).lower()})")
        self.outputs = sorted(self.net.outputs)
        self.weights_of = loss_weights(self.net)
        self.losses, self.early_exit, self.failed, self.snapshots = [], False, False, []
        self._last_snap, self._bar, self.hooks = None, None, list(hooks)

    # ---- output -----------------------------------------------------------------------------

    def echo(self, line):
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
            sys.stdout.flush()
        else:
            self._echo(line)

    def _outputs_lines(self, title, scores):
        for i, (blob, v, w) in enumerate(scores):
            extra = f" (* {_g(w)} = {_g(float(F32(w) * F32(v)))} loss)" if w else ""
            self.echo(f"    {title} net output #{i}: {blob} = {_g(v)}{extra}")

    # ---- one iteration's pieces ----------------------------------------------------------------

    def _pass(self):
        feed = self.feeder(self.solver.iter, len(self._feeds), self.device)
        self._feeds.append(feed)
        out = self.net(record=self.net.loss_keys, **feed)
        loss = self.net.loss(out["_tops"])
        if torch.is_tensor(loss) and loss.requires_grad:
            loss.backward()
        self._last = {b: out[b].detach() for b in self.outputs}
        return float(loss.detach()) if torch.is_tensor(loss) else float(loss)

    def _train_scores(self):
        return [(b, float(x), self.weights_of.get(b, 0.0)) for b in self.outputs
                for x in self._last[b].reshape(-1).to("cpu", torch.float32).tolist()]

    def _first_bad_top(self):
        """Re-run this iteration's passes without gradients; the first non-finite top."""
        with torch.no_grad():
            for feed in self._feeds:
                tops = self.net(record=True, **feed)["_tops"]
                for lp in self.net.layer_params:
                    for i, t in enumerate(lp.top):
                        v = tops.get((lp.name, i))
                        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all():
                            return f"layer '{lp.name}' ({lp.type}), top '{t}'"
        return "no layer on a re-run (the value did not recur)"

    def _first_bad(self, grads):
        for lp in self.solver.params:
            t = lp.param.grad if grads else lp.param
            if t is not None and not torch.isfinite(t).all():
                return f"layer '{lp.layer}' param {lp.index}"
        return None

    @staticmethod
    def _all_finite(tensors):
        sums = [t.detach().sum(dtype=torch.float64) for t in tensors if t is not None]
        return not sums or bool(torch.isfinite(torch.stack(sums).sum()))

    # ---- the loop ---------------------------------------------------------------------------

    def snapshot(self):
        if not self.group.root or self._last_snap == self.solver.iter or self.failed:
            return
        hdf5 = self.param.snapshot_format == self.param.HDF5
        model, state = self.solver.snapshot()
        kind = "HDF5 file" if hdf5 else "binary proto file"
        self.echo(f"Snapshotting to {kind} {model}")
        self.echo(f"Snapshotting solver state to {kind} {state}")
        self._last_snap = self.solver.iter
        self.snapshots.append((model, state))

    def test_all(self, signals):
        for t in self.tests:
            self.echo(f"Iteration {self.solver.iter}, Testing net (#{t.k})")
            scores, loss = t.run(lambda: self._test_request(signals),
                                 compute_loss=self.param.test_compute_loss)
            if scores is None:
                self.echo("Test interrupted.")
                return
            if loss is not None:
                self.echo(f"Test loss: {_g(loss)}")
            self._outputs_lines("Test", scores)
            self.test_results.append({"iter": self.solver.iter, "net": t.k,
                                      "outputs": [[b, v] for b, v, _ in scores]})

    def _test_request(self, signals):
        action = signals.request()
        while action != "none":  # Solver::Test: act on every pending request, then go on
            if action == "snapshot":
                self.snapshot()
            elif action == "stop":
                self.early_exit = True
            action = signals.request()
        return self.early_exit

    def iterate(self, signals=None, log=None):
        """One iteration of ``Solver::Step``, as :meth:`solve` loops over it (and ``bench
        --train`` times it): the tests when due, ``iter_size`` forward-backward passes, the
        gradients averaged over processes, the finite checks, ``ApplyUpdate``, the log, a
        snapshot when due. False when training is to stop."""
        signals = signals or NoSignals()
        log = log or _NoLog()
        p, s, it = self.param, self.solver, self.solver.iter
        if p.test_interval and it % p.test_interval == 0 and (it > 0 or p.test_initialization):
            if self.group.root:
                self.test_all(signals)
            if distributed.agree(self.group, [int(self.early_exit)])[0]:
                self.early_exit = True
                return False
        display = p.display and it % p.display == 0
        self._feeds = []
        loss = s.accumulate(self._pass)
        if display:
            self.echo(f"Iteration {it}, loss = {_g(s.smoothed_loss)}")
            self._outputs_lines("Train", self._train_scores())
        distributed.average_gradients(self.group, s.params)
        action = signals.request()
        bad_loss = (self.group.rank + 1) if not math.isfinite(loss) else 0
        grads = [lp.param.grad for lp in s.params]
        bad_grad = 0 if self._all_finite(grads) else 1
        stop, snap, bad_loss, bad_grad = distributed.agree(
            self.group, [action == "stop", action == "snapshot", bad_loss, bad_grad])
        if bad_loss or bad_grad:
            self._fail(it, loss, bad_loss)
        rate = s.apply_update()
        if display:
            self.echo(f"Iteration {it}, lr = {_g(rate)}")
        if not self._all_finite([lp.param for lp in s.params]):
            where = self._first_bad(grads=False)
            if where:
                self.failed = True
                raise NonFiniteError(f"iteration {it}: the update (lr {_g(rate)}) made {where} "
                                     "non-finite; training stopped, no snapshot written",
                                     found_here=self.group.root)  # the same update on all
        self.losses.append(loss)
        log.add(it, loss, s.smoothed_loss, rate)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"loss {_g(s.smoothed_loss)}", refresh=False)
        if (p.snapshot and s.iter % p.snapshot == 0) or snap:
            self.snapshot()
        for hook in self.hooks:  # after the snapshot: the weights it scores are the snapshot's
            hook.after_iter(self)
        if stop:
            self.early_exit = True
            return False
        return True

    def _net_file(self):
        """The train net's file, where the net has no ``name:`` (the official nets have none)."""
        p = self.param
        field = next((f for f in ("net", "train_net") if p.HasField(f)), None)
        return getattr(p, field) if field else "the solver's net_param"

    def _fail(self, it, loss, bad_loss):
        self.failed = True
        if bad_loss and bad_loss - 1 != self.group.rank:
            raise NonFiniteError(f"iteration {it}: process {bad_loss - 1} met a non-finite loss "
                                 "(its message names the layer); training stopped",
                                 found_here=False)
        if bad_loss:
            where = self._first_bad_top()
            raise NonFiniteError(f"iteration {it}: the loss is {loss}; first non-finite top: "
                                 f"{where}; training stopped before the update, no snapshot "
                                 "written")
        where = self._first_bad(grads=True) or "a param (not found again)"
        raise NonFiniteError(f"iteration {it}: non-finite gradient in {where} (loss "
                             f"{_g(loss)}); training stopped before the update, no snapshot "
                             "written", found_here=self.group.root)  # averaged: the same on all

    def solve(self):
        """``Solver::Solve``; returns a summary dict (``iter``, ``losses``, ``snapshots``,
        ``log``, ``plot``, ``tests``, ``stopped_early``)."""
        p, s = self.param, self.solver
        self.echo(f"Solving {self.net.name or self._net_file()}")
        self.echo(f"Learning Rate Policy: {p.lr_policy}")
        log = TrainLog(p.snapshot_prefix, s.iter) if self.group.root else _NoLog()
        plot = None
        try:
            with SignalActions() as signals:
                if self.progress and sys.stderr.isatty():
                    from tqdm import tqdm

                    self._bar = tqdm(total=p.max_iter, initial=s.iter, file=sys.stderr,
                                     unit="it", dynamic_ncols=True, leave=False)
                s.begin()
                start = s.iter
                while s.iter < p.max_iter and self.iterate(signals, log):
                    pass
                self._close_bar()
                if p.snapshot_after_train and (not p.snapshot or s.iter % p.snapshot != 0):
                    self.snapshot()
                if self.early_exit:
                    self.echo("Optimization stopped early.")
                else:
                    self._finish(signals, start)
                for hook in self.hooks:
                    hook.at_end(self)
        finally:
            self._close_bar()
            for hook in self.hooks:  # after a failure too: what was scored until then
                hook.close()
            plot = log.close(title=f"{self.net.name or 'train net'}: loss per iteration")
        return {"iter": s.iter, "losses": list(self.losses), "snapshots": list(self.snapshots),
                "log": str(log.csv_path) if log.csv_path else None,
                "plot": str(plot) if plot else None, "tests": self.test_results,
                "stopped_early": self.early_exit}

    def _finish(self, signals, start):
        p, s = self.param, self.solver
        if p.display and s.iter % p.display == 0:  # a forward-only pass to display the loss
            feed = self.feeder(s.iter, 0, self.device)
            with torch.no_grad():
                out = self.net(record=True, **feed)
                loss = F32(float(self.net.loss(out["_tops"])))
            s._smooth(loss, start)
            self.echo(f"Iteration {s.iter}, loss = {_g(s.smoothed_loss)}")
        if p.test_interval and s.iter % p.test_interval == 0 and self.group.root:
            self.test_all(signals)
        self.echo("Optimization Done.")

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _NoLog:
    csv_path = None

    def add(self, *row):
        pass

    def close(self, title=""):
        return None
