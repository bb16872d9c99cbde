"""Test nets of a solver (``Solver::InitTestNets``, ``Solver::Test``).

How Caffe sets them up (``solver.cpp``, ``InitTestNets``)
--------------------------------------------------------
Test nets come from ``test_net_param`` (each), then ``test_net`` (each file), then, when the
solver gives a generic ``net`` / ``net_param``, one instance of it for every ``test_iter`` entry
left over. ``test_iter`` must have one entry per test net (``test_iter must be specified for
each test network``); ``test_state``, when given, one per test net. Each net's state is phase
TEST, then the net's own ``state``, then its ``test_state``. Caffe builds them all at start-up.

``Solver::Test(k)``: ``ShareTrainedLayersWith`` the train net (params shared by layer name), then
``test_iter[k]`` forward passes, each drawing a new batch from the test net's data layers (which
keep their place from one test to the next); every element of every output blob is summed
over the passes in float and divided by ``test_iter[k]``, and printed as ``Test net output
#i: <blob> = <mean>`` with `` (* <w> = <w * mean> loss)`` for loss outputs. Output blobs are in
the order of Caffe's ``std::set`` of unconsumed tops, i.e. sorted by name. With
``test_compute_loss`` the summed objective is printed as ``Test loss: <mean>``.

fcn-port shares the train net's ``nn.Parameter`` objects with the test net by layer name (one
set of weights, as Caffe's shared blobs), runs the passes under ``no_grad``, and builds the test
nets only when the run will invoke one (see :func:`tests_due`): FCN's official solvers name a
``val.prototxt`` with ``test_interval: 999999999`` and ``test_initialization: false`` (the
solver never tests; ``solve.py`` scores separately), and a run without validation data must not
fail on a net it will never use. Caffe would read (and need) the file anyway.
"""
import os

import numpy as np
import torch

from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import read_net
from fcn_port.port.net import CaffeNet, filter_layers

from .build import resolve
from .data import Feeder, source_layers
from .errors import SolverError

F32 = np.float32


def test_net_params(param, folder=None):
    """``[(NetParameter, level, stages)]`` of the solver's test nets, in Caffe's order."""
    nets = [caffe_pb2.NetParameter.FromString(p.SerializeToString()) for p in param.test_net_param]
    nets += [read_net(resolve(f, folder))[0] for f in param.test_net]
    given = len(nets)
    generic = param.HasField("net") or param.HasField("net_param")
    if generic:
        if len(param.test_iter) < given:
            raise SolverError("test_iter must be specified for each test network "
                              f"({len(param.test_iter)} test_iter, {given} test nets)")
        for _ in range(len(param.test_iter) - given):
            if param.HasField("net_param"):
                nets.append(caffe_pb2.NetParameter.FromString(param.net_param.SerializeToString()))
            else:
                nets.append(read_net(resolve(param.net, folder))[0])
    elif len(param.test_iter) != given:
        raise SolverError("test_iter must be specified for each test network "
                          f"({len(param.test_iter)} test_iter, {given} test nets)")
    if param.test_state and len(param.test_state) != len(nets):
        raise SolverError(f"test_state must be unspecified or specified once per test net "
                          f"({len(param.test_state)} test_state, {len(nets)} test nets)")
    out = []
    for k, net_param in enumerate(nets):
        state = caffe_pb2.NetState(phase=caffe_pb2.TEST)
        state.MergeFrom(net_param.state)
        if param.test_state:
            state.MergeFrom(param.test_state[k])
        net_param.state.CopyFrom(state)
        out.append((net_param, state.level, tuple(state.stage)))
    return out


def declared(param):
    """How many test nets the solver declares (without reading any file)."""
    n = len(param.test_net_param) + len(param.test_net)
    if param.HasField("net") or param.HasField("net_param"):
        n = max(n, len(param.test_iter))
    return n


