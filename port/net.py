"""The net interpreter: a NetParameter and a phase become a ``torch.nn.Module``.

What Caffe's ``Net::Init`` does, and this mirrors:

1. **Filter** layers by the NetState (phase, level, stages) against each layer's include /
   exclude rules (``StateMeetsRule``): a layer with include rules is kept if any rule is met, one
   with exclude rules is dropped if any is met; having both is an error.
2. **Insert splits** (``InsertSplits``): a top read by several layers (or read and also weighted as
   a loss) gets a ``Split`` layer named ``<blob>_<layer>_<i>_split`` with tops
   ``<blob>_<layer>_<i>_split_<j>``, so the instantiated layer list is Caffe's, name for name.
3. **Set up** layers in file order; a bottom must be a top of an earlier layer. Shapes flow
   through each layer's ``top_shapes`` (Caffe's ``Reshape``), so a bad net fails here, naming the
   layer. Tops equal to a bottom are Caffe's in-place layers; here every layer returns fresh
   tensors, so a later name simply rebinds.
4. **Loss weights**: ``loss_weight`` per top when given; otherwise 1 for the first top of a
   ``*Loss`` layer and 0 elsewhere. :meth:`CaffeNet.loss` is the weighted sum Caffe's backward
   starts from.

Parameters are ``state_dict`` entries ``"<layer>.<i>"`` (Caffe's blob i); each one's ParamSpec
(lr_mult, decay_mult, name for sharing) is kept for the solver. Layers named in ParamSpec.name
share one ``nn.Parameter``, as Caffe shares one blob.

:func:`to_proto` is Caffe's ``Net::ToProto`` for any net: the header of every caffemodel Caffe
writes (exports and training snapshots alike).
"""
import torch
from torch import nn

from .errors import NetError
from .formats.netcheck import kept as kept_by_rules
from .formats.proto import caffe_pb2
from .layers import LayerError, lookup

PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}


def filter_layers(net, phase, level=0, stages=()):
    """The layers Caffe keeps for this state (``Net::FilterNet``)."""
    kept = []
    for lp in net.layer:
        if lp.include and lp.exclude:
            raise NetError(f"layer '{lp.name}' ({lp.type}): has both include and exclude rules; "
                           "Caffe accepts only one kind")
        if kept_by_rules(lp, phase, level, stages):
            kept.append(lp)
    _check_tops(kept)
    return kept


def _check_tops(layers):
    """Caffe's ``AppendTop``: a top name already taken is an error unless the layer is in
    place (top i is bottom i)."""
    made = {}
    for lp in layers:
        for k, t in enumerate(lp.top):
            if t in made and not (k < len(lp.bottom) and lp.bottom[k] == t):
                raise NetError(f"layer '{lp.name}' ({lp.type}): top '{t}' is already made by "
                               f"layer '{made[t]}' and this layer is not in place (Caffe: "
                               "produced by multiple sources)")
            made.setdefault(t, lp.name)


def loss_weights(lp):
    """Caffe's loss weight of each top: explicit, or 1 on top 0 of a *Loss layer."""
    if lp.loss_weight:
        return list(lp.loss_weight) + [0.0] * (len(lp.top) - len(lp.loss_weight))
    return [1.0 if (i == 0 and lp.type.endswith("Loss")) else 0.0 for i in range(len(lp.top))]


def insert_splits(layers):
    """Caffe's ``InsertSplits``: return a new list of LayerParameters with Split layers added."""
    producer, uses = {}, {}
    for li, lp in enumerate(layers):
        for b in lp.bottom:
            if b not in producer:
                raise NetError(f"layer '{lp.name}' ({lp.type}): bottom '{b}' is not a top of any "
                               "earlier layer (Caffe runs layers in file order: a missing blob, "
                               "a misordered net or a cycle)")
            uses.setdefault(producer[b], []).append(None)
        for ti, t in enumerate(lp.top):
            producer[t] = (li, ti)
            if loss_weights(lp)[ti]:
                uses.setdefault((li, ti), []).append(None)
    out, producer, taken = [], {}, {}
    for li, lp in enumerate(layers):
        lp = _copy(lp)
        for k, b in enumerate(lp.bottom):
            src = producer[b]
            if len(uses[src]) > 1:
                j = taken.get(src, 0)
                taken[src] = j + 1
                lp.bottom[k] = f"{b}_{layers[src[0]].name}_{src[1]}_split_{j}"
        out.append(lp)
        weights = loss_weights(lp)
        for ti, t in enumerate(lp.top):
            producer[t] = (li, ti)
            n = len(uses.get((li, ti), ()))
            if n > 1:
                base = f"{t}_{lp.name}_{ti}_split"
                split = caffe_pb2.LayerParameter(name=base, type="Split", bottom=[t],
                                                 top=[f"{base}_{j}" for j in range(n)])
                if weights[ti]:  # the last split top carries the loss instead of the original
                    split.loss_weight.extend([0.0] * (n - 1) + [weights[ti]])
                    weights[ti] = 0.0
                    lp.loss_weight[:] = weights
                out.append(split)
    return out


