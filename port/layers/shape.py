"""Concat, Slice, Split, Flatten and Reshape: layers that only move or re-view data.

``Concat``: ``torch.cat`` along ``axis`` (default 1; or the legacy ``concat_dim``, which must
be in [0, num_axes); giving both is an error). Every bottom must have the same number of axes
and the same dims except along the axis.

``Slice``: splits along ``axis`` (or legacy ``slice_dim``) at the ``slice_point`` positions (one
fewer than the tops, strictly increasing), or into equal parts when none are given (the axis
must divide evenly). Like ``torch.split`` / ``torch.tensor_split``, with Caffe's checks.

``Split``: Caffe's fan-out layer (it also inserts one wherever a blob feeds several layers);
each top is the bottom. Its backward sums the top gradients, which autograd does when one
tensor is used several times; each top is a separate view so per-top gradients stay distinct.

``Flatten``: merges axes ``axis`` (default 1) through ``end_axis`` (default -1) into one,
``torch.flatten(x, axis, end_axis)``.

``Reshape``: ``reshape_param.shape`` replaces the bottom's axes ``[axis, axis + num_axes)``
(default: all of them; a negative ``axis`` counts from the end with -1 meaning *after* the
last axis, so ``axis: -1, num_axes: 0`` appends dims). In the new dims ``0`` copies the bottom's
dim at the same position (``torch.reshape`` has no such rule) and one ``-1`` is inferred.

``Tile`` (``tile_layer.cpp``): ``tiles`` copies of the bottom along ``axis`` (default 1), each
copy of the whole block from ``axis`` on, one after another (``torch.cat`` of the copies, not
``repeat_interleave``); the backward sums the copies.

``BatchReindex``: top ``i`` is bottom row ``int(permut[i])`` (any number of rows, repeats
allowed), ``index_select`` along axis 0; the backward adds each top row's gradient into its
source row; the indices get none.

``Filter``: the last bottom holds one selector per sample; every other bottom keeps the
samples whose selector is nonzero, in order (one top per such bottom). The number kept is
known only from the data, as in Caffe's ``Reshape`` at each forward; the shapes the net is
built with say all N. The selector gets no gradient.
"""
import math

import torch

from .base import CaffeLayer, canonical_axis
from .registry import register


def _one_bottom(layer, bottoms):
    if len(bottoms) != 1:
        layer.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
    return tuple(bottoms[0])


def _legacy_axis(layer, param, legacy, ndim):
    """Axis from ``axis`` or the legacy ``concat_dim`` / ``slice_dim`` field ``legacy``."""
    if param.HasField(legacy):
        dim = getattr(param, legacy)
        if dim >= ndim:
            layer.fail(f"{legacy} {dim} out of range for a {ndim}-D bottom")
        return dim
    return canonical_axis(layer, param.axis, ndim)


