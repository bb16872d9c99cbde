"""ONNX export of a converted FCN, with its input height and width left free when possible.

Why the model is not exported as it is
--------------------------------------
The Caffe layers (:mod:`fcn_port.port.layers`) compute their output geometry in Python: ceil
pooling with Caffe's clip rule (a float32 division, extra right-hand padding), convolution
sizes with C's truncating division (``abs``), crop bounds checks, and a NaN scan before MAX
pooling. A tracer records those numbers as constants, so an export with dynamic axes runs at
other sizes but gives wrong scores there (measured: ~0.24 relative error at 64 x 80 for a model
traced at 41 x 59), and ``torch.export`` fails on the NaN branch (data-dependent control flow)
and on the ``Abs`` guards of the truncating division.

:func:`traceable` therefore swaps those layers, in a shallow copy sharing the parameters, for
plain ops that compute the same thing *for the geometries where they agree with Caffe*, and
says which layers it could not swap:

* MAX Pooling with pad 0 and kernel >= stride (every FCN pool: 2/2 in VGG, 3/2 in AlexNet):
  Caffe's ceil rule equals ``max_pool2d(ceil_mode=True)`` there; NaN is replaced by -FLT_MAX
  first and the result clamped at -FLT_MAX, as Caffe's running max does.
* 2-D Convolution / Deconvolution on axis 1: ``conv2d`` / ``conv_transpose2d``; the FCN's pad
  100 keeps every convolution's ``H + 2p - extent`` >= 0, where C's division is the floor.
* Crop at axis >= 2 on 4-D blobs: a slice from the offset, sized like the reference at run time.

The rest (ReLU, Eltwise, Scale, Concat, LRN, Dropout in eval) traces as it is. With every layer
swapped the export has symbolic ``height``/``width`` axes; otherwise it is for ``size`` only
(``report["dynamic"]`` is False and ``report["static_because"]`` names the layers).

Exporters: ``dynamo=False`` (default) uses the TorchScript exporter (deprecated in torch 2.9 but
present in 2.13; ~1 s for the tiny model), ``dynamo=True`` the ``torch.export`` one
(``onnxscript`` needed; 5-13 s for the tiny model with dynamic axes). Both give the same scores.
With onnxruntime installed the file is run and compared with the PyTorch model at ``size`` and,
for a dynamic export, at a second size; neither onnx nor onnxruntime is a dependency.
"""
import copy
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcn_port.port.errors import NetError
from fcn_port.port.layers.conv import Convolution, Deconvolution
from fcn_port.port.layers.crop import Crop
from fcn_port.port.layers.pooling import FLT_MAX, Pooling

OPSET = 18


class PlainConv(nn.Module):
    """A 2-D Caffe (De)Convolution as one ``conv2d`` / ``conv_transpose2d`` call."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        c = self.layer
        op = F.conv_transpose2d if c.transposed else F.conv2d
        return op(x, c.blob(0), c.blob(1) if c.bias_term else None, stride=c.stride,
                  padding=c.pad, groups=c.group, dilation=c.dilation)


class PlainMaxPool(nn.Module):
    """Caffe MAX pooling, pad 0, kernel >= stride: ``max_pool2d`` in ceil mode."""

    def __init__(self, layer):
        super().__init__()
        self.kernel, self.stride = layer.kernel, layer.stride

    def forward(self, x):
        x = torch.where(torch.isnan(x), torch.full_like(x, -FLT_MAX), x)
        return F.max_pool2d(x, self.kernel, self.stride, ceil_mode=True).clamp_min(-FLT_MAX)


class PlainCrop(nn.Module):
    """Caffe Crop of a 4-D blob from fixed offsets to the reference's (run-time) size."""

    def __init__(self, layer):
        super().__init__()
        self.axis, self.offsets = layer.axis, [layer._offset(i) for i in range(4)]

    def forward(self, x, ref):
        for i in range(self.axis, 4):
            o = self.offsets[i]
            x = x[(slice(None),) * i + (slice(o, o + ref.shape[i]),)]
        return x