def tests_due(param, start, max_iter):
    """Whether a run from ``start`` to ``max_iter`` invokes a test (``Solver::Step``: at
    ``iter % test_interval == 0`` and ``iter > 0 || test_initialization``; ``Solve``: once more
    at ``max_iter`` when it is a multiple)."""
    every = param.test_interval
    if not every or not declared(param):
        return False
    first = -(-start // every) * every
    if first == 0 and not param.test_initialization:
        first = every
    return first <= max_iter


class TestNet:
    """One test net sharing the train net's params, with its feeder and iteration count."""

    def __init__(self, k, net_param, level, stages, train_net, sources, *, test_iter, root,
                 device, python_layers=None):
        self.k, self.test_iter, self.device = k, test_iter, device
        layers = filter_layers(net_param, "TEST", level, stages)
        self.feeder = Feeder(source_layers(layers, python_layers or {}), sources, phase="TEST",
                             root=root, what=f"test net #{k}")
        self.net = CaffeNet(net_param, "TEST", level=level, stages=stages,
                            input_shapes=self.feeder.shapes(), python_layers=python_layers)
        self.net.to(device)
        share_params(self.net, train_net)
        self.draws = 0
        self.outputs = sorted(self.net.outputs)
        self.weights = loss_weights(self.net)

    def run(self, requested, *, compute_loss=False):
        """``Solver::Test``: returns ``(scores, loss)`` with ``scores`` ``[(blob, mean,
        weight)]`` per element, or None when ``requested()`` says stop between passes."""
        total, loss = None, F32(0)
        with torch.no_grad():
            for _ in range(self.test_iter):
                if requested():
                    return None, None
                feed = self.feeder(self.draws, 0, self.device)
                self.draws += 1
                out = self.net(record=compute_loss, **feed)
                if compute_loss:
                    loss = F32(loss + F32(float(self.net.loss(out["_tops"]))))
                vals = [out[b].detach().reshape(-1).to("cpu", torch.float32).numpy()
                        for b in self.outputs]
                total = [v.copy() for v in vals] if total is None else [t + v for t, v in zip(total, vals)]
        n = F32(self.test_iter)
        scores = []
        for b, t in zip(self.outputs, total or []):
            scores += [(b, float(F32(x) / n), self.weights.get(b, 0.0)) for x in t]
        return scores, float(F32(loss / n)) if compute_loss else None


def loss_weights(net):
    """``{top name: loss weight}`` of a CaffeNet's weighted tops."""
    return {net.layer_params[li].top[ti]: w for li, ti, w in net.loss_tops}


def share_params(net, train):
    """``Net::ShareTrainedLayersWith``: every layer of ``net`` whose name the train net also
    has uses the train net's params (same objects; shapes must agree)."""
    own = {lp.name: layer for lp, layer in zip(train.layer_params, train.layers.values())}
    for lp, layer in zip(net.layer_params, net.layers.values()):
        src = own.get(lp.name)
        if src is None or not layer.n_blobs:
            continue
        if src.n_blobs != layer.n_blobs:
            raise SolverError(f"test net layer '{lp.name}': {layer.n_blobs} param blobs, the "
                              f"train net's has {src.n_blobs}")
        for i in range(layer.n_blobs):
            mine, theirs = layer.blob(i), src.blob(i)
            if mine.shape != theirs.shape:
                raise SolverError(f"test net layer '{lp.name}' param {i}: shape "
                                  f"{tuple(mine.shape)}, the train net's {tuple(theirs.shape)}")
            setattr(layer, str(i), theirs)


def build_test_nets(param, train_net, sources, *, root, device, python_layers=None):
    """Every declared test net as a :class:`TestNet` (read, filtered, fed, sharing params)."""
    folder = root if root is not None else os.getcwd()
    nets = []
    for k, (net_param, level, stages) in enumerate(test_net_params(param, folder)):
        nets.append(TestNet(k, net_param, level, stages, train_net, sources,
                            test_iter=param.test_iter[k], root=folder, device=device,
                            python_layers=python_layers))
    return nets