def to_proto(net_param, phase="TEST"):
    """The layer header Caffe's ``Net::ToProto`` writes for ``net_param`` set up in ``phase``
    (what a caffemodel holds besides the blobs, spliced in on writing by
    :func:`~.formats.caffemodel.write_weights`): the net's ``name``, set even when empty; every
    layer of the instantiated net in order (filtered by the NetState rules, Split layers
    inserted); ``phase`` filled in on each layer and ``loss_weight: 1`` on a ``*Loss`` layer
    that had none (``LossLayer::LayerSetUp``)."""
    out = caffe_pb2.NetParameter()
    out.name = net_param.name  # set even when empty: Caffe always writes the name field
    for lp in insert_splits(filter_layers(net_param, phase)):
        _setup(lp, phase)
        out.layer.add().CopyFrom(lp)
    return out


def _setup(lp, phase):
    if not lp.HasField("phase"):
        lp.phase = PHASES[phase]
    if lp.type.endswith("Loss") and not lp.loss_weight:
        lp.loss_weight.append(1.0)


def _copy(lp):
    new = caffe_pb2.LayerParameter()
    new.CopyFrom(lp)
    return new


def _module_name(name):
    return name.replace(".", "\u00b7")  # nn.Module names cannot hold '.'


class CaffeNet(nn.Module):
    """A Caffe net as a module. ``net(data=x)`` returns ``{blob: tensor}`` of the net's outputs
    (tops no later layer reads), or of ``tops=[...]``; ``record=True`` adds every layer's tops
    as ``{(layer, i): tensor}`` under the key ``"_tops"``, ``record=net.loss_keys`` only the
    weighted tops :meth:`loss` reads (a training pass keeps no other top alive).

    ``input_shapes`` overrides the shapes of Input layers (or gives them to Python data layers);
    ``python_layers`` binds ``Python`` layers by name to a module or callable (``fn(*bottoms)``
    returns the tops). An unbound Python layer without bottoms (a data layer) turns its tops
    into inputs fed by the caller; a module named in a prototxt is imported only with the
    opt-in ``allow_python_import`` (True, or the trusted module names; never a standard-library
    module, see :mod:`.layers.python`).
    """

    def __init__(self, net_param, phase="TEST", *, level=0, stages=(), input_shapes=None,
                 python_layers=None, allow_python_import=False, splits=True):
        super().__init__()
        if phase not in PHASES:
            raise NetError(f"phase must be TRAIN or TEST, not {phase!r}")
        self.phase, self.name = phase, net_param.name
        self.force_backward = net_param.force_backward  # else Caffe computes no input diffs
        layers = filter_layers(net_param, phase, level, stages)
        self.layer_params = insert_splits(layers) if splits else [_copy(lp) for lp in layers]
        self.layers = nn.ModuleDict()
        self.inputs, self.blob_shapes, self.param_specs = [], {}, []
        self.loss_tops = []  # (layer index, top index, weight)
        input_shapes, bound = dict(input_shapes or {}), dict(python_layers or {})
        shared, readers = {}, set()
        for li, lp in enumerate(self.layer_params):
            for b in lp.bottom:
                if b not in self.blob_shapes:
                    raise NetError(f"layer '{lp.name}' ({lp.type}): bottom '{b}' is not a top of any "
                                   "earlier layer")
                readers.add(b)
            bottoms = [self.blob_shapes[b] for b in lp.bottom]
            if _module_name(lp.name) in self.layers:
                raise NetError(f"layer '{lp.name}' ({lp.type}): a layer of this name comes "
                               "earlier; layer names must be unique (weights load by name)")
            layer = self._make(lp, bottoms, input_shapes, bound, allow_python_import)
            self.layers[_module_name(lp.name)] = layer
            tops = _named(lp, bottoms, layer.top_shapes, bottoms)
            if len(tops) != len(lp.top):
                raise NetError(f"layer '{lp.name}' ({lp.type}): makes {len(tops)} tops but the "
                               f"prototxt names {len(lp.top)}")
            for t, shape in zip(lp.top, tops):
                self.blob_shapes[t] = tuple(shape) if shape is not None else None
            for ti, w in enumerate(loss_weights(lp)):
                if w:
                    self.loss_tops.append((li, ti, w))
            self._specs(li, lp, layer, shared)
        last = {}
        for li, lp in enumerate(self.layer_params):
            for t in lp.top:
                last[t] = li
        consumed = {b for lp in self.layer_params for b in lp.bottom}
        self.outputs = [t for t in last if t not in consumed]

    def _make(self, lp, bottoms, input_shapes, bound, allow_import):
        cls, kw = lookup(lp), {}
        if lp.type == "Python":
            kw = dict(bound=bound.get(lp.name), allow_import=allow_import,
                      shapes=[input_shapes.get(t) for t in lp.top])
        elif cls.is_source:
            lp = _copy(lp)
            for k, t in enumerate(lp.top):
                if t in input_shapes:
                    _set_input_shape(lp, k, input_shapes[t])
        layer = _named(lp, bottoms, cls, lp, bottoms, self.phase, **kw)
        if layer.is_source:
            self.inputs.extend(lp.top)
        return layer

    def _specs(self, li, lp, layer, shared):
        for i in range(layer.n_blobs):
            spec = lp.param[i] if i < len(lp.param) else caffe_pb2.ParamSpec()
            p = layer.blob(i)
            if spec.name:
                owner = shared.get(spec.name)
                if owner is None:
                    shared[spec.name] = p
                else:
                    strict = spec.share_mode != caffe_pb2.ParamSpec.PERMISSIVE
                    if (owner.shape != p.shape) if strict else (owner.numel() != p.numel()):
                        raise NetError(f"layer '{lp.name}' ({lp.type}): shared param '{spec.name}' "
                                       f"has shape {tuple(p.shape)}, its owner {tuple(owner.shape)}")
                    setattr(layer, str(i), owner)
                    p = owner
            self.param_specs.append((lp.name, i, p, spec))

    def forward(self, *args, tops=None, record=False, **feed):
        blobs = dict(zip(self.inputs, args))
        blobs.update(feed)
        missing = [b for b in self.inputs if b not in blobs]
        if missing:
            raise NetError(f"net '{self.name}': no value fed for input blob(s) {missing}")
        recorded = {}
        for lp, layer in zip(self.layer_params, self.layers.values()):
            if layer.is_source:
                out = layer(*[blobs[t] for t in lp.top])
            else:
                out = layer(*[blobs[b] for b in lp.bottom])
            out = out if isinstance(out, (tuple, list)) else (out,)
            for i, (t, v) in enumerate(zip(lp.top, out)):
                blobs[t] = v
                if record is True or (record and (lp.name, i) in record):
                    recorded[(lp.name, i)] = v
        result = {t: blobs[t] for t in (tops or self.outputs)}
        if record is not False:  # True, or a set of keys (maybe empty)
            result["_tops"] = recorded
        return result

    @property
    def loss_keys(self):
        """The ``(layer, i)`` keys of the tops with a loss weight: what :meth:`loss` reads."""
        return frozenset((self.layer_params[li].name, ti) for li, ti, _ in self.loss_tops)

    def loss(self, tops):
        """Caffe's objective: sum of loss_weight * top.sum() over weighted tops (from ``record``)."""
        total = 0.0
        for li, ti, w in self.loss_tops:
            total = total + w * tops[(self.layer_params[li].name, ti)].sum()
        return total

    def load_caffemodel(self, weights, *, strict=False):
        """Copy params by layer name from a caffemodel path (binary or HDF5) or a ``Weights``.

        Like Caffe's ``CopyTrainedLayersFrom``: source layers the net lacks are ignored, blob
        counts and shapes must agree (legacy 4-D dims match by count and trailing dims). Returns
        ``{"loaded": [...], "missing": [...], "unexpected": [...]}``; ``strict`` raises on missing.
        """
        own = {lp.name: layer for lp, layer in zip(self.layer_params, self.layers.values())
               if layer.n_blobs}
        targets = {name: [layer.blob(i) for i in range(layer.n_blobs)]
                   for name, layer in own.items()}
        w = copy_trained_layers(weights, targets)
        where = w.path or "weights"
        sharers = _sharers(targets)
        shared = {name for name, blobs in targets.items()  # every blob an earlier layer's
                  if all((name, i) in sharers for i in range(len(blobs)))}
        report = {"loaded": [n for n in own if n in w.params],
                  "missing": sorted(set(own) - set(w.params) - shared),
                  "unexpected": sorted(set(w.params) - set(own))}
        if strict and report["missing"]:
            raise NetError(f"{where}: no params for layer(s) {report['missing']}")
        return report


