"""Caffe's ``Crop`` layer: cut bottom 0 down to the shape of bottom 1 (the reference).

How Caffe computes it
---------------------
``crop_param { axis: A  offset: ... }`` (axis default 2, so N and C are kept in an N x C x H x W
net). Every axis ``i >= A`` is cropped to the reference's size ``ref[i]``, starting at offset
``o[i]``. The crop is taken from the top-left: it starts at the offset and takes the
reference's size. It is *not* centred. The axes before ``A`` are copied whole. Offsets:

* none given: 0 on every cropped axis;
* one given: that offset on every cropped axis;
* several: one per axis from ``A`` to the last. Their count must be ``ndim - A``.

For each cropped axis Caffe checks ``bottom[i] - o[i] >= ref[i]``. FCN's offsets (e.g. 19 for
voc-fcn32s, 5 / 9 / 31 for voc-fcn8s) come from Caffe's ``coord_map``.
Only the reference's *shape* is read, never its values, so it gets no gradient.

PyTorch has no crop op. This is plain slicing, and the top is a view of bottom 0. The slice
ends are read from ``ref.shape`` at run time (after Caffe's bounds check), so a traced or
exported module crops to the reference's size at every input size.
Layers never write into their inputs, so the view is safe. The one thing to get right is the
offset convention: many re-implementations centre the crop, and that is wrong for FCN.
"""
import torch

from .base import CaffeLayer, canonical_axis
from .registry import register


def crop_offset(offsets, axis, i):
    """The crop's start on axis ``i``: 0 before ``axis`` or with no offsets; the one offset for
    every axis; else one per axis from ``axis`` on."""
    if i < axis or not offsets:
        return 0
    return offsets[0] if len(offsets) == 1 else offsets[i - axis]


def crop(x, like, axis, offsets):
    """``x`` cut to ``like``'s size on every axis from ``axis`` on, from :func:`crop_offset`.
    The Crop layer runs this after Caffe's checks, and codegen copies it into the files it
    writes."""
    for i in range(axis, x.dim()):  # sized by the reference at run time
        o = crop_offset(offsets, axis, i)
        x = x[(slice(None),) * i + (slice(o, o + like.shape[i]),)]
    return x


@register("Crop")
class Crop(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        if len(bottom_shapes) != 2:
            self.fail(f"takes exactly 2 bottoms (data, reference), got {len(bottom_shapes)}")
        if lp.top and len(lp.top) != 1:
            self.fail(f"takes exactly 1 top, got {len(lp.top)}")
        cp = lp.crop_param
        self.ndim = len(bottom_shapes[0])
        self.axis = canonical_axis(self, cp.axis, self.ndim)
        self.offsets = list(cp.offset)
        if len(self.offsets) > 1 and self.axis + len(self.offsets) != self.ndim:
            self.fail(f"{len(self.offsets)} offsets given for axis {self.axis} of a "
                      f"{self.ndim}-D bottom; need one per axis from {self.axis} on "
                      f"({self.ndim - self.axis})")
        self.top_shapes(bottom_shapes)  # Caffe's SetUp ends with Reshape: check the shapes now

    def top_shapes(self, bottoms):
        data, ref = tuple(bottoms[0]), tuple(bottoms[1])
        if len(data) != self.ndim:
            self.fail(f"bottom 0 has {len(data)} axes {data}; this layer was set up for "
                      f"{self.ndim}")
        if len(ref) < self.ndim:
            self.fail(f"reference bottom {ref} has fewer axes than bottom 0 {data}")
        top = list(data)
        for i in range(self.axis, self.ndim):
            o = crop_offset(self.offsets, self.axis, i)
            if data[i] - o < ref[i]:
                self.fail(f"crop on axis {i} is out of bounds: offset {o} + reference size "
                          f"{ref[i]} = {o + ref[i]} > bottom size {data[i]} (bottom {data}, "
                          f"reference {ref})")
            top[i] = ref[i]
        return [tuple(top)]

    def forward(self, x, ref):
        if not torch.compiler.is_compiling():  # torch.export / compile: no Python size checks
            self.top_shapes([tuple(x.shape), tuple(ref.shape)])
        return crop(x, ref, self.axis, self.offsets)

    def extra_repr(self):
        return f"name={self.name!r}, axis={self.axis}, offset={self.offsets or [0]}"
