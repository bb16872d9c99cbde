"""Crop offsets the way pycaffe's ``caffe.coord_map`` derives them (our own implementation).

How Caffe's coord_map works
---------------------------
Along every spatial axis a layer relates its top coordinates to its bottom coordinates by an
affine map ``top = scale * bottom + shift``, taking the *centre* of each output's receptive
field (``k`` the effective kernel ``dilation * (kernel - 1) + 1``, ``s`` stride, ``p`` pad)::

    Convolution, Pooling, Im2col   scale 1/s   shift (p - (k - 1) / 2) / s
    Deconvolution                  scale s     shift (k - 1) / 2 - p
    Crop                           scale 1     shift -offset
    pass-through (ReLU, Dropout, Eltwise, Scale, LRN, Split, ...; see PASS_THROUGH)   identity

Any other layer type has no map and stops the walk there. ``crop(blob, reference)`` walks back
from ``blob`` over every bottom of every layer (only bottom 0 of a Crop: the second is just
the shape reference), composing the maps. It then walks back from ``reference`` until it meets
a blob already seen. The composed map from ``blob`` to ``reference`` must have scale 1, and its
shift must be a non-positive integer ``-offset``. The Crop layer gets ``axis`` (the first
spatial axis, 2 for N x C x H x W) and ``offset``. pycaffe reads scalar kernel/pad/stride, so
it writes one offset for all axes. Here each spatial axis has its own map (``kernel_h`` /
``kernel_w`` etc. work), and one offset is returned whenever all axes agree, as in the official
files.

Worked example, VGG16 FCN (conv1_1 pad 100, then 3x3 pad-1 convs, which are identity, and
2x2/2 pools, which are ``u -> u/2 - 1/4``). From data, pool5 is ``u = (x - 83.5) / 32``, i.e.
pool5 u sits at data ``32u - 83.5``. fc6 (7x7) is data ``32v + 12.5``. upscore (k64 s32)
divides out the stride and subtracts 31.5: data ``w - 19``. So ``score = crop(upscore, data)``
gets offset 19. FCN-16s: upscore2 sits at ``16w - 11.5`` and pool4 at ``16u - 91.5``, so the
offset is 5 (and 27 for upscore16). FCN-8s: 9 for pool3 and 31 for upscore8. FCN-AlexNet: 18.

Blob names are rebound by in-place layers (ReLU top == bottom). The graph here has one node
per (name, producing layer): each bottom is read from the latest earlier producer of that
name, as Caffe does. Where several bottoms lead to one ancestor (Eltwise), the walk prefers
bottom 0, then bottom 1, and so on. It also records a blob that the paths reach with
different maps (a misaligned net); :func:`net_offsets` reports that as a note. Arithmetic is
exact (fractions), so 1/3 never rounds into an integer.
"""
from collections import deque
from fractions import Fraction

from .errors import NetError
from .formats.report import load_net  # noqa: F401  (re-exported: reading the net is formats' job)

PASS_THROUGH = frozenset((
    "AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Log", "LRN", "Exp",
    "MVN", "Power", "ReLU", "PReLU", "Scale", "Sigmoid", "Split", "TanH", "Threshold"))
STRIDED = frozenset(("Convolution", "Pooling", "Im2col"))
DEFAULT_AXIS = 2  # Crop's default axis: the first spatial axis of N x C x H x W
_ONE, _ZERO = (Fraction(1),), (Fraction(0),)
IDENTITY = (None, _ONE, _ZERO)


class UndefinedMapError(NetError):
    """A layer on the walk has no coordinate map (the walk stops there)."""


def _num(x):
    """A Fraction for messages: ``19``, ``-41.5``, ``0.333333``."""
    return str(x.numerator) if x.denominator == 1 else f"{float(x):g}"


def _nums(t):
    return _num(t[0]) if len(t) == 1 else "(" + ", ".join(_num(x) for x in t) + ")"


def _axes(*ts, where=""):
    """Broadcast per-axis tuples: length 1 means "the same on every spatial axis"."""
    n = max(len(t) for t in ts)
    if any(len(t) not in (1, n) for t in ts):
        raise UndefinedMapError(f"{where}mixes maps on {sorted({len(t) for t in ts})} "
                                "spatial axes")
    return [t * n if len(t) == 1 else t for t in ts]


def _tuple(values):
    """Per-axis values as a tuple of Fractions, collapsed to one when all axes agree."""
    t = tuple(Fraction(v) for v in values)
    return t[:1] if len(set(t)) == 1 else t


def _where(lp):
    return f"layer '{lp.name}' ({lp.type}): "


