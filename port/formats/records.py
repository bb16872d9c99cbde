"""What Caffe's weight and solver-state files hold once read, whatever their format.

:class:`Weights` is a caffemodel (binary :mod:`.caffemodel` or HDF5 :mod:`.hdf5`) and
:class:`SolverState` a ``.solverstate`` (binary :mod:`.solverstate` or HDF5); the readers of
both formats return them and the writers take them, so they live below all of those modules.
"""


class Weights:
    """A caffemodel: the net message without blob payloads, and each layer's blobs as arrays.

    ``net``      NetParameter with every layer's settings; blobs are not in it
    ``params``   {layer name: [array, ...]} in file order (views of the mapped file)
    ``version``  'V0', 'V1' or 'V2', as the file was written; ``upgrades`` lists what was upgraded
    ``legacy``   {(layer, i)} of blobs stored with the old num/channels/height/width dims
    ``absent``   {(layer, i)} an HDF5 file leaves out: Caffe's ``Net::ToHDF5`` writes a param
                 shared by ``ParamSpec.name`` under its owner only; ``params`` holds an empty
                 array (shape (0,)) at each such index, so the indices of the others hold
    """

    def __init__(self, net, params, *, path=None, format="binary", version="V2", upgrades=(),
                 legacy=(), diffs=None, absent=()):
        self.net, self.params, self.path, self.format = net, params, path, format
        self.version, self.upgrades, self.legacy = version, list(upgrades), set(legacy)
        self.diffs, self.absent = diffs or {}, set(absent)

    @property
    def num_params(self):
        return sum(a.size for blobs in self.params.values() for a in blobs)

    def state_dict(self):
        """``{"<layer>.<i>": tensor}``, sharing memory with the arrays (no copy)."""
        import torch

        return {f"{name}.{i}": torch.from_numpy(a) for name, blobs in self.params.items()
                for i, a in enumerate(blobs)}

    def __repr__(self):
        return (f"Weights({self.path!r}, {self.format}, {self.version}, {len(self.params)} layers "
                f"with params, {self.num_params:,} values)")

    def nonfinite(self, chunk=1 << 22):
        """[(layer, blob index, count)] of the blobs holding NaN or Inf, summed in chunks (no
        temporary larger than ``chunk`` values; numpy releases the GIL, so a thread can do it)."""
        import numpy as np

        bad = []
        for name, blobs in self.params.items():
            for i, a in enumerate(blobs):
                flat, n = a.reshape(-1), 0
                for at in range(0, flat.size, chunk):
                    part = flat[at:at + chunk]
                    n += part.size - int(np.count_nonzero(np.isfinite(part)))
                if n:
                    bad.append((name, i, n))
        return bad

    def check_finite(self):
        """Refuse NaN/Inf weights (:func:`refuse_nonfinite`): every place that loads weights
        calls this (a net with them can only output NaN; Caffe loads them silently)."""
        refuse_nonfinite(self.path or "weights", self.nonfinite())
        return self

    def fits(self, name, i, shape):
        """Whether blob ``i`` of layer ``name`` loads into a param of ``shape``: the same shape,
        or a legacy num/channels/height/width blob whose leading 1s pad ``shape`` to 4-D (the
        same values, as Caffe's ``Blob::ShapeEquals`` accepts for old files)."""
        a = self.params[name][i]
        shape = tuple(int(d) for d in shape)
        if tuple(a.shape) == shape:
            return True
        return (name, i) in self.legacy and len(shape) <= 4 and \
            tuple(a.shape) == (1,) * (4 - len(shape)) + shape

    def shaped(self, name, i, shape):
        """Blob ``i`` of layer ``name`` as an array of the param's ``shape`` (a view): a legacy
        num/channels/height/width blob loses its leading 1s, so what is written from it (a
        checkpoint) holds the net's own shapes and loads without these records. None if the
        blob does not :meth:`fit <fits>`."""
        if not self.fits(name, i, shape):
            return None
        return self.params[name][i].reshape(tuple(int(d) for d in shape))

    @staticmethod
    def legacy_like(params):
        """{(layer, i)} of 4-D blobs with leading 1s in ``params`` ({layer: [array, ...]}):
        what to pass as ``legacy`` for arrays read back from a file that kept Caffe's legacy
        dims (checkpoints fcn-port convert wrote before it reshaped them)."""
        return {(name, i) for name, blobs in params.items() for i, a in enumerate(blobs)
                if a.ndim == 4 and a.shape[0] == 1}


def layer_messages(net):
    """(field number, message, name) for each layer of the header net, in file order."""
    for msg in net.layer:
        yield 100, msg, msg.name
    for msg in net.layers:
        yield 2, msg, (msg.layer.name if msg.HasField("layer") else msg.name)


class SolverState:
    """Iteration, lr-schedule step, the snapshot it points to, and the solver's history blobs."""

    def __init__(self, iter=0, current_step=0, learned_net="", history=(), *, path=None, format="binary"):
        self.iter, self.current_step, self.learned_net = int(iter), int(current_step), learned_net
        self.history, self.path, self.format = list(history), path, format

    def __repr__(self):
        return (f"SolverState(iter={self.iter}, current_step={self.current_step}, "
                f"learned_net={self.learned_net!r}, {len(self.history)} history blobs)")


def refuse_nonfinite(path, bad):
    """One CaffeFormatError naming the file and the blobs of ``bad`` ([(layer, blob, count)],
    :meth:`Weights.nonfinite`) when there are any."""
    if bad:
        from ..errors import CaffeFormatError

        listed = ", ".join(f"layer '{n}' blob {i}: {k} values" for n, i, k in bad[:5])
        more = f" and {len(bad) - 5} more blobs" if len(bad) > 5 else ""
        raise CaffeFormatError(path, "", f"NaN/Inf weights ({listed}{more}); expected finite "
                               "values (a diverged training snapshot?)")
