"""Data-parallel training over several processes with ``torch.distributed`` (gloo / NCCL).

How Caffe trains on several GPUs (``caffe train --gpu 0,1``; ``parallel.cpp``, ``NCCL``)
---------------------------------------------------------------------------------------
One solver per GPU, each with its own net and data layers (each reads its own batches). The
root solver's weights are broadcast to the others before training (``NCCL::Broadcast``). In
every iteration each solver runs its ``iter_size`` forward/backward passes, then the
``on_gradients_ready`` callback all-reduces the param diffs with a sum and scales them by
``1 / solver_count`` (``NCCL::on_gradients_ready``), so each process's batch counts equally.
Only then does each solver run ``ApplyUpdate`` on identical diffs: ``ClipGradients`` sees the
averaged gradient, ``Normalize`` divides by ``iter_size`` afterwards, the histories stay
identical without being exchanged. Only the root solver tests, displays and snapshots
(``Caffe::root_solver()``). The displayed loss is the root solver's own.

fcn-port does the same with ``torch.distributed``: :func:`average_gradients` (one flat
all-reduce of every learnable param's gradient, then ``* (1/N)`` in float32) between
:meth:`~.solver.Solver.accumulate` and :meth:`~.solver.Solver.apply_update`;
:func:`broadcast_state` copies rank 0's weights and history to every rank at the start (after
``--weights`` / ``--snapshot``); :func:`agree` merges per-rank flags (a non-finite value, a
signal) so that every rank stops at the same iteration. Rank 0 logs and writes snapshots.

Processes come from ``torchrun --nproc-per-node N -m fcn_port.cli train ...`` (its ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``/``PORT`` environment) or from ``fcn-port train --procs N``
(:func:`launch`: N copies of the same command on 127.0.0.1 and a free port). gloo on CPU, NCCL
on CUDA (process ``r`` uses GPU ``LOCAL_RANK``).
"""
import os
import signal
import socket
import subprocess
import sys

import torch

from fcn_port.port.errors import UserInputError


class Group:
    """This process's place: ``rank``, ``world``, ``device``; ``active`` when a process group
    is in use (``world > 1``)."""

    def __init__(self, rank=0, world=1, device="cpu"):
        self.rank, self.world, self.device = rank, world, torch.device(device)
        self.active = world > 1

    @property
    def root(self):
        return self.rank == 0

    def close(self):
        import torch.distributed as dist

        if self.active and dist.is_initialized():
            dist.destroy_process_group()
            self.active = False


def from_env(device="cpu"):
    """A :class:`Group` from torchrun's environment (``WORLD_SIZE`` > 1 starts the process
    group: NCCL for a CUDA device, else gloo), else the single process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Group(device=device)
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        if local >= torch.cuda.device_count():
            raise UserInputError(f"process {rank}: LOCAL_RANK {local} but only "
                                 f"{torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    return Group(rank, world, device)


def average_gradients(group, params):
    """Caffe's ``on_gradients_ready``: every learnable param's gradient summed over the ranks
    and scaled by ``1/world`` (float32), in place. ``params``: the solver's Learnables; those
    with ``lr_mult`` 0 take part as zeros, as their cleared diffs do in Caffe."""
    if not group.active:
        return
    import torch.distributed as dist

    grads = []
    for lp in params:
        p = lp.param
        if p.grad is None or lp.lr_mult == 0:
            p.grad = torch.zeros_like(p, memory_format=torch.contiguous_format)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.mul_(torch.tensor(1.0 / group.world, dtype=flat.dtype))
    offset = 0
    with torch.no_grad():
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n


def broadcast_state(group, solver):
    """Rank 0's weights, history, ``iter`` and ``current_step`` to every rank (Caffe's
    ``NCCL::Broadcast`` of the root's params before training)."""
    if not group.active:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for lp in solver.params:
            dist.broadcast(lp.param.data, 0)
        for h in solver.history:
            dist.broadcast(h, 0)
    counters = torch.tensor([solver.iter, solver.current_step], dtype=torch.int64,
                            device=group.device)
    dist.broadcast(counters, 0)
    solver.iter, solver.current_step = (int(v) for v in counters.tolist())


def agree(group, flags):
    """Each flag's maximum over the ranks (a list of ints): a stop or a failure anywhere is
    seen everywhere, so all ranks leave the loop at the same iteration."""
    if not group.active:
        return list(flags)
    import torch.distributed as dist

    t = torch.tensor(list(flags), dtype=torch.int64, device=group.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCHED = "FCN_PORT_LAUNCHED"  # set in the processes launch() starts


def says_once():
    """Whether this process prints what every process would (``--snapshot latest``'s choice):
    the only one, or rank 0 under torchrun; not a process :func:`launch` started (their parent
    said it)."""
    return not os.environ.get(LAUNCHED) and int(os.environ.get("RANK", "0") or 0) == 0


def check_procs(procs, device):
    """``--procs N`` within what the machine has: at most one process per CPU this process may
    run on (each is a whole training process, about 230 MB before its net), or per CUDA device
    (process ``r`` takes GPU ``r``). One UserInputError line, before any process starts."""
    if torch.device(device).type == "cuda":
        have, what = torch.cuda.device_count(), "CUDA device(s)"
    else:
        have = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            (os.cpu_count() or 1)
        what = "CPU(s) this process may use"
    if procs > have:
        raise UserInputError(f"--procs {procs}: more processes than the {have} {what}; "
                             f"expected at most {have}")


def launch(argv, procs):
    """``fcn-port train --procs N``: run ``python -m fcn_port.cli`` + ``argv`` (the same train
    command without ``--procs``) as N processes with torchrun's environment on 127.0.0.1.
    SIGINT, SIGTERM and SIGHUP sent to this process are passed on to every child; when one
    child fails the others are stopped. Returns the first failure's exit status (128 + N
    for a signal N), else 0."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               WORLD_SIZE=str(procs), LOCAL_WORLD_SIZE=str(procs), **{LAUNCHED: "1"})
    children = []
    for r in range(procs):
        children.append(subprocess.Popen([sys.executable, "-m", "fcn_port.cli"] + list(argv),
                                         env=dict(env, RANK=str(r), LOCAL_RANK=str(r))))

    def forward(signum, frame):
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    sigs = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s]
    old = {s: signal.signal(s, forward) for s in sigs}
    try:
        first, pending = 0, set(range(procs))
        while pending:
            for r in sorted(pending):
                try:
                    code = children[r].wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
                pending.discard(r)
                if code != 0 and not first:  # the others stop too, or are stopped
                    first = code if code > 0 else 128 - code
                    _stop([children[k] for k in pending])
        return first
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()


def _stop(children, grace=10.0):
    """Give the other ranks ``grace`` seconds to stop by themselves (they agree on failures
    every iteration), then SIGTERM, then SIGKILL (a rank blocked in a collective never returns
    to Python to act on a signal)."""
    for sig_wait in ("wait", "terminate", "kill"):
        children = [c for c in children if c.poll() is None]
        for c in children:
            if sig_wait != "wait":
                getattr(c, sig_wait)()
        for c in children:
            try:
                c.wait(timeout=grace if sig_wait == "wait" else 5.0)
            except subprocess.TimeoutExpired:
                pass
