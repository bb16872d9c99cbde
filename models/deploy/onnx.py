"""ONNX export of a converted FCN, with its input height and width left free when possible.

How the model traces
--------------------
The model is exported as it is: the Caffe layers (:mod:`fcn_port.port.layers`) keep their
Python geometry and checks for eager mode, but what reaches the graph follows the input's size
(no second copy of their logic here):

* MAX Pooling with pad 0, CEIL and kernel >= stride (every FCN pool: 2/2 in VGG, 3/2 in
  AlexNet) is one ``max_pool2d(ceil_mode=True)``, Caffe's rule there, with NaN replaced by
  -FLT_MAX unconditionally (no data-dependent branch) and the result clamped at -FLT_MAX;
* (De)Convolution on axis 1 hands the op's own output on (no reshape to a size computed in
  Python); the truncating division has no ``abs``;
* Crop slices to the reference's size read at run time.

Under ``torch.export`` the layers skip their Python checks. Other layers that size their output
in Python (padded or AVE pooling, convolution on an axis other than 1) would be baked in by a
tracer: :func:`traceable` names them, and the export is then for ``size`` only
(``report["dynamic"]`` is False and ``report["static_because"]`` names the layers). Measured
before this design: a dynamic export with baked sizes ran at other sizes but gave ~0.24
relative error at 64 x 80 for a model traced at 41 x 59.

Exporters: ``dynamo=False`` (default) uses the TorchScript exporter (deprecated in torch 2.9 but
present in 2.13; ~1 s for the tiny model), ``dynamo=True`` the ``torch.export`` one
(``onnxscript`` needed; 5-13 s for the tiny model with dynamic axes). Both give the same scores.
With onnxruntime installed the file is run and compared with the PyTorch model at ``size`` and,
for a dynamic export, at a second size; neither onnx nor onnxruntime is a dependency. The file
is written whole or not at all (a failed export or check leaves nothing at ``out``).
"""
import importlib.util
import os
import warnings

import numpy as np
import torch

from fcn_port.port.errors import NetError, UnsupportedError
from fcn_port.port.fileio import atomic_output
from fcn_port.port.layers.conv import Convolution, Deconvolution
from fcn_port.port.layers.pooling import Pooling

OPSET = 18


def _static_because(name, layer):
    """Why ``layer`` bakes its input's size into a trace, or None when it does not."""
    if isinstance(layer, (Convolution, Deconvolution)) and layer.axis != 1:
        return f"{name}: convolution on axis {layer.axis} (reshaped to a size computed in Python)"
    if isinstance(layer, Pooling) and not layer.plain:
        return (f"{name}: {layer.method} pooling with pad {layer.pad} (traces with the input's "
                f"size only for MAX, pad 0, ceil, kernel >= stride)")
    return None


def traceable(model):
    """(model, [reasons]): the FCN ``model`` itself (in eval mode), which traces with free input
    sizes, and the layers that would bake the traced size in (none for the official nets)."""
    from ..fcn import FCN

    if not isinstance(model, FCN):
        raise NetError(f"ONNX export covers the FCN models (fcn_port.models), not "
                       f"{type(model).__name__}; interpreter checkpoints are not exported")
    kept = [why for why in (_static_because(n, m) for n, m in model._modules.items()) if why]
    return model.eval(), kept


def check_packages(dynamo=False):
    """The packages the exporter needs, installed (``export`` checks them, with
    :func:`traceable`, before it writes anything, a caffemodel beside the ONNX file included)."""
    for extra in ("onnx",) + (("onnxscript",) if dynamo else ()):
        if importlib.util.find_spec(extra) is None:
            raise UnsupportedError(f"ONNX export needs the '{extra}' package, which is not "
                                   "installed: pip install 'fcn-port[onnx]'")


def sample_inputs(cfg, size, seed=0):
    """Random inputs for ``cfg`` at ``size`` (H, W): one N=1 blob per input, Caffe's channels."""
    from ..spec import net_param

    shapes = net_param(cfg, "deploy").layer[0].input_param.shape
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn((1, s.dim[1]) + tuple(size), generator=g) * 50 for s in shapes)