def copy_trained_layers(weights, targets, error=NetError):
    """Caffe's ``Net::CopyTrainedLayersFrom``: copy a caffemodel's blobs (a path, binary or
    HDF5, or ``Weights``) into ``targets`` ({layer name: [tensor per blob]}) by layer name and
    blob index. Source layers with no target are ignored; a layer's blob count and each blob's
    shape must agree (legacy 4-D dims match as ``Weights.fits`` says), else ``error`` names the
    file, layer and shapes; NaN/Inf weights are refused (:meth:`Weights.check_finite`).
    Returns the ``Weights``. Used by :meth:`CaffeNet.load_caffemodel`
    and by the solvers' ``Solver.load_weights`` (any model's param list)."""
    from .formats.caffemodel import Weights, read_weights

    w = weights if isinstance(weights, Weights) else read_weights(weights)
    w.check_finite()
    where = w.path or "weights"
    sharers = _sharers(targets)
    with torch.no_grad():
        for name, blobs in w.params.items():
            mine = targets.get(name)
            if mine is None:
                continue
            if len(blobs) > len(mine) or (len(blobs) < len(mine) and w.format != "hdf5"):
                raise error(f"{where}: layer '{name}' has {len(blobs)} blobs in the file, the "
                            f"net expects {len(mine)}")
            left_out = set(range(len(blobs), len(mine))) | \
                {i for i in range(len(blobs)) if (name, i) in w.absent}
            unshared = sorted(left_out - {i for i in left_out if (name, i) in sharers})
            if unshared:
                raise error(f"{where}: layer '{name}' has no param {unshared[0]} in the file, "
                            "and the net does not share it from another layer (Caffe: "
                            "incompatible number of blobs)")
            for i, (a, p) in enumerate(zip(blobs, mine)):
                if i in left_out:  # Caffe's HDF5 writer keeps a shared param at its owner
                    continue
                if not w.fits(name, i, p.shape):
                    raise error(f"{where}: cannot copy param {i} of layer '{name}': shape "
                                f"{tuple(a.shape)} in the file, {tuple(p.shape)} in the net")
                p.copy_(torch.from_numpy(a.astype("float32", copy=False)).reshape(p.shape))
    return w


