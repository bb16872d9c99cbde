"""The adaptive solvers in the order of Caffe's GPU kernels (solvers/kernels.py, issue 17):
each ``.cu`` expression transcribed in numpy float32, operation by operation, equals the torch
version bit for bit; the order differs from the CPU code's for some elements (so it matters
which one a device uses); on CUDA, the solver uses it."""
import numpy as np
import pytest
import torch

from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.solvers import kernels, rules

f = np.float32


def _param(**kw):
    return caffe_pb2.SolverParameter(base_lr=0.01, lr_policy="fixed", delta=1e-6, **kw)


def _cu(kind, g, hs, rate, p, it):
    """The kernels' loops over elements, in float32 (C precedence, left to right)."""
    g, hs = g.copy(), [h.copy() for h in hs]
    rate, delta = f(rate), f(p.delta)
    for i in range(g.size):
        gi = g.flat[i]
        if kind == "AdaGrad":
            hi = hs[0].flat[i] = f(hs[0].flat[i] + f(gi * gi))
            g.flat[i] = f(f(rate * gi) / f(np.sqrt(hi) + delta))
        elif kind == "RMSProp":
            d = f(p.rms_decay)
            hi = hs[0].flat[i] = f(f(d * hs[0].flat[i]) + f(f(f(f(1) - d) * gi) * gi))
            g.flat[i] = f(f(rate * gi) / f(np.sqrt(hi) + delta))
        elif kind == "AdaDelta":
            m = f(p.momentum)
            hi = hs[0].flat[i] = f(f(m * hs[0].flat[i]) + f(f(f(f(1) - m) * gi) * gi))
            gi = f(gi * np.sqrt(f(f(hs[1].flat[i] + delta) / f(hi + delta))))
            hs[1].flat[i] = f(f(m * hs[1].flat[i]) + f(f(f(f(1) - m) * gi) * gi))
            g.flat[i] = f(rate * gi)
        else:  # Adam
            b1, b2 = f(p.momentum), f(p.momentum2)
            mi = hs[0].flat[i] = f(f(hs[0].flat[i] * b1) + f(gi * f(f(1) - b1)))
            vi = hs[1].flat[i] = f(f(hs[1].flat[i] * b2) + f(f(gi * gi) * f(f(1) - b2)))
            t = it + 1
            corr = f(np.sqrt(1 - float(b2) ** t) / (1 - float(b1) ** t))
            g.flat[i] = f(f(f(rate * corr) * mi) / f(np.sqrt(vi) + delta))
    return g, hs


CASES = [("AdaGrad", _param(type="AdaGrad")),
         ("RMSProp", _param(type="RMSProp", rms_decay=0.95)),
         ("AdaDelta", _param(type="AdaDelta", momentum=0.95)),
         ("Adam", _param(type="Adam", momentum=0.9, momentum2=0.999))]


@pytest.mark.parametrize("kind, p", CASES, ids=[c[0] for c in CASES])
def test_kernel_order_is_the_cu_expression(kind, p):
    rng = np.random.default_rng(5)
    g = rng.normal(0, 1e-2, 3000).astype(np.float32)
    hs = [np.abs(rng.normal(0, 1e-4, 3000)).astype(np.float32)
          for _ in range(rules.RULES[kind].history_sets)]
    want_g, want_h = _cu(kind, g, hs, 0.01, p, 7)
    tg, th = torch.from_numpy(g.copy()), [torch.from_numpy(h.copy()) for h in hs]
    rules.RULES[kind].gpu(tg, th, 0.01, p, 7)
    assert np.array_equal(tg.numpy(), want_g)
    for a, b in zip(th, want_h):
        assert np.array_equal(a.numpy(), b)
    cg, ch = torch.from_numpy(g.copy()), [torch.from_numpy(h.copy()) for h in hs]
    rules.RULES[kind].update(cg, ch, 0.01, p, 7)  # the CPU order: another rounding somewhere
    assert not torch.equal(cg, tg) or not all(torch.equal(a, b) for a, b in zip(ch, th))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind, p", CASES, ids=[c[0] for c in CASES])
def test_the_solver_uses_the_kernel_order_on_cuda(kind, p):
    from torch import nn

    from fcn_port.solvers.solver import Solver

    rng = np.random.default_rng(6)
    w = rng.normal(0, 1, 500).astype(np.float32)
    g = rng.normal(0, 1e-2, 500).astype(np.float32)
    solver = Solver(p, [("a", 0, nn.Parameter(torch.from_numpy(w.copy()).cuda()),
                         caffe_pb2.ParamSpec())])
    solver.params[0].param.grad = torch.from_numpy(g.copy()).cuda()
    solver.apply_update()
    hs = [np.zeros(500, np.float32) for _ in range(rules.RULES[kind].history_sets)]
    step, _ = _cu(kind, g, hs, 0.01, p, 0)
    assert np.array_equal(solver.params[0].param.detach().cpu().numpy(), f(w - step))