def export_onnx(model_or_ckpt, out, size=(500, 500), *, dynamic=True, dynamo=False,
                opset=OPSET, check=True, rtol=1e-4):
    """Write the FCN as ONNX to ``out``; inputs and outputs are named after the Caffe blobs
    (``data`` -> ``score``; NYUD ``color``/``depth``/``hha``; SIFT Flow ``score_sem``,
    ``score_geo``). Returns a report: exporter, dynamic, and with onnxruntime ``checks``: the
    error max|onnx - torch| / max(1, max|torch|) per size; over ``rtol`` raises NetError."""
    from ..checkpoint import load

    model = load(model_or_ckpt) if isinstance(model_or_ckpt, (str, os.PathLike)) \
        else model_or_ckpt.eval()
    module, kept = traceable(model)
    check_packages(dynamo)
    dynamic = bool(dynamic) and not kept
    cfg, size = model.cfg, tuple(int(s) for s in size)
    inputs = sample_inputs(cfg, size)
    names_in, names_out = list(cfg.inputs), list(cfg.outputs)
    out = os.fspath(out)
    report = {"onnx": out, "exporter": "dynamo" if dynamo else "torchscript", "opset": opset,
              "size": list(size), "dynamic": dynamic, "inputs": names_in,
              "outputs": names_out, "checks": None}
    if kept:
        report["static_because"] = kept
    # written under a temporary name (its own, in a private folder) and checked there: a failed
    # export or check leaves no file at ``out``
    with atomic_output(out, mode=None, same_name=True) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the layers' Python checks
            if dynamo:
                _export_dynamo(module, inputs, tmp, names_in, names_out, dynamic, opset)
            else:
                axes = {n: {2: "height", 3: "width"} for n in names_in + names_out}
                torch.onnx.export(module, inputs, tmp, dynamo=False, opset_version=opset,
                                  input_names=names_in, output_names=names_out,
                                  dynamic_axes=axes if dynamic else None)
        if check:
            report["checks"] = check_onnx(tmp, model, size, dynamic, rtol)
    return report


def _export_dynamo(module, inputs, out, names_in, names_out, dynamic, opset):
    shapes = None
    if dynamic:
        h, w = torch.export.Dim("height"), torch.export.Dim("width")
        shapes = (tuple({2: h, 3: w} for _ in inputs),)  # forward(*inputs): one tuple arg
    torch.onnx.export(module, inputs, out, dynamo=True, opset_version=opset,
                      input_names=names_in, output_names=names_out, dynamic_shapes=shapes,
                      external_data=False, verbose=False)


def check_onnx(path, model, size, dynamic=True, rtol=1e-4):
    """Run ``path`` in onnxruntime on random inputs at ``size`` (and, if ``dynamic``, at a
    second, odd size) and compare with ``model``; None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    sizes = [tuple(size)] + ([(size[0] + 13, size[1] + 7)] if dynamic else [])
    checks = []
    for hw in sizes:
        inputs = sample_inputs(model.cfg, hw, seed=1)
        got = session.run(None, {i.name: x.numpy() for i, x in zip(session.get_inputs(),
                                                                       inputs)})
        with torch.inference_mode():
            want = model(*inputs)
        want = want if isinstance(want, tuple) else (want,)
        err = 0.0
        for g, w in zip(got, want):
            w = w.numpy()
            if g.shape != w.shape:
                raise NetError(f"{path}: ONNX output shape {g.shape} at input {hw}, the model "
                               f"gives {w.shape}")
            err = max(err, float(np.abs(g - w).max() / max(1.0, float(np.abs(w).max()))))
        checks.append({"size": list(hw), "error": err})
        if err > rtol:
            raise NetError(f"{path}: ONNX output differs from the PyTorch model by {err:.3g} "
                           f"(relative) at input {hw}; tolerance {rtol:g}")
    return checks
