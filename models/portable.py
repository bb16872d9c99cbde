"""fcn-port checkpoints as safetensors: weights with no code in them, written without torch.

Not a Caffe format: the official code keeps weights only as caffemodels (``Net::ToProto`` /
``Net::CopyTrainedLayersFrom``; the official ``solve.py`` loads them with ``net.copy_from``).
Here it is the second file format of ``fcn-port convert``, beside the ``torch.save``
checkpoint of :mod:`.checkpoint`; both hold the caffemodel's blobs unchanged, by Caffe's names. A ``.pt``
holds a pickle, which fcn-port reads with ``weights_only=True`` but other programs may not;
a ``.safetensors`` file is a JSON header and raw little-endian floats
(:mod:`fcn_port.port.fileio.safetensors`), so no reader can be made to run code by it, and
any program reads it with ``safetensors.torch.load_file`` or ``safetensors.numpy.load_file``.

What the file holds is what the ``.pt`` holds:

* the tensors: the state dict, keys ``"<caffe layer>.<blob>"`` in Caffe's shapes (float32),
  in the caffemodel's order;
* the header's ``__metadata__`` (strings only, by the format): ``"format": "fcn-port/1"`` and
  the checkpoint's ``meta`` one entry per key, text as it is (``model``, ``source``,
  ``sha256``, ``prototxt``, ...) and every other value as JSON (``classes``, ``heads``,
  ``mean``, ``widths``, ...), those keys listed in ``"json_keys"`` (a JSON list).

:func:`.checkpoint.convert_to_safetensors` is ``fcn-port convert X.caffemodel -o
X.safetensors``, written by :func:`write_checkpoint`. For an FCN it imports no torch (the
model's shapes come from :func:`.shapes.param_shapes`); the blobs go from the mapped caffemodel
to the output through the page cache while another thread computes the source's sha256, NaN/Inf
are counted on each piece as it is copied (a refusal leaves nothing), and the sha256 is put in
the header just before the file is renamed into place. A caffemodel that is no FCN
(``--prototxt``) still sets its net up in torch to check the weights fit it, as for ``.pt``.
:func:`read_checkpoint` is the loading side: tensors are ``torch.from_numpy`` views of a
copy-on-write map of the file (nothing is read until used) and go through the same checks as a
``.pt`` (:func:`.checkpoint.load`: the format tag, metadata that makes a model, every shape,
no NaN/Inf).
"""
import json

from fcn_port.port.errors import CaffeFormatError

FORMAT = "fcn-port/1"
SUFFIX = ".safetensors"
EXPECTED = "a safetensors checkpoint from fcn-port convert"
_RESERVED = ("format", "json_keys")


def to_metadata(meta):
    """The safetensors ``__metadata__`` ({str: str}) of a checkpoint's ``meta``."""
    clash = [k for k in meta if k in _RESERVED or not isinstance(k, str)]
    if clash:
        raise ValueError(f"meta keys {clash} clash with the safetensors metadata's own")
    as_json = [k for k, v in meta.items() if not isinstance(v, str)]
    out = {"format": FORMAT}
    out.update((k, json.dumps(v) if k in as_json else v) for k, v in meta.items())
    out["json_keys"] = json.dumps(as_json)
    return out


def from_metadata(metadata, path):
    """A checkpoint's ``meta`` from its safetensors ``__metadata__`` (see the module doc);
    a file without fcn-port's format tag, or with broken JSON values, is a CaffeFormatError."""
    if metadata.get("format") != FORMAT:
        raise CaffeFormatError(path, "", f"a safetensors file but not an fcn-port checkpoint (no "
                               f"'format': '{FORMAT}' in its metadata); make one with: fcn-port "
                               f"convert X.caffemodel -o X{SUFFIX}")
    try:
        as_json = json.loads(metadata.get("json_keys", "[]"))
        if not (isinstance(as_json, list) and all(isinstance(k, str) for k in as_json)):
            raise ValueError("json_keys is not a list of names")
        return {k: json.loads(v) if k in as_json else v for k, v in metadata.items()
                if k not in _RESERVED}
    except (ValueError, RecursionError) as e:
        raise CaffeFormatError(path, "__metadata__", f"a value is not valid JSON "
                               f"({str(e)[:120]}); expected {EXPECTED}") from None


def write_checkpoint(out, meta, state_dict, *, refuse_nonfinite=None, late_meta=None,
                     helpers=None):
    """Write ``state_dict`` ({key: numpy array or CPU tensor}) and ``meta`` to ``out`` as a
    safetensors checkpoint, atomically; spans of a mapped caffemodel go file to file.

    ``refuse_nonfinite([(key, count)])`` gets the tensors holding NaN/Inf, counted while they
    are written (no pass of its own), and may raise: then nothing is written. ``late_meta()``
    gives meta values computed meanwhile (the source's sha256), each as long as its
    placeholder in ``meta``; ``helpers``: copying threads beside this one (default: the
    writer's). Returns the meta written."""
    import numpy as np

    from fcn_port.port.fileio import safetensors

    arrays = {k: v if hasattr(v, "__array_interface__") else _numpy(v)
              for k, v in state_dict.items()}
    found = []  # (key, count) per piece; list.append is safe from the writer's two threads

    def visit(key, values):
        if values.dtype.kind == "f":
            n = values.size - int(np.count_nonzero(np.isfinite(values)))
            if n:
                found.append((key, n))

    def finish():
        if refuse_nonfinite is not None:
            counts = {}
            for key, n in found:
                counts[key] = counts.get(key, 0) + n
            refuse_nonfinite([(k, counts[k]) for k in arrays if k in counts])
        if late_meta is not None:
            meta.update(late_meta())
            return to_metadata(meta)
        return None

    more = {} if helpers is None else {"helpers": helpers}
    safetensors.write(out, arrays, to_metadata(meta), visit=visit if refuse_nonfinite else None,
                      before_commit=finish, **more)
    return meta


def _numpy(tensor):
    """A numpy view of a tensor's memory (a copy only for another device)."""
    return tensor.detach().cpu().numpy()


def read_checkpoint(path, map_location="cpu"):
    """(meta, state dict of tensors) of a safetensors checkpoint, the tensors zero-copy views
    of the mapped file (moved to ``map_location`` if it is not the CPU). The caller
    (:func:`.checkpoint.load`) checks shapes against the metadata and refuses NaN/Inf."""
    import numpy as np
    import torch

    from fcn_port.port.fileio import safetensors

    arrays, metadata = safetensors.read(path, EXPECTED)
    meta = from_metadata(metadata, path)
    allowed = ("float32",) if meta.get("kind", "fcn") == "fcn" else ("float32", "float64")
    wrong = [f"'{k}' {a.dtype}" for k, a in arrays.items() if a.dtype.name not in allowed]
    if wrong:
        raise CaffeFormatError(path, "", f"tensors {', '.join(wrong[:4])}: expected "
                               f"{' or '.join(allowed)} weights (F32 in safetensors terms)")
    sd = {}
    for key, a in arrays.items():
        if a.ctypes.data % a.dtype.itemsize:  # misaligned by another writer: torch wants aligned
            a = np.array(a)
        sd[key] = torch.from_numpy(a)
    if str(map_location) != "cpu":
        sd = {k: t.to(map_location) for k, t in sd.items()}
    return meta, sd
