"""Surgery on nets and files: a target net's param shapes and initial values from its
definition, the official recipes end to end, and the result written as a caffemodel that the
target net loads. The algorithms themselves, on arrays, are in :mod:`.arrays`.

Target shapes come from instantiating :class:`~.net.CaffeNet` on PyTorch's ``meta`` device:
every layer's own setup runs, so the shapes are exactly the ones the net will have (InnerProduct
sizes that follow from the input included), and no memory is allocated for the weights.
Official train/val prototxts start with a Python data layer whose tops have no shapes (data,
label; NYUD color, depth, hha; SIFT Flow data, sem, geo). Those tops get a nominal
1x3x500x500 (the official deploy/infer size), and labels and depth get 1x1x500x500. FCN param
shapes do not depend on the input size. Pass ``input_shape`` for nets whose InnerProduct layers
do (a VGG16 classifier needs 224x224 for its fc6 4096x25088).

A solve.py loads weights into the solver's net, which Caffe has just initialised from the
prototxt's fillers. So target blobs that no source reaches start as those fillers would make
them (:func:`initial_params`), or from an ``init`` caffemodel (to chain transplants, as
color-HHA does with its two towers).
"""
import os

import numpy as np
import torch

from ..errors import NetError
from .arrays import (Report, SurgeryError, _arr, _legacy_shape, _shape, _source, color_depth_conv1,
                      expand_score, interp, transplant, upsampling_layers)

NOMINAL_SIZE = 500


def resolve_net(spec, *, by_name=None):
    """The target net of a surgery as a NetParameter: one given as is, or a prototxt path
    (train, val or deploy; read and upgraded). ``by_name`` maps a plain name (no folder, no
    dot: an official model such as ``voc-fcn16s``) to its net, even where a folder or file of
    that name exists (the official recipe makes a ``voc-fcn16s/`` folder): a path is written as
    one (``./voc-fcn16s/train.prototxt``). Only a name ``by_name`` does not know is read as a
    file when one exists. The CLI passes the model zoo's (:func:`fcn_port.models.deploy_net`);
    port/ itself knows no model names."""
    from ..errors import UserInputError
    from ..formats.proto import caffe_pb2
    from ..formats.text import read_net

    if isinstance(spec, caffe_pb2.NetParameter):
        return spec
    path = os.fspath(spec)
    if by_name is not None and os.sep not in path and "/" not in path and "." not in path:
        try:
            return by_name(path)
        except UserInputError:
            if not os.path.isfile(path):
                raise
    return read_net(path)[0]


def _load(weights):
    """A Weights from a path (binary or HDF5 caffemodel); Weights and dicts as they are."""
    if isinstance(weights, (str, os.PathLike)):
        from ..formats.caffemodel import read_weights

        return read_weights(weights).check_finite()
    return weights


def _one_channel(top):
    t = top.lower()
    return "label" in t or "depth" in t or t in ("sem", "geo")


def nominal_input_shapes(net_param, input_shape=None):
    """Shapes for the data tops of ``net_param``: {top: shape}.

    ``input_shape`` None: tops of bottomless Python layers and of Input layers without a shape
    get 1x3x500x500 (labels, 'sem', 'geo' and depth 1x1x500x500); sized Input layers keep theirs.
    A tuple (N, C, H, W): the same, for every data top, Input layers included. A dict: exactly
    those tops (the rest as with None)."""
    given = {k: tuple(v) for k, v in input_shape.items()} if isinstance(input_shape, dict) else {}
    base = tuple(input_shape) if input_shape is not None and not given else None
    shape = base or (1, 3, NOMINAL_SIZE, NOMINAL_SIZE)
    shapes = {}
    for lp in net_param.layer:
        data = (lp.type == "Python" and not lp.bottom) or (
            lp.type == "Input" and (base is not None or not len(lp.input_param.shape)))
        for t in lp.top if data else ():
            one = _one_channel(t) and len(shape) == 4
            shapes[t] = shape[:1] + (1,) + shape[2:] if one else shape
    shapes.update(given)
    return shapes