def _conv_geometry(lp):
    """(first spatial axis, kernel, stride, pad, dilation) of a ConvolutionParameter."""
    cp, w = lp.convolution_param, _where(lp)

    def dims(field, default, pair=None):
        if pair and (cp.HasField(pair[0]) or cp.HasField(pair[1])):
            if len(getattr(cp, field)):
                raise NetError(f"{w}give either {field} or {pair[0]}/{pair[1]}, not both")
            return tuple(getattr(cp, f) for f in pair)
        return tuple(getattr(cp, field)) or (default,)

    kernel = dims("kernel_size", None, ("kernel_h", "kernel_w"))
    if kernel == (None,):
        raise NetError(f"{w}no kernel_size (or kernel_h/kernel_w) given")
    stride = dims("stride", 1, ("stride_h", "stride_w"))
    pad = dims("pad", 0, ("pad_h", "pad_w"))
    dilation = dims("dilation", 1)
    if cp.axis < 0:
        raise NetError(f"{w}a negative convolution axis ({cp.axis}) needs the blob's rank; "
                       "coord_map supports only axis >= 0")
    return cp.axis + 1, kernel, stride, pad, dilation


def _pool_geometry(lp):
    pp, w = lp.pooling_param, _where(lp)
    if pp.global_pooling:
        raise UndefinedMapError(f"{w}global pooling has no coordinate map (its kernel is the "
                                "whole input)")

    def pair(field):  # Caffe: field_h/field_w when field_h is set, else field
        if pp.HasField(field + "_h") or pp.HasField(field + "_w"):
            return (getattr(pp, field + "_h"), getattr(pp, field + "_w"))
        return (getattr(pp, field),)

    if pp.HasField("kernel_size"):
        kernel = (pp.kernel_size,)
    elif pp.HasField("kernel_h") and pp.HasField("kernel_w"):
        kernel = (pp.kernel_h, pp.kernel_w)
    else:
        raise NetError(f"{w}no kernel_size (or kernel_h and kernel_w) given")
    return DEFAULT_AXIS, kernel, pair("stride"), pair("pad"), (1,)


def layer_map(lp):
    """``(axis, scale, shift)``: the map from ``lp``'s bottom coordinates to its top's.

    ``axis`` is the first spatial axis the map applies to (None for pass-through layers, which
    fit any axis). ``scale`` and ``shift`` are tuples of Fractions, one per spatial axis, or a
    single entry when every axis is the same. Raises :class:`UndefinedMapError` (a NetError)
    for a layer type with no map.
    """
    if lp.type in PASS_THROUGH:
        return IDENTITY
    if lp.type == "Crop":
        if lp.crop_param.axis < 0:
            raise NetError(f"{_where(lp)}a negative crop axis ({lp.crop_param.axis}) needs the "
                           "blob's rank; coord_map supports only axis >= 0")
        return lp.crop_param.axis, _ONE, _tuple(-o for o in lp.crop_param.offset or [0])
    if lp.type in STRIDED or lp.type == "Deconvolution":
        geom = _pool_geometry(lp) if lp.type == "Pooling" else _conv_geometry(lp)
        axis, kernel, stride, pad, dilation = geom
        kernel, stride, pad, dilation = _axes(kernel, stride, pad, dilation, where=_where(lp))
        for what, vals in (("kernel size", kernel), ("stride", stride), ("dilation", dilation)):
            if min(vals) <= 0:
                raise NetError(f"{_where(lp)}{what} must be > 0, got {list(vals)}")
        ks = [Fraction(d * (k - 1) + 1) for k, d in zip(kernel, dilation)]
        if lp.type == "Deconvolution":
            return axis, _tuple(stride), _tuple((k - 1) / 2 - p for k, p in zip(ks, pad))
        return (axis, _tuple(Fraction(1, s) for s in stride),
                _tuple((p - (k - 1) / 2) / s for k, s, p in zip(ks, stride, pad)))
    raise UndefinedMapError(
        f"{_where(lp)}no coordinate map is defined for {lp.type} layers (only Convolution, "
        "Deconvolution, Pooling, Im2col, Crop and pass-through layers such as ReLU, Dropout, "
        "Eltwise and Scale have one; see coord_map.PASS_THROUGH)")


def compose(outer, inner, where=""):
    """``outer`` after ``inner``: maps compose as ``x -> a1 * (a2 * x + b2) + b1``."""
    (ax1, a1, b1), (ax2, a2, b2) = outer, inner
    if ax1 is not None and ax2 is not None and ax1 != ax2:
        raise UndefinedMapError(f"{where}its map starts at axis {ax2}, the rest of the path at "
                                f"axis {ax1}")
    a1, a2, b1, b2 = _axes(a1, a2, b1, b2, where=where)
    return (ax2 if ax1 is None else ax1, _tuple(x * y for x, y in zip(a1, a2)),
            _tuple(x * y + z for x, y, z in zip(a1, b2, b1)))