@register("Concat")
class Concat(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.concat_param
        if p.HasField("axis") and p.HasField("concat_dim"):
            self.fail("either axis or concat_dim should be specified, not both")

    def _axis(self, ndim):
        return _legacy_axis(self, self.lp.concat_param, "concat_dim", ndim)

    def top_shapes(self, bottoms):
        if not bottoms:
            self.fail("needs at least 1 bottom")
        top = list(bottoms[0])
        axis = self._axis(len(top))
        for i, b in enumerate(bottoms[1:], 1):
            b = tuple(b)
            if len(b) != len(top):
                self.fail(f"all bottoms must have the same number of axes: bottom[0] is "
                          f"{tuple(bottoms[0])}, bottom[{i}] is {b}")
            if any(b[j] != top[j] for j in range(len(b)) if j != axis):
                self.fail(f"all bottoms must have the same shape except at axis {axis}: "
                          f"bottom[0] is {tuple(bottoms[0])}, bottom[{i}] is {b}")
            top[axis] += b[axis]
        return [tuple(top)]

    def forward(self, *bottoms):
        if len(bottoms) == 1:
            return bottoms[0]
        return torch.cat(bottoms, self._axis(bottoms[0].dim()))


@register("Slice")
class Slice(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.slice_param
        if p.HasField("axis") and p.HasField("slice_dim"):
            self.fail("either axis or slice_dim should be specified, not both")
        self.points = list(p.slice_point)

    def _sizes(self, shape):
        axis = _legacy_axis(self, self.lp.slice_param, "slice_dim", len(shape))
        n_top, dim = len(self.lp.top), shape[axis]
        if self.points:
            if len(self.points) != n_top - 1:
                self.fail(f"{len(self.points)} slice_point for {n_top} tops (needs {n_top - 1})")
            if n_top > dim:
                self.fail(f"{n_top} tops are more than axis {axis} of bottom {shape} holds")
            sizes, prev = [], 0
            for point in self.points:
                if point <= prev:
                    self.fail(f"slice_point must be strictly increasing and positive, got "
                              f"{self.points}")
                sizes.append(point - prev)
                prev = point
            if prev > dim:
                self.fail(f"slice_point {prev} is past the end of axis {axis} of bottom {shape}")
            sizes.append(dim - prev)
        else:
            if dim % n_top:
                self.fail(f"{n_top} tops do not evenly divide axis {axis} ({dim}) of bottom "
                          f"{shape}")
            sizes = [dim // n_top] * n_top
        return axis, sizes

    def top_shapes(self, bottoms):
        shape = _one_bottom(self, bottoms)
        axis, sizes = self._sizes(shape)
        return [shape[:axis] + (s,) + shape[axis + 1:] for s in sizes]

    def forward(self, x):
        if len(self.lp.top) == 1:
            return x
        axis, sizes = self._sizes(tuple(x.shape))
        return tuple(x.split(sizes, axis))


@register("Split")
class Split(CaffeLayer):
    def top_shapes(self, bottoms):
        shape = _one_bottom(self, bottoms)
        return [shape] * len(self.lp.top)

    def forward(self, x):
        tops = tuple(x.view(x.shape) for _ in self.lp.top)
        return tops[0] if len(tops) == 1 else tops


@register("Flatten")
class Flatten(CaffeLayer):
    def top_shapes(self, bottoms):
        shape = _one_bottom(self, bottoms)
        p = self.lp.flatten_param
        start = canonical_axis(self, p.axis, len(shape))
        end = canonical_axis(self, p.end_axis, len(shape))
        if start > end + 1:
            self.fail(f"axis {p.axis} comes after end_axis {p.end_axis} for bottom {shape}")
        return [shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]]

    def forward(self, x):
        return x.reshape(self.top_shapes([tuple(x.shape)])[0])


@register("Reshape")
class Reshape(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        dims = list(lp.reshape_param.shape.dim)
        if dims.count(-1) > 1:
            self.fail(f"shape {dims} contains more than one -1 (at most one dim is inferred)")
        if any(d < -1 for d in dims):
            self.fail(f"shape {dims} has a dim below -1")

    def top_shapes(self, bottoms):
        shape = _one_bottom(self, bottoms)
        p = self.lp.reshape_param
        dims, ndim = list(p.shape.dim), len(shape)
        start = p.axis if p.axis >= 0 else ndim + p.axis + 1
        if not 0 <= start <= ndim:
            self.fail(f"axis {p.axis} out of range for a {ndim}-D bottom {shape}")
        if p.num_axes < -1:
            self.fail(f"num_axes must be >= 0, or -1 for all, got {p.num_axes}")
        end = ndim if p.num_axes == -1 else start + p.num_axes
        if end > ndim:
            self.fail(f"axis {p.axis} + num_axes {p.num_axes} is past the end of a {ndim}-D "
                      f"bottom {shape}")
        top = list(shape[:start]) + dims + list(shape[end:])
        for i, d in enumerate(dims):
            if d == 0:
                if start + i >= ndim:
                    self.fail(f"shape {dims} has a 0 at position {i}, but bottom {shape} has no "
                              f"axis {start + i} to copy")
                top[start + i] = shape[start + i]
        if -1 in dims:
            i = start + dims.index(-1)
            known = math.prod(d for j, d in enumerate(top) if j != i)
            if known == 0 or math.prod(shape) % known:
                self.fail(f"cannot infer the -1 in shape {dims}: bottom count "
                          f"{math.prod(shape)} of {shape} is not divisible by the product of "
                          f"the other dims ({known})")
            top[i] = math.prod(shape) // known
        if math.prod(top) != math.prod(shape):
            self.fail(f"output count must match input count: shape {dims} gives {tuple(top)} "
                      f"({math.prod(top)} values) from bottom {shape} ({math.prod(shape)})")
        return [tuple(top)]

    def forward(self, x):
        return x.reshape(self.top_shapes([tuple(x.shape)])[0])


@register("Tile")
class Tile(CaffeLayer):
    def top_shapes(self, bottoms):
        shape = _one_bottom(self, bottoms)
        p = self.lp.tile_param
        axis = canonical_axis(self, p.axis, len(shape))
        if p.tiles <= 0:
            self.fail(f"tiles must be > 0, got {p.tiles}")
        return [shape[:axis] + (shape[axis] * p.tiles,) + shape[axis + 1:]]

    def forward(self, x):
        p = self.lp.tile_param
        return torch.cat([x] * p.tiles, canonical_axis(self, p.axis, x.dim()))


def _indices(layer, index, n):
    idx = index.detach().reshape(-1).to(torch.int64)
    if bool(((idx < 0) | (idx >= n)).any()):
        layer.fail(f"index {int(idx[(idx < 0) | (idx >= n)][0])} outside [0, {n})")
    return idx


@register("BatchReindex")
class BatchReindex(CaffeLayer):
    def top_shapes(self, bottoms):
        if len(bottoms) != 2 or len(bottoms[1]) != 1:
            self.fail(f"takes 2 bottoms (data, a 1-D index), got shapes "
                      f"{[tuple(b) for b in bottoms]}")
        return [(bottoms[1][0],) + tuple(bottoms[0][1:])]

    def forward(self, x, permut):
        return x.index_select(0, _indices(self, permut, x.shape[0]))


@register("Filter")
class Filter(CaffeLayer):
    def top_shapes(self, bottoms):
        if len(bottoms) < 2 or len(bottoms) - 1 != len(self.lp.top):
            self.fail(f"takes data bottoms and a selector (one top per data bottom): "
                      f"{len(bottoms)} bottoms, {len(self.lp.top)} tops")
        n, sel = bottoms[0][0], tuple(bottoms[-1])
        if math.prod(sel) != n or any(b[0] != n for b in bottoms[:-1]):
            self.fail(f"the selector {sel} needs one value per sample of every bottom "
                      f"{[tuple(b) for b in bottoms[:-1]]}")
        return [tuple(b) for b in bottoms[:-1]]

    def forward(self, *bottoms):
        keep = bottoms[-1].detach().reshape(-1).to(torch.int64) != 0  # static_cast<int>
        index = torch.nonzero(keep).reshape(-1)
        tops = tuple(b.index_select(0, index) for b in bottoms[:-1])
        return tops[0] if len(tops) == 1 else tops