def _nets(net_param, input_shape, phase):
    """The net instantiated on the meta device, per phase (TRAIN and TEST when ``phase`` is None
    and some layer has phase rules; params from both are merged)."""
    from ..net import CaffeNet

    if phase is None:
        ruled = any(len(lp.include) or len(lp.exclude) for lp in net_param.layer)
        phases = ("TRAIN", "TEST") if ruled else ("TEST",)
    else:
        phases = (phase,)
    shapes = nominal_input_shapes(net_param, input_shape)
    with torch.device("meta"):
        return [CaffeNet(net_param, ph, input_shapes=shapes) for ph in phases]


def _param_layers(nets):
    for net in nets:
        for lp, layer in zip(net.layer_params, net.layers.values()):
            if layer.n_blobs:
                yield net, lp, layer


def param_shapes(net_param, input_shape=None, *, phase=None):
    """{layer: [blob shape, ...]} of every param layer of a net (NetParameter or prototxt path),
    in the net's order, computed without allocating anything (see the module docstring)."""
    net_param = resolve_net(net_param)
    found = {}
    for _, lp, layer in _param_layers(_nets(net_param, input_shape, phase)):
        shapes = [tuple(layer.blob(i).shape) for i in range(layer.n_blobs)]
        if found.setdefault(lp.name, shapes) != shapes:
            raise NetError(f"layer '{lp.name}': param shapes {found[lp.name]} in one phase and "
                           f"{shapes} in the other")
    order = {lp.name: i for i, lp in enumerate(net_param.layer)}
    return dict(sorted(found.items(), key=lambda kv: order.get(kv[0], len(order))))


def initial_params(net_param, layers=None, input_shape=None, *, phase=None):
    """{layer: [float32 array, ...]}: the values Caffe's net init gives ``layers`` (default:
    all param layers) from their fillers; only the layers asked for are allocated."""
    from ..layers import lookup

    net_param = resolve_net(net_param)
    wanted = None if layers is None else set(layers)
    out = {}
    for net, lp, layer in _param_layers(_nets(net_param, input_shape, phase)):
        if lp.name in out or (wanted is not None and lp.name not in wanted):
            continue
        real = lookup(lp)(lp, [net.blob_shapes[b] for b in lp.bottom], net.phase)
        out[lp.name] = [real.blob(i).detach().numpy() for i in range(real.n_blobs)]
    missing = sorted((wanted or set()) - set(out))
    if missing:
        raise NetError(f"no param layer(s) {missing} in net '{net_param.name}'")
    return out


def _init_values(init, shapes):
    """The target's starting values from an ``init`` caffemodel (its layers must fit)."""
    params, legacy, where = _source(_load(init))
    start = {}
    for q, tshapes in shapes.items():
        if q in params:
            got = [_legacy_shape(_shape(a), (q, i) in legacy) for i, a in enumerate(params[q])]
            if got != [tuple(t) for t in tshapes]:
                raise SurgeryError(f"{where or 'init'}: layer '{q}' has blobs {got}; the target "
                                   f"net's are {tshapes}")
            start[q] = [_arr(a).reshape(t) for a, t in zip(params[q], tshapes)]
    return start, where or "init"


def transplant_net(source, net, suffix="", *, init=None, interp_layers="auto", expand=(),
                   skip=(), input_shape=None, phase=None):
    """The official solve.py start: ``net``'s params (a NetParameter or prototxt path) from
    ``source`` (a caffemodel path, Weights or {layer: [array]}) by :func:`transplant`, then the
    'up' layers bilinear (``interp_layers``: "auto", a list, or None for none). Blobs no
    source reaches keep ``init``'s value (a caffemodel of this same net) or the layer's filler.
    Returns ({layer: [float32 array]} for every param layer of the net, Report)."""
    net_param = resolve_net(net)
    source = _load(source)
    src = _source(source)[0]
    shapes = param_shapes(net_param, input_shape, phase=phase)
    start, init_where = _init_values(init, shapes) if init is not None else ({}, None)

    def covered(q):
        p = q[:len(q) - len(suffix)] if q.endswith(suffix) else None
        return (p in src and p not in skip and p not in expand
                and len(src[p]) >= len(shapes[q]))

    need = [q for q in shapes if q not in start and not covered(q)]
    start.update(initial_params(net_param, need, input_shape, phase=phase) if need else {})
    params, report = transplant({q: start.get(q, s) for q, s in shapes.items()}, source, suffix,
                                expand=expand, skip=skip)
    for e in report.select("not initialised"):
        from_init = init is not None and e.target in start and e.target not in need
        e.note = (f"keeps its value from {init_where}" if from_init else
                  "keeps the layer's filler value" + (
                      "" if np.any(params[e.target][e.blob]) else ": zeros"))
    if interp_layers:
        auto = isinstance(interp_layers, (str, bool))
        interp(params, upsampling_layers(params) if auto else interp_layers, report=report)
    return params, report