def sharers(blobs):
    """{(layer, i)} of the ``(layer, i, tensor)`` triples (in layer order) whose tensor an
    earlier layer holds: Caffe's ``param_owners_[id] != -1``, the first holder owning a param
    shared by ``ParamSpec.name``. ``Net::ToHDF5`` writes those under their owner only."""
    seen, out = set(), set()
    for name, i, t in blobs:
        if id(t) in seen:
            out.add((name, i))
        seen.add(id(t))
    return out


def _sharers(targets):
    return sharers((name, i, t) for name, tensors in targets.items()
                   for i, t in enumerate(tensors))


def _named(lp, bottom_shapes, fn, *args, **kw):
    """``fn(*args)``, with an error from inside a layer reported as that layer's;
    ``bottom_shapes`` say which bottom has none when that is the cause."""
    try:
        return fn(*args, **kw)
    except LayerError:
        raise
    except (ValueError, RuntimeError, IndexError, TypeError) as e:
        unknown = [b for b, shape in zip(lp.bottom, bottom_shapes) if shape is None]
        if isinstance(e, TypeError) and unknown:
            raise NetError(f"layer '{lp.name}' ({lp.type}): the shape of bottom '{unknown[0]}' "
                           "is not known when the net is set up (its source declares none: give "
                           "the Input a shape, or feed the data layer)") from e
        raise NetError(f"layer '{lp.name}' ({lp.type}): {e}") from e


def _set_input_shape(lp, k, shape):
    shapes = lp.input_param.shape
    while len(shapes) <= k:
        shapes.add().CopyFrom(shapes[0] if len(shapes) else caffe_pb2.BlobShape())
    del shapes[k].dim[:]
    shapes[k].dim.extend(int(d) for d in shape)


def from_prototxt(path, phase="TEST", weights=None, **kw):
    """Build a :class:`CaffeNet` from a prototxt file, and load ``weights`` if given."""
    from .formats.text import read_net

    net_param, _ = read_net(path)
    net = CaffeNet(net_param, phase, **kw)
    if weights is not None:
        net.load_caffemodel(weights)
    return net