def inverse(m):
    axis, a, b = m
    a, b = _axes(a, b)
    return axis, _tuple(1 / x for x in a), _tuple(-y / x for x, y in zip(a, b))


class Graph:
    """Blob graph of a layer list: nodes are (blob name, index of producing layer or None)."""

    def __init__(self, layers):
        self.layers = list(layers.layer if hasattr(layers, "layer") else layers)
        self.bottoms, self.producer, self.current, self._maps = [], {}, {}, {}
        for i, lp in enumerate(self.layers):
            self.bottoms.append([self.current.get(b, (b, None)) for b in lp.bottom])
            for j, t in enumerate(lp.top):
                self.producer[(t, i)] = (i, j)
                self.current[t] = (t, i)

    def node(self, blob):
        if blob not in self.current:
            raise NetError(f"blob '{blob}' is not a top of any layer (so far)")
        return self.current[blob]

    def steps(self, node):
        """(layer index, bottoms to walk) for ``node``'s producer, or None for a root blob."""
        if node not in self.producer:
            return None
        i, j = self.producer[node]
        lp, bottoms = self.layers[i], self.bottoms[i]
        if lp.type == "Crop":  # the second bottom only gives the shape
            bottoms = bottoms[:1]
        elif lp.type in ("Convolution", "Deconvolution") and len(bottoms) == len(lp.top) > 1:
            bottoms = bottoms[j:j + 1]  # several bottoms: top j comes from bottom j
        return i, bottoms

    def layer_map(self, i):
        if i not in self._maps:
            try:
                self._maps[i] = layer_map(self.layers[i])
            except UndefinedMapError as e:
                self._maps[i] = e
        if isinstance(self._maps[i], Exception):
            raise self._maps[i]
        return self._maps[i]

    def walk(self, start):
        """Maps from every reachable ancestor's coordinates to ``start``'s.

        Returns (maps, conflicts, blocked): ``maps[node]`` from the first path in
        bottom-0-first depth-first order; ``conflicts`` the nodes that other paths reach with a
        different map; ``blocked`` {layer index: UndefinedMapError} where the walk stopped.
        """
        maps, conflicts, blocked = {}, set(), {}
        stack, seen = [(start, IDENTITY)], {(start, IDENTITY)}
        while stack:
            node, m = stack.pop()
            if node not in maps:
                maps[node] = m
            elif maps[node] != m:
                conflicts.add(node)
            step = self.steps(node)
            if not step or not step[1]:
                continue  # a root blob (no producer, or a data layer): nothing to walk
            i, bottoms = step
            try:
                nxt = compose(m, self.layer_map(i), _where(self.layers[i]))
            except UndefinedMapError as e:
                blocked[i] = e
                continue
            for b in reversed(bottoms):
                if (b, nxt) not in seen:
                    seen.add((b, nxt))
                    stack.append((b, nxt))
        return maps, conflicts, blocked

    def depths(self, start):
        """Layer counts from ``start`` back to each ancestor (breadth first)."""
        depth, queue = {start: 0}, deque([start])
        while queue:
            node = queue.popleft()
            step = self.steps(node)
            for b in step[1] if step else ():
                if b not in depth:
                    depth[b] = depth[node] + 1
                    queue.append(b)
        return depth

    def derive(self, src, ref):
        """The map from ``src``'s coordinates to ``ref``'s, and the blob it went through.

        Returns (map, ancestor node, note or None). Raises NetError if the two share no
        ancestor that the walk can reach.
        """
        from_maps, from_conf, from_blocked = self.walk(src)
        to_maps, to_conf, to_blocked = self.walk(ref)
        depth = self.depths(ref)
        common = [n for n in to_maps if n in from_maps]
        if not common:
            blocked = {**from_blocked, **to_blocked}
            why = "; ".join(str(blocked[i]) for i in sorted(blocked))
            raise NetError(f"'{src[0]}' and '{ref[0]}' meet at no common blob through layers "
                           "with a coordinate map" + (f": the walk stopped at {why}" if why
                                                      else " (they are not connected)"))
        anc = min(common, key=lambda n: depth.get(n, len(self.layers) + 1))
        m = compose(to_maps[anc], inverse(from_maps[anc]))
        note = None
        if anc in from_conf or anc in to_conf:
            note = (f"paths from '{src[0] if anc in from_conf else ref[0]}' reach '{anc[0]}' "
                    "with different maps (misaligned inputs, e.g. of an Eltwise); the "
                    "bottom-0-first path was used")
        return m, anc, note