def color_depth_transplant(source, net, *, layer="conv1_1_bgrd", base_layer="conv1_1", **kw):
    """The NYUD color-D recipe: :func:`transplant_net`, then ``layer`` from the source's
    ``base_layer`` by :func:`color_depth_conv1`. Returns (params, Report)."""
    source = _load(source)
    src, legacy, where = _source(source)
    if base_layer not in src:
        raise SurgeryError(f"{where or 'source'}: no param layer '{base_layer}' (the VGG "
                           "conv1_1 that color-D's first conv starts from)")
    params, report = transplant_net(source, net, **kw)
    if layer not in params:
        raise SurgeryError(f"the target net has no param layer '{layer}' (color-D's 4-channel "
                           "first conv)")
    params[layer] = color_depth_conv1(src[base_layer], params[layer], layer=layer)
    report.entries = [e for e in report.entries
                      if not (e.action == "not initialised" and e.target == layer)]
    notes = ["[:, :3] = conv1_1, [:, 3] = its mean over the 3 input channels", "bias copied"]
    for i, b in enumerate(params[layer]):
        report.add("color-d", base_layer, layer, i,
                   _legacy_shape(_shape(src[base_layer][i]), (base_layer, i) in legacy),
                   b.shape, notes[min(i, 1)])
    return params, report


def interp_weights(weights, layers=None):
    """A caffemodel (path or Weights) with ``layers`` (default: names containing 'up') set to
    bilinear; the other blobs are shared, not copied. Returns (Weights, Report)."""
    from ..formats.caffemodel import Weights

    w = _load(weights)
    params = dict(w.params)
    layers = upsampling_layers(params) if layers is None else list(layers)
    for name in layers:
        if name in params:
            params[name] = [np.array(a, np.float32) for a in params[name]]
    report = Report(w.path)
    interp(params, layers, report=report)
    return Weights(w.net, params, legacy=w.legacy, version=w.version), report


def _outputs(w, layer):
    """Output count of a param layer's first blob (legacy dims dropped), or None."""
    blobs = w.params.get(layer) or []
    shape = _legacy_shape(_shape(blobs[0]), (layer, 0) in w.legacy) if blobs else ()
    return shape[0] if shape else None


