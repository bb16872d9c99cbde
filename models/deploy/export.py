"""Checkpoint -> Caffe: a caffemodel (binary or HDF5) and the deploy prototxt real Caffe loads.

What Caffe expects
------------------
A ``.caffemodel`` is a binary ``NetParameter`` as ``Net::ToProto`` + ``SerializeToString``
write it after a net was set up (by ``caffe train`` snapshots or pycaffe's ``net.save``):

* the net's ``name`` (always set, even when empty) and then **every layer of the instantiated
  net, in order**: the layers kept for the phase, the ``Split`` layers ``Net::Init`` inserted
  (``<blob>_<layer>_<i>_split``, their bottoms rewired), Input and ReLU layers too;
* each layer is its ``LayerParameter`` as set up: ``phase`` filled in from the net's phase
  (``TEST`` here), ``loss_weight: 1`` added to ``*Loss`` layers that had none
  (``LossLayer::LayerSetUp``), and its learnable ``blobs`` (weights, bias) in Caffe's shapes;
  layers without params carry no blobs.

:func:`to_proto` builds that header from any NetParameter, and :func:`export` writes it with the
model's params through :func:`fcn_port.port.formats.caffemodel.write_weights`, which emits Caffe's byte
order: for the oracle nets the file is byte-identical to the one Caffe wrote. Caffe's
``CopyTrainedLayersFrom`` reads layers by name and ignores the others, so the file loads into
the deploy net (and into train/val nets of the same model). HDF5 (``h5=True``) is
``Net::ToHDF5``: a ``/data/<layer>`` group per layer, dataset ``i`` per blob; Caffe tells the
two formats apart by content (``H5Fis_hdf5``), the name is free (snapshots use
``.caffemodel.h5``).

The deploy prototxt of an FCN checkpoint is the official deploy net of its configuration
(:func:`fcn_port.models.net_param` ``"deploy"``: an ``Input`` layer 1 x C x 500 x 500, no
Dropout, no loss; Caffe reshapes to any input size with ``net.blobs['data'].reshape``), its
Input layer named as in the converted caffemodel (``meta["input_layer"]``; Caffe's own files
say ``data`` where the official deploy.prototxt says ``input``). An
interpreter checkpoint (``meta["kind"] == "caffenet"``) gets its own prototxt back, as stored.
"""
import os

import torch

from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.net import to_proto

PHASE = "TEST"


def caffe_parts(model):
    """(deploy NetParameter, {layer: [float32 arrays]}) of a loaded model: an
    :class:`~fcn_port.models.FCN` or an interpreter :class:`~fcn_port.port.net.CaffeNet`."""
    from fcn_port.port.net import CaffeNet

    from ..fcn import FCN
    from ..spec import net_param

    if isinstance(model, FCN):
        deploy = net_param(model.cfg, "deploy")
        name = (getattr(model, "meta", None) or {}).get("input_layer")
        if isinstance(name, str) and name:  # the source's name of the Input layer, kept
            for lp in deploy.layer:
                if lp.type == "Input":
                    lp.name = name
        params = {}
        for key, t in model.state_dict().items():
            layer, i = key.rsplit(".", 1)
            params.setdefault(layer, []).append((int(i), _array(t)))
        return deploy, {k: [a for _, a in sorted(v)] for k, v in params.items()}
    if isinstance(model, CaffeNet):
        text = (getattr(model, "meta", None) or {}).get("prototxt")
        if text is not None:
            from fcn_port.port.formats.text import parse_text

            deploy, _ = parse_text(text, caffe_pb2.NetParameter, "checkpoint")
        else:  # a net built in code: its instantiated layers (explicit Splits load in Caffe)
            deploy = caffe_pb2.NetParameter(name=model.name, layer=model.layer_params)
        params = {}
        for layer, i, p, _ in model.param_specs:  # shared params: written under every layer
            params.setdefault(layer, []).append(_array(p))
        return deploy, params
    raise TypeError(f"export takes an FCN, a CaffeNet or a checkpoint path, not "
                    f"{type(model).__name__}")


def _array(t):
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def export(model_or_ckpt, out, h5=False, prototxt=None, *, phase=PHASE):
    """Write the model's weights to ``out`` as a caffemodel (binary, or HDF5 with ``h5``) and,
    with ``prototxt``, its deploy net there. ``model_or_ckpt``: a module or a path
    :func:`fcn_port.models.load` reads (checkpoint or caffemodel).

    Returns ``{"caffemodel", "format", "sha256" (binary only), "prototxt", "layers",
    "param_layers", "values"}``. Every file is written whole or not at all."""
    from fcn_port.port.formats.caffemodel import write_weights
    from fcn_port.port.formats.hdf5 import write_hdf5_weights
    from fcn_port.port.formats.text import write_text

    from ..checkpoint import load

    model = load(model_or_ckpt) if isinstance(model_or_ckpt, (str, os.PathLike)) \
        else model_or_ckpt
    deploy, params = caffe_parts(model)
    header = to_proto(deploy, phase)
    have = {lp.name for lp in header.layer}
    lost = sorted(set(params) - have)
    if lost:  # write_weights would refuse too; say why in terms of the model
        from fcn_port.port.errors import NetError

        raise NetError(f"export: params of layer(s) {lost} have no layer in the {phase} net")
    out = os.fspath(out)
    report = {"caffemodel": out, "format": "hdf5" if h5 else "binary", "sha256": None,
              "prototxt": None, "layers": len(header.layer), "param_layers": len(params),
              "values": int(sum(a.size for blobs in params.values() for a in blobs))}
    if h5:  # an interpreter net's shared params under their owners only, as Net::ToHDF5
        from fcn_port.port.net import sharers

        specs = getattr(model, "param_specs", ())
        write_hdf5_weights(params, out, net=header,
                           shared=sharers((l, i, p) for l, i, p, _ in specs))
    else:
        report["sha256"] = write_weights(params, out, net=header)
    if prototxt is not None:
        write_text(deploy, prototxt)
        report["prototxt"] = os.fspath(prototxt)
    return report
