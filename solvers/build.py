"""A train net and its :class:`~.solver.Solver` from a solver prototxt (``Solver::InitTrainNet``).

What Caffe does, and this mirrors:

1. **Read** the solver text (``ReadSolverParamsFromTextFileOrDie``): ``solver_type`` upgraded to
   ``type``, and ``snapshot_prefix`` resolved against the solver file's path
   (``upgrade_snapshot_prefix``: unset -> the file's path without extension; a directory -> that
   directory plus the file's stem).
2. **Pick the train net**: exactly one of ``net``, ``net_param``, ``train_net``,
   ``train_net_param``. Caffe opens a file name relative to the current directory; here a name
   that does not exist there is looked up relative to the solver file's folder (how the oracle
   cases and most FCN folders are laid out, so a run does not depend on where it starts).
3. **NetState**: phase TRAIN, then the net's own ``state``, then the solver's ``train_state``
   (later ones win), so level and stages filter layers as in Caffe.
4. **Weights**: every entry of the solver's ``weights`` (each a comma-separated list, files
   resolved as in 2) is copied in by layer name, then the caller's ``weights``.

Paths a solver names (fcn-port's rule): as in Caffe, any path, absolute or relative; the files
it reads (``net``/``train_net``, ``weights``) must be regular files (not a folder, a device or
a FIFO, which could block or never end) and are only read, never run; ``snapshot_prefix``, the
one path written to, is checked before training (:func:`.snapshots.prepare_snapshots`) and
gets only fcn-port's own endings (``_iter_N.caffemodel[.h5]``, ``.solverstate[.h5]``,
``_log.csv``, ``_loss.png``, ``_eval.*``), each written atomically, replacing (never writing
through) whatever is at that name.
"""
import os

from fcn_port.port.errors import NetError
from fcn_port.port.formats.netcheck import phase_problems
from fcn_port.port.net import CaffeNet, filter_layers
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import read_net, read_solver
from fcn_port.port.formats.upgrade import upgrade_snapshot_prefix

from .errors import SolverError
from .solver import Solver

PHASE_NAMES = {caffe_pb2.TRAIN: "TRAIN", caffe_pb2.TEST: "TEST"}
NET_FIELDS = ("net", "net_param", "train_net", "train_net_param")


def read_solver_file(path):
    """The SolverParameter of a solver prototxt as Caffe reads it; returns (param, notes)."""
    param, notes = read_solver(path)
    given = [f for f in NET_FIELDS if param.HasField(f)]
    if len(given) != 1:
        raise SolverError(f"{path}: a solver must name exactly one train net with one of "
                          f"{', '.join(NET_FIELDS)}; it sets {given or 'none'}")
    if given[0] in ("net", "train_net"):
        folder = os.path.dirname(os.path.abspath(path))
        name = getattr(param, given[0])
        if not os.path.isfile(resolve(name, folder)):
            raise SolverError(f"{path}: {given[0]} '{name}' is not a file (looked for it in the "
                              f"current folder and in {folder}); expected the train net prototxt")
    notes += upgrade_snapshot_prefix(param, os.fspath(path))
    return param, notes


def resolve(name, folder):
    """``name`` as Caffe opens it (from the current directory) when it exists, else relative to
    ``folder`` (the solver file's), else unchanged (the reader then names it)."""
    if os.path.isabs(name) or os.path.exists(name) or folder is None:
        return name
    beside = os.path.join(folder, name)
    return beside if os.path.exists(beside) else name


def train_net(param, folder=None):
    """(NetParameter, phase, level, stages) of the solver's train net (steps 2 and 3)."""
    given = [f for f in NET_FIELDS if param.HasField(f)]
    if len(given) != 1:
        raise SolverError(f"SolverParameter must specify exactly one train net using one of "
                          f"{', '.join(NET_FIELDS)}; it sets {given or 'none'}")
    field = given[0]
    if field in ("net_param", "train_net_param"):
        net_param = caffe_pb2.NetParameter()
        net_param.CopyFrom(getattr(param, field))
        source = f"the solver's {field}"
    else:
        source = resolve(getattr(param, field), folder)
        net_param, _ = read_net(source)
    state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN)
    state.MergeFrom(net_param.state)
    state.MergeFrom(param.train_state)
    net_param.state.CopyFrom(state)
    phase = PHASE_NAMES[state.phase]
    problems = phase_problems(net_param, phase, state.level, tuple(state.stage))
    if problems:  # Caffe's Net::Init stops on these; say so before any data is bound
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise NetError(f"{source}: {problems[0]}{more}; expected a net Caffe can build")
    return net_param, phase, state.level, tuple(state.stage)


def from_solver_prototxt(path, *, weights=None, param=None, shapes=None, device=None,
                         **net_kw):
    """Build the train :class:`CaffeNet` and its :class:`Solver` from a solver prototxt
    (``Solver::Init``: ``InitTrainNet``, then the weights). ``net_kw`` go to ``CaffeNet``
    (``input_shapes``, ``python_layers``, ...). ``param``: the SolverParameter when the caller
    has already read it (and changed it: ``--max-iter``); ``shapes(layers, phase)``: the input
    shapes from the train net's filtered layers (the training loop binds its data sources to them);
    ``device``: where the net goes before the solver takes its params. Returns
    ``(solver, net)``; ``solver.root`` is the solver file's folder."""
    if param is None:
        param, _ = read_solver_file(path)
    folder = os.path.dirname(os.path.abspath(path))
    net_param, phase, level, stages = train_net(param, folder)
    if shapes is not None:
        net_kw["input_shapes"] = shapes(filter_layers(net_param, phase, level, stages), phase)
    net = CaffeNet(net_param, phase, level=level, stages=stages, **net_kw)
    if not net.loss_tops:
        raise SolverError(f"train net '{net.name}' has no loss (no top with a loss weight)")
    if device is not None:
        net.to(device)
    solver = Solver(param, net.param_specs, net_param=net_param, root=folder, phase=phase)
    load_weights(solver, param, folder, weights)
    return solver, net


def load_weights(solver, param, folder, weights=None):
    """Step 4: the solver's ``weights`` entries (comma-separated lists, resolved as in 2), then
    the caller's ``weights``, each copied in by layer name (``CopyTrainedLayersFrom``)."""
    for entry in param.weights:
        for name in entry.split(","):
            if name.strip():
                path = resolve(name.strip(), folder)
                if not os.path.isfile(path):  # no folder, device or FIFO (it could block)
                    raise SolverError(f"the solver's weights entry '{name.strip()}' is not a "
                                      f"file (looked in the current folder and in {folder}); "
                                      "expected a caffemodel")
                solver.load_weights(path)
    if weights is not None:
        solver.load_weights(weights)


def forward_backward(net, feed):
    """A ``forward_backward`` for :meth:`Solver.step`: forward ``net`` on ``feed()`` (a
    callable returning the input blobs, called once per pass) or on a fixed dict, backward of
    Caffe's weighted loss sum, return the loss. ``net``: a :class:`CaffeNet` of a train net,
    or a hand-written FCN (``fcn_port.models``; its ``official_loss``: the official train
    net's losses, the blobs named as the official data layer's tops)."""
    def run():
        blobs = feed() if callable(feed) else feed
        if hasattr(net, "official_loss"):
            loss = net.official_loss(blobs)
        else:
            loss = net.loss(net(record=True, **blobs)["_tops"])
        loss.backward()
        return float(loss.detach())
    return run