def offsets_of(m, label):
    """Crop ``(axis, offsets)`` from the composed map, with pycaffe's checks."""
    axis, scale, shift = m
    if any(a != 1 for a in scale):
        raise NetError(f"{label}: scale {_nums(scale)} is not 1 (the blobs are at different "
                       "resolutions; no crop can align them)")
    if any(b > 0 for b in shift):
        raise NetError(f"{label}: shift {_nums(shift)} is positive (the blob would have to be "
                       "padded, not cropped)")
    if any(b.denominator != 1 for b in shift):
        raise NetError(f"{label}: shift {_nums(shift)} is not an integer (the blobs' pixel "
                       "grids are offset by a fraction of a pixel)")
    return DEFAULT_AXIS if axis is None else axis, [int(-b) for b in shift]


def _label(name, blob, reference):
    crop = f"crop('{blob}', '{reference}')"
    return f"crop layer '{name}' ({crop})" if name else crop


def crop_offset(layers, blob, reference, name=None):
    """``(axis, offsets)`` that pycaffe's ``crop(blob, reference)`` would give.

    ``layers``: the layers so far (a list of LayerParameter, a NetParameter or a :class:`Graph`);
    each name means its latest producer. ``offsets`` is a list of ints, one for all spatial axes
    when they agree (as pycaffe writes it), else one per axis. ``name`` (the Crop layer's) is
    only used in error messages. Raises NetError when no offset can be derived.
    """
    g = layers if isinstance(layers, Graph) else Graph(_upgraded(layers))
    label = _label(name, blob, reference)
    try:
        m, _, _ = g.derive(g.node(blob), g.node(reference))
    except NetError as e:
        raise NetError(f"{label}: {e}") from None
    return offsets_of(m, label)


def _upgraded(net):
    """A NetParameter's V2 layers (a V0/V1 one is upgraded on a copy, as Caffe does)."""
    if not hasattr(net, "layer"):
        return net
    from .formats.upgrade import net_needs_upgrade, upgrade_net

    if net_needs_upgrade(net):
        copy = type(net)()
        copy.CopyFrom(net)
        upgrade_net(copy)
        net = copy
    return net


def _same(a, b):
    return _tuple(a or [0]) == _tuple(b or [0])


def _phases(net):
    from .net import filter_layers

    if not hasattr(net, "layer"):
        return [(None, list(net))]
    if any(lp.include or lp.exclude for lp in net.layer):
        return [(p, filter_layers(net, p)) for p in ("TEST", "TRAIN")]
    return [(None, list(net.layer))]


def net_offsets(net_param):
    """One dict per Crop layer (file order): the offsets in the file against derived ones.

    Keys: ``name``, ``bottoms``, ``phase`` (None unless the net has phase rules; then the TEST
    net is checked first and crops only in TRAIN after), ``file_axis``, ``file_offsets``,
    ``axis`` and ``offsets`` (derived; None if they could not be), ``ok``, ``reason`` (why none
    could be derived) and ``note`` (paths that disagree).
    """
    net = _upgraded(net_param)
    position = {id(lp): k for k, lp in enumerate(net.layer if hasattr(net, "layer") else net)}
    found = {}
    for phase, layers in _phases(net):
        g = Graph(layers)
        for i, lp in enumerate(g.layers):
            if lp.type != "Crop" or id(lp) in found:
                continue
            r = {"name": lp.name, "bottoms": list(lp.bottom), "phase": phase,
                 "file_axis": lp.crop_param.axis, "file_offsets": list(lp.crop_param.offset),
                 "axis": None, "offsets": None, "ok": False, "reason": None, "note": None}
            found[id(lp)] = r
            if len(lp.bottom) != 2:
                r["reason"] = f"a Crop takes 2 bottoms, this one has {len(lp.bottom)}"
                continue
            label = _label(lp.name, *lp.bottom)
            try:
                m, _, r["note"] = g.derive(*g.bottoms[i])
            except NetError as e:
                r["reason"] = f"{label}: {e}"
                continue
            try:
                r["axis"], r["offsets"] = offsets_of(m, label)  # its errors start with the label
            except NetError as e:
                r["reason"] = str(e)
                continue
            r["ok"] = r["axis"] == r["file_axis"] and _same(r["offsets"], r["file_offsets"])
    return [found[k] for k in sorted(found, key=lambda k: position.get(k, 0))]
