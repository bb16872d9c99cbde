"""Parity of the hand-written models against real Caffe (``fcn-port parity CASE --model M``).

A forward oracle case (``net.prototxt``, ``weights.caffemodel[.h5]``, ``blobs.npz``) is run
through an :class:`~.fcn.FCN` instead of the interpreter: ``M`` is an official name (the
weights are converted from the case's own caffemodel, binary and HDF5 both) or a checkpoint.
Every layer of the model is a module named after its Caffe layer, so a forward hook on each
gives that layer's top, compared with ``top/<layer>/0`` where Caffe recorded it: the final
``score`` and every intermediate blob (the Split layers Caffe inserted are not in the model,
and Dropout does not run in eval mode, as in Caffe's TEST phase).
"""
from pathlib import Path

import numpy as np
import torch

from fcn_port.port.parity import DEFAULT_RTOL, Comparison

from .checkpoint import load


def _models(case, model):
    """(tag, module) pairs: the checkpoint, or ``model`` fed each of the case's weight files."""
    if Path(model).is_file():
        yield " [ckpt]", load(model)
        return
    for path in (case / "weights.caffemodel", case / "weights.caffemodel.h5"):
        if path.exists():
            net = load(path, model=None if model == "auto" else model)
            yield ("" if path.suffix == ".caffemodel" else " [h5]"), net


def run_model_case(case, model, rtol=DEFAULT_RTOL):
    """Run ``case`` through ``model`` (name or checkpoint); the dict ``parity --json`` prints."""
    case = Path(case)
    blobs = np.load(case / "blobs.npz")
    cmp, caffe_tops = Comparison(), {k for k in blobs.files if k.startswith("top/")}
    for tag, net in _models(case, model):
        seen = {}
        hooks = [m.register_forward_hook(lambda mod, args, out, n=name: seen.__setitem__(n, out))
                 for name, m in net.named_children()]
        inputs = [torch.from_numpy(np.array(blobs[f"input/{b}"], np.float32))
                  for b in net.meta["inputs"]]
        with torch.inference_mode():
            outs = net(*inputs)
        for h in hooks:
            h.remove()
        outs = outs if isinstance(outs, tuple) else (outs,)
        for name, out in zip(net.cfg.outputs, outs):
            seen[name] = out
        for name, out in seen.items():
            key = f"top/{name}/0"
            if key in caffe_tops:
                cmp.add(key + tag, out.numpy(), blobs[key])
        if f"top/{net.cfg.outputs[0]}/0" not in caffe_tops:
            raise ValueError(f"{case}: Caffe recorded no '{net.cfg.outputs[0]}' top to compare")
    return {"case": case.name, "kind": f"model {model if not Path(model).is_file() else 'ckpt'}",
            "compared": cmp.compared, "worst": cmp.worst, "where": cmp.where,
            "pass": cmp.compared > 0 and cmp.worst <= rtol}