def expand_weights(weights, layers, classes):
    """A caffemodel (path or Weights) widened to ``classes`` classes, as a net that the FCN
    with that many classes loads (``fcn-port convert`` takes it).

    ``layers``: the score layers (a name or a list; None: every param layer named ``score*``
    with ``score_fr``'s class count). Each is widened by :func:`expand_score`: the old classes
    first, the new ones 0 (Caffe's default filler; give the target net to
    :func:`transplant_net` with ``expand=`` to use its fillers instead). Every other score
    layer with the same class count (an FCN-8s's ``score_pool4`` / ``score_pool3``, which feed
    the same sums) must be among them: a file that would still hold the old count is refused,
    naming them. The upsampling layers (names with 'up', as interp) that map those classes to
    themselves are widened by :func:`expand_upsampling` (old block kept, new classes bilinear).
    Every widened layer's num_output in the header follows. Returns (Weights, Report)."""
    from ..formats.caffemodel import Weights
    from ..formats.proto import caffe_pb2
    from .arrays import expand_upsampling

    w = _load(weights)
    where = w.path or "weights"
    if layers is None:
        if "score_fr" not in w.params:
            raise SurgeryError(f"{where}: no 'score_fr' layer to take the class count from; name "
                               "the score layers with --layer")
        layers = [n for n in w.params if n.startswith("score")
                  and _outputs(w, n) == _outputs(w, "score_fr")]
    layers = [layers] if isinstance(layers, str) else list(layers)
    for layer in layers:
        if layer not in w.params:
            raise SurgeryError(f"{where}: no param layer '{layer}' to expand (layers with "
                               f"params: {', '.join(w.params)})")
    k = _outputs(w, layers[0])
    if not k:
        raise SurgeryError(f"{where}: layer '{layers[0]}': weight is a scalar; not a score layer")
    if classes < k:
        raise SurgeryError(f"{where}: layer '{layers[0]}' has {k} classes; --classes {classes} "
                           "would drop some (expand-score only adds classes)")
    other = [n for n in layers[1:] if _outputs(w, n) != k]
    left = [n for n in w.params if n.startswith("score") and n not in layers
            and _outputs(w, n) == k]
    if other or left:
        why = (f"{', '.join(other)} do not have {k} outputs as {layers[0]} does" if other else
               f"{', '.join(left)} also output the {k} classes (they feed the same sum) and "
               f"would stay {k}-class; add them: --layer {','.join(layers + left)}")
        raise SurgeryError(f"{where}: {why} (or omit --layer: every score layer with "
                           "score_fr's count)")
    params, report = dict(w.params), Report(w.path)
    for layer in layers:
        old = [_arr(a).reshape(_legacy_shape(_shape(a), (layer, i) in w.legacy))
               for i, a in enumerate(w.params[layer])]
        if len(old) > 2:
            raise SurgeryError(f"{where}: layer '{layer}' has {len(old)} blobs; a score layer has "
                               "a weight and a bias")
        new = [np.zeros((classes,) + old[0].shape[1:], np.float32)]
        new += [np.zeros(classes, np.float32) for _ in old[1:2]]
        params[layer] = expand_score(new, old, layer=layer)
        for i, (a, b) in enumerate(zip(old, params[layer])):
            report.add("expanded", layer, layer, i, a.shape, b.shape,
                       f"classes {k} -> {classes}, new ones 0")
    ups = [n for n in upsampling_layers(w.params) if len(w.params[n]) == 1
           and _legacy_shape(_shape(w.params[n][0]), (n, 0) in w.legacy)[:2] == (k, k)]
    for layer in ups:
        old = _arr(w.params[layer][0]).reshape(
            _legacy_shape(_shape(w.params[layer][0]), (layer, 0) in w.legacy))
        params[layer] = [expand_upsampling(old, classes, layer=layer)]
        report.add("expanded", layer, layer, 0, old.shape, params[layer][0].shape,
                   f"classes {k} -> {classes}: old block kept, new ones bilinear "
                   f"{old.shape[2]}x{old.shape[3]} on W[i, i]")
    header = caffe_pb2.NetParameter()
    header.CopyFrom(w.net)
    for lp in header.layer:
        if lp.name in layers + ups and lp.type in ("Convolution", "Deconvolution",
                                                   "InnerProduct"):
            field = "inner_product_param" if lp.type == "InnerProduct" else "convolution_param"
            getattr(lp, field).num_output = classes
    legacy = {x for x in w.legacy if x[0] not in layers + ups}
    return Weights(header, params, legacy=legacy, version=w.version), report


def save(weights, path, *, net=None):
    """Write params ({layer: [array]} with ``net``, or a Weights) as a caffemodel the net loads:
    HDF5 when ``path`` ends in .h5, binary otherwise; all or nothing. Returns the binary file's
    sha256 (None for HDF5)."""
    from ..formats.caffemodel import write_weights
    from ..formats.hdf5 import write_hdf5_weights

    net = resolve_net(net) if net is not None else None
    if os.fspath(path).endswith(".h5"):
        write_hdf5_weights(weights, path, net=net)
        return None
    return write_weights(weights, path, net=net)
