"""Input, DummyData, Parameter and Silence: where blobs enter a net, and where unused ones end.

``Input`` (``is_source = True``): declares the blobs the caller feeds. ``input_param.shape`` is
given once (every top gets it), once per top, or not at all (then the shape is whatever is fed;
``top_shapes`` reports ``None`` for it). Caffe's deploy nets declare a nominal shape and pycaffe
users reshape before feeding (FCN's ``infer.py`` does), so ``forward(*fed)`` returns the fed
tensors as they are; their shapes are not forced to the declared ones. Old prototxts'
``input:`` / ``input_shape`` / ``input_dim`` fields are upgraded to an Input layer at load time
(``port.upgrade``).

``DummyData``: makes its tops itself, each from ``data_filler`` (none: constant 0; one: for all
tops; or one per top) with its shape from ``shape`` (once or once per top) or the legacy
``num``/``channels``/``height``/``width`` lists (each once or once per top, 4-D). Caffe fills
constant tops once and refills random ones at every forward; here every forward returns fresh
tensors, which is the same for both. Random fillers match Caffe's in distribution only.

``Parameter`` (``parameter_layer.hpp``): no bottoms; one learnable blob of
``parameter_param.shape`` (zeros until weights are loaded: Caffe gives it no filler), and the
top *is* that blob (Caffe shares data and diff), so the top's gradient is the blob's.

``Data``, ``ImageData``, ``HDF5Data``, ``MemoryData``, ``WindowData``: Caffe's own data layers are sources
here, like ``Input``: their tops are net inputs, fed pass by pass from the layer's reader
(:mod:`fcn_port.port.datalayers`, which ``fcn-port train`` and ``parity`` bind), or by the
caller (MemoryData, whose ``memory_data_param`` gives the data top's shape, N x C x H x W,
and the label's, N).

``HDF5Output`` (``hdf5_output_layer.cpp``): a sink of two bottoms that writes them to
``hdf5_output_param.file_name`` as float32 datasets ``data`` and ``label``. Caffe creates the
file when the net is set up and fails on a second forward pass (the datasets exist); here each
forward writes the file whole, atomically, with that pass's batch. No gradient.

``Silence``: consumes its bottoms and has no tops, so nothing complains that they are unused;
its backward gives them zero gradient, which is what an unused tensor gets in autograd.
"""
import torch

from .base import CaffeLayer
from .fillers import fill
from .registry import register
from ..formats.proto import caffe_pb2


def _dims(layer, blob_shape):
    dims = tuple(int(d) for d in blob_shape.dim)
    if any(d < 0 for d in dims):
        layer.fail(f"shape {dims} has a negative dim")
    return dims


@register("Input")
class Input(CaffeLayer):
    is_source = True

    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        n_top, shapes = len(lp.top), list(lp.input_param.shape)
        if n_top < 1:
            self.fail("needs at least 1 top")
        if len(shapes) not in (0, 1, n_top):
            self.fail(f"must specify 'shape' once, once per top blob, or not at all: {n_top} "
                      f"tops vs. {len(shapes)} shapes")
        self.shapes = [None if not shapes else _dims(self, shapes[0 if len(shapes) == 1 else i])
                       for i in range(n_top)]

    def top_shapes(self, bottoms):
        if bottoms:
            self.fail(f"takes no bottoms, got {len(bottoms)}")
        return list(self.shapes)

    def forward(self, *fed):
        if len(fed) != len(self.shapes):
            self.fail(f"feeds {len(self.shapes)} tops {list(self.lp.top)}, got {len(fed)} tensors")
        return fed[0] if len(fed) == 1 else tuple(fed)


