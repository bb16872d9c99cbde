"""``fcn-port infer --backend fast|onnxruntime|openvino``: segmentation through fcn-port's fast
CPU path (:mod:`.fast`) or a peer runtime, checked first.

``fast`` is :func:`.fast.fast_model` (conv+ReLU fused, channels-last, packed weights, the blank
margins computed once per size): 1.55x eager and 1.39x OpenVINO for voc-fcn8s at 500 x 500 on
2 cores (benchmarks/README.md), within 2e-6 of eager there. For a peer, the model is exported
to ONNX (:func:`.onnx.export_onnx`, height and width dynamic) in a private temporary folder
and opened in the peer at float32 (:func:`.peers.session`). Before the first image either must
agree with fcn-port's default path: on random inputs at two sizes (one odd) its outputs must
equal the PyTorch model's within ``rtol`` of ``max(1, max|y|)`` (1e-5, the parity rule);
otherwise the run stops with one line and writes nothing. Then :class:`Backend` stands in for
the model in :func:`..infer.infer_files`: ``backend(*inputs)`` runs the backend and returns
tensors, as the model would. Both run on the CPU only.
"""
import os
import tempfile

import numpy as np
import torch

from fcn_port.port.errors import NetError, UnsupportedError

RTOL = 1e-5
CHECK_SIZES = ((97, 131), (64, 64))


class Backend:
    """The model's stand-in: its ``meta`` and ``cfg``, and a forward run by ``peer``."""

    def __init__(self, model, peer, run, checks, path=None):
        self.meta, self.cfg, self.peer, self.run, self.checks = model.meta, model.cfg, peer, \
            run, checks
        self.path = path  # the fast path's variant (fast_model's name), None for a peer

    def __call__(self, *inputs):
        outs = tuple(torch.from_numpy(np.asarray(y)) for y in
                     self.run(*(x.detach().cpu().float().numpy() for x in inputs)))
        return outs if len(outs) > 1 else outs[0]

    def parameters(self):
        return iter(())

    def buffers(self):
        return iter(())

    def eval(self):
        return self

    def to(self, device):
        if torch.device(device).type != "cpu":
            raise UnsupportedError(f"--backend {self.peer} runs on the CPU; use --device cpu "
                                   "or no --backend")
        return self


def open_backend(model, peer, rtol=RTOL, sizes=CHECK_SIZES):
    """``model`` (an FCN) running in ``peer`` ('fast', 'onnxruntime' or 'openvino'), checked
    against the model at ``sizes``: a :class:`Backend`, its ``checks`` the error at each
    size."""
    from .onnx import sample_inputs

    model = model.eval()
    path = None
    if peer == "fast":
        run, path = _fast(model, sizes[0])
    else:
        run = _peer(model, peer, sizes[0])
    checks = []
    for size in sizes:
        inputs = sample_inputs(model.cfg, size, seed=2)
        with torch.inference_mode():
            want = model(*inputs)
        want = want if isinstance(want, tuple) else (want,)
        got = run(*(x.numpy() for x in inputs))
        if [np.shape(g) for g in got] != [tuple(w.shape) for w in want]:
            raise NetError(f"--backend {peer}: its outputs are {[np.shape(g) for g in got]} at "
                           f"{size[0]}x{size[1]}, fcn-port's {[tuple(w.shape) for w in want]}")
        err = max(float(np.abs(np.asarray(g) - w.numpy()).max() / max(1.0, float(w.abs().max())))
                  for g, w in zip(got, want))
        checks.append({"size": list(size), "error": err})
        if not err <= rtol:
            raise NetError(f"--backend {peer}: its output differs from fcn-port's by {err:.3g} "
                           f"at {size[0]}x{size[1]} (the limit is {rtol:g}); run without "
                           "--backend")
    return Backend(model, peer, run, checks, path)


def _fast(model, size):
    """(run, variant): :func:`.fast.fast_model` chosen on an input of ``size`` (no
    ``torch.compile``; the model's own weights re-laid channels-last in place)."""
    from .fast import fast_model
    from .onnx import sample_inputs

    fn, how, _ = fast_model(model, sample_inputs(model.cfg, size, seed=2), compile=False,
                            inplace=True)

    def run(*arrays):
        with torch.inference_mode():
            y = fn(*(torch.from_numpy(a) for a in arrays))
        return [t.numpy() for t in (y if isinstance(y, tuple) else (y,))]
    return run, how


def _peer(model, peer, size):
    """A peer session on the model's ONNX export (dynamic height and width)."""
    from .onnx import export_onnx
    from .peers import require, session

    require(peer)  # before the export, which needs onnx too
    with tempfile.TemporaryDirectory(prefix="fcn-port-backend-") as folder:
        path = os.path.join(folder, "model.onnx")
        report = export_onnx(model, path, size=size, dynamic=True, check=False)
        if not report["dynamic"]:
            raise UnsupportedError(f"--backend {peer}: this model exports at one input size "
                                   f"only ({report.get('static_because')}); run without "
                                   "--backend")
        return session(peer, path)