def _plain(layer):
    """The plain-op module for ``layer``, or None with the reason it keeps Caffe's code."""
    if isinstance(layer, (Convolution, Deconvolution)):
        if layer.ndim == 4 and layer.axis == 1:
            return PlainConv(layer), None
        return None, "not a 2-D convolution on axis 1"
    if isinstance(layer, Pooling):
        if (layer.method == "MAX" and not layer.global_pooling and not layer.with_mask
                and layer.pad == (0, 0) and layer.ceil
                and all(k >= s for k, s in zip(layer.kernel, layer.stride))):
            return PlainMaxPool(layer), None
        return None, f"{layer.method} pooling with pad {layer.pad} (only MAX, pad 0, ceil)"
    if isinstance(layer, Crop):
        if layer.ndim == 4 and layer.axis >= 2:
            return PlainCrop(layer), None
        return None, f"crop on axis {layer.axis} of a {layer.ndim}-D blob"
    return layer, None


def traceable(model):
    """(module, [reasons]): a shallow copy of the FCN ``model`` whose size-dependent Caffe layers
    are plain ops (parameters shared, nothing copied); reasons name layers kept as they are."""
    from .fcn import FCN

    if not isinstance(model, FCN):
        raise NetError(f"ONNX export covers the FCN models (fcn_port.models), not "
                       f"{type(model).__name__}; interpreter checkpoints are not exported")
    out = copy.copy(model)
    out._modules = type(model._modules)(model._modules)
    kept = []
    for name, layer in model._modules.items():
        plain, why = _plain(layer)
        if plain is None:
            kept.append(f"{name}: {why}")
        else:
            out._modules[name] = plain
    return out.eval(), kept


def sample_inputs(cfg, size, seed=0):
    """Random inputs for ``cfg`` at ``size`` (H, W): one N=1 blob per input, Caffe's channels."""
    from .spec import net_param

    shapes = net_param(cfg, "deploy").layer[0].input_param.shape
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn((1, s.dim[1]) + tuple(size), generator=g) * 50 for s in shapes)


def export_onnx(model_or_ckpt, out, size=(500, 500), *, dynamic=True, dynamo=False,
                opset=OPSET, check=True, rtol=1e-4):
    """Write the FCN as ONNX to ``out``; inputs and outputs are named after the Caffe blobs
    (``data`` -> ``score``; NYUD ``color``/``depth``/``hha``; SIFT Flow ``score_sem``,
    ``score_geo``). Returns a report: exporter, dynamic, and with onnxruntime ``checks``: the
    error max|onnx - torch| / max(1, max|torch|) per size; over ``rtol`` raises NetError."""
    from .checkpoint import load

    model = load(model_or_ckpt) if isinstance(model_or_ckpt, (str, os.PathLike)) \
        else model_or_ckpt.eval()
    module, kept = traceable(model)
    dynamic = bool(dynamic) and not kept
    cfg, size = model.cfg, tuple(int(s) for s in size)
    inputs = sample_inputs(cfg, size)
    names_in, names_out = list(cfg.inputs), list(cfg.outputs)
    out = os.fspath(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the layers' Python checks
        if dynamo:
            _export_dynamo(module, inputs, out, names_in, names_out, dynamic, opset)
        else:
            axes = {n: {2: "height", 3: "width"} for n in names_in + names_out}
            torch.onnx.export(module, inputs, out, dynamo=False, opset_version=opset,
                              input_names=names_in, output_names=names_out,
                              dynamic_axes=axes if dynamic else None)
    report = {"onnx": out, "exporter": "dynamo" if dynamo else "torchscript", "opset": opset,
              "size": list(size), "dynamic": dynamic, "inputs": names_in,
              "outputs": names_out, "checks": None}
    if kept:
        report["static_because"] = kept
    if check:
        report["checks"] = check_onnx(out, model, size, dynamic, rtol)
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