@register("DummyData")
class DummyData(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p, n_top = lp.dummy_data_param, len(lp.top)
        if n_top < 1:
            self.fail("needs at least 1 top")
        fillers = list(p.data_filler)
        if len(fillers) not in (0, 1, n_top):
            self.fail(f"number of data fillers must be 0, 1 or the number of tops ({n_top}); "
                      f"got {len(fillers)}")
        if not fillers:
            fillers = [caffe_pb2.FillerParameter(type="constant", value=0)]
        self.fillers = [fillers[0 if len(fillers) == 1 else i] for i in range(n_top)]
        legacy = {k: list(getattr(p, k)) for k in ("num", "channels", "height", "width")}
        if any(legacy.values()):
            if len(p.shape):
                self.fail("both shape and the legacy num/channels/height/width were specified")
            for k, v in legacy.items():
                if len(v) not in (1, n_top):
                    self.fail(f"must specify '{k}' once, or once per top blob ({n_top}); "
                              f"specified {len(v)}")
            self.shapes = [tuple(legacy[k][0 if len(legacy[k]) == 1 else i] for k in legacy)
                           for i in range(n_top)]
        else:
            if len(p.shape) not in (1, n_top):
                self.fail(f"must specify 'shape' once, or once per top blob ({n_top}); "
                          f"specified {len(p.shape)}")
            self.shapes = [_dims(self, p.shape[0 if len(p.shape) == 1 else i])
                           for i in range(n_top)]
        self.register_buffer("_device", torch.empty(0), persistent=False)  # follows .to()

    def top_shapes(self, bottoms):
        if bottoms:
            self.fail(f"takes no bottoms, got {len(bottoms)}")
        return list(self.shapes)

    def forward(self):
        tops = tuple(fill(self._device.new_empty(s), f) for s, f in zip(self.shapes, self.fillers))
        return tops[0] if len(tops) == 1 else tops


@register("Silence")
class Silence(CaffeLayer):
    def top_shapes(self, bottoms):
        if not bottoms:
            self.fail("needs at least 1 bottom")
        return []

    def forward(self, *bottoms):
        return ()


@register("Parameter")
class Parameter(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        if len(lp.top) != 1:
            self.fail(f"has exactly 1 top, got {len(lp.top)}")
        self.add_blob(_dims(self, lp.parameter_param.shape))

    def top_shapes(self, bottoms):
        if bottoms:
            self.fail(f"takes no bottoms, got {len(bottoms)}")
        return [tuple(self.blob(0).shape)]

    def forward(self):
        return self.blob(0)


@register("Data", "ImageData", "HDF5Data", "MemoryData", "WindowData")
class DataLayer(Input):
    """A Caffe data layer: a source whose tops the caller feeds (module doc)."""

    def __init__(self, lp, bottom_shapes, phase="TEST"):
        if lp.type == "MemoryData" and not lp.input_param.shape:
            p, lp = lp.memory_data_param, _with_shapes(lp)
            lp.input_param.shape.add().dim.extend([p.batch_size, p.channels, p.height, p.width])
            if len(lp.top) > 1:
                lp.input_param.shape.add().dim.extend([p.batch_size])
        super().__init__(lp, bottom_shapes, phase)


def _with_shapes(lp):
    copy = caffe_pb2.LayerParameter()
    copy.CopyFrom(lp)
    return copy


@register("HDF5Output")
class HDF5Output(CaffeLayer):
    def top_shapes(self, bottoms):
        if len(bottoms) != 2:
            self.fail(f"takes exactly 2 bottoms (data, label), got {len(bottoms)}")
        if not self.lp.hdf5_output_param.file_name:
            self.fail("needs hdf5_output_param.file_name")
        return []

    @torch.no_grad()
    def forward(self, data, label):
        import h5py

        from ..fileio import atomic_output

        with atomic_output(self.lp.hdf5_output_param.file_name, mode=None) as tmp, \
                h5py.File(tmp, "w") as f:
            f.create_dataset("data", data=data.detach().to("cpu", torch.float32).numpy())
            f.create_dataset("label", data=label.detach().to("cpu", torch.float32).numpy())
        return ()
