"""PyTorch checkpoint files (``torch.save`` zips), read safely: weights only, never code.

Not a Caffe format (Caffe's ``Net::CopyTrainedLayersFrom`` reads only caffemodels), but the files
fcn-port writes (``fcn-port convert``) and the ones users hand to it by mistake. A ``torch.save``
file is a zip holding a pickle; unpickling can call any importable function (``os.system``), so
every read here goes through ``torch.load(weights_only=True)``, whose restricted unpickler admits
tensors, containers and plain values only. Where fcn-port differs from plain torch: a refused
global, a truncated archive or a non-checkpoint is one :class:`CaffeFormatError` naming the file
and what was expected, never a traceback, and the refusal never suggests ``weights_only=False``.

:func:`describe` is what ``fcn-port inspect`` prints for such a file: fcn-port's own
checkpoints (``{"format": "fcn-port/1", "meta", "state_dict"}``) by their metadata, other
state dicts by their tensors.
"""
import math
import pickle
import re
import zipfile

from ..errors import CaffeFormatError
from .sniff import sniff

FORMAT = "fcn-port/1"
EXPECTED = "a checkpoint from fcn-port convert"
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load(path, map_location="cpu", expected=EXPECTED):
    """``torch.load(path, weights_only=True)``; anything that is not loadable weights raises
    CaffeFormatError (a pickle that would run code names the function it calls)."""
    import torch

    kind = sniff(path)
    if kind in ("missing", "folder", "empty"):
        words = {"missing": "cannot open (no such file)", "folder": "is a folder, not a file",
                 "empty": "the file is empty"}[kind]
        raise CaffeFormatError(path, "", f"{words}; expected {expected}")
    if kind not in ("zip", "pickle"):
        raise CaffeFormatError(path, "", f"not a PyTorch checkpoint (this looks like "
                               f"{_kind_words(kind)}); expected {expected}")
    if kind == "zip":
        _check_zip(path, expected)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = _GLOBAL.search(str(e))
        if found:
            raise CaffeFormatError(path, "", f"refused: its pickle calls {found.group(1)} (code, "
                                   "not weights); fcn-port loads checkpoints with "
                                   f"weights_only=True and never runs code from a file; expected "
                                   f"{expected}") from None
        raise CaffeFormatError(path, "", f"not a loadable PyTorch checkpoint "
                               f"({_first_line(e)}); expected {expected}") from None
    except (RecursionError, MemoryError):
        raise CaffeFormatError(path, "", "the pickle nests too deeply or claims too much memory; "
                               f"expected {expected}") from None
    except Exception as e:  # noqa: BLE001  (torch raises RuntimeError, ValueError, KeyError, ...)
        raise CaffeFormatError(path, "", f"corrupt or truncated PyTorch checkpoint "
                               f"({type(e).__name__}: {_first_line(e)}); expected {expected}") from None


def _check_zip(path, expected):
    """A PyTorch zip as torch.save writes it: complete, every record stored (a deflated record
    inflates to whatever it claims before anything could check it)."""
    try:
        with zipfile.ZipFile(path) as z:
            packed = [i.filename for i in z.infolist() if i.compress_type != zipfile.ZIP_STORED]
    except (zipfile.BadZipFile, OSError, ValueError):
        raise CaffeFormatError(path, "", "truncated: a PyTorch zip checkpoint without its "
                               "closing directory (cut short by a download or a copy?); "
                               f"expected {expected}") from None
    if packed:
        raise CaffeFormatError(path, packed[0], "a compressed record (torch.save stores every "
                               f"record as is, and a compressed one can inflate to any size); "
                               f"expected {expected}")


def check_tensors(path, tensors):
    """Every tensor of a state dict a plain one: its storage holds all its values (no expanded
    or overlapping strides, whose NaN scan or copy would touch ``numel`` values of a tiny
    storage: 75 KB that read as 7 GB), and float32, the dtype of every Caffe blob."""
    import torch

    for key, t in tensors.items():
        if not t.is_contiguous() or not _holds_its_values(t):
            raise CaffeFormatError(path, key, f"a tensor of shape {tuple(t.shape)} whose storage "
                                   "does not hold its values (strides that repeat them); "
                                   "expected plain contiguous tensors, as torch.save writes "
                                   "a state dict")
        if t.dtype != torch.float32:
            raise CaffeFormatError(path, key, f"a tensor of dtype {str(t.dtype)[6:]}; "
                                   "expected float32, as Caffe's blobs are")


def _holds_its_values(t):
    """Whether ``t``'s storage holds every value it reads (strides that repeat a tiny storage
    over a huge shape do not)."""
    return t.untyped_storage().nbytes() >= (t.storage_offset() + t.numel()) * t.element_size()


def _kind_words(kind):
    from .sniff import WORDS

    return WORDS.get(kind, kind)


def _first_line(error):
    """The first sentence of ``error``'s first line: whole words, never cut mid-sentence."""
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(error).__name__
    end = line.find(". ")
    line = line[:end + 1] if end >= 0 else line
    return line if len(line) <= 200 else line[:line.rfind(" ", 0, 197)] + " ..."


def read_checkpoint(path, map_location="cpu"):
    """(meta, state_dict) of an fcn-port checkpoint, checked for shape: a dict with the format
    tag, a dict ``meta`` and a ``state_dict`` of tensors keyed ``<layer>.<blob>``."""
    import torch

    ckpt = load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        what = "a dict without" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}, not a dict with"
        raise CaffeFormatError(path, "", f"a PyTorch file but not an fcn-port checkpoint ({what} "
                               f"the '{FORMAT}' format tag); make one with: fcn-port convert "
                               "X.caffemodel")
    meta, sd = ckpt.get("meta"), ckpt.get("state_dict")
    if not isinstance(meta, dict):
        raise CaffeFormatError(path, "meta", "expected a dict of metadata (model, classes, ...)")
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in sd.items()):
        raise CaffeFormatError(path, "state_dict", "expected a dict of tensors keyed "
                               "'<layer>.<blob>'")
    check_tensors(path, sd)
    return meta, sd


def layer_rows(tensors, net=None):
    """``inspect``'s ``layers`` (one row per layer, its blobs' shapes and count) and
    ``total_params`` of a state dict whose keys are ``<layer>.<blob>`` (torch tensors or numpy
    arrays), layers in first-key order; each layer's type, bottoms and tops from ``net`` (a
    NetParameter: the checkpoint's own, or its model's; see :func:`checkpoint_net`)."""
    layers, lps = {}, {lp.name: lp for lp in net.layer} if net is not None else {}
    for key, t in tensors.items():
        layers.setdefault(key.rsplit(".", 1)[0], []).append(tuple(t.shape))
    rows = []
    for i, (n, shapes) in enumerate(layers.items()):
        lp = lps.get(n)
        rows.append({"index": i, "name": n, "type": lp.type if lp else "",
                     "bottoms": list(lp.bottom) if lp else [], "tops": list(lp.top) if lp else [],
                     "params": [list(s) for s in shapes],
                     "count": sum(math.prod(s) for s in shapes)})
    return {"layers": rows, "total_params": sum(r["count"] for r in rows)}


def checkpoint_net(meta, net_by_name=None):
    """The NetParameter a checkpoint's layers come from: an interpreter checkpoint's own
    prototxt, or for an FCN its official model's net (``net_by_name``: the CLI passes the
    model zoo's; port/ knows no model names). None when neither is there or readable."""
    from ..errors import FcnPortError
    from .proto import caffe_pb2
    from .text import parse_text

    try:
        if isinstance(meta.get("prototxt"), str):
            return parse_text(meta["prototxt"], caffe_pb2.NetParameter, "checkpoint prototxt")[0]
        if net_by_name is not None and isinstance(meta.get("model"), str):
            return net_by_name(meta["model"])
    except FcnPortError:
        pass
    return None


def nonfinite(state_dict):
    """[(key, count)] of the tensors holding NaN or Inf values."""
    import torch

    bad = []
    for key, t in state_dict.items():
        if t.is_floating_point():
            n = int(t.numel() - torch.isfinite(t).sum())
            if n:
                bad.append((key, n))
    return bad


def describe(path, net_by_name=None):
    """``fcn-port inspect``'s dict for a PyTorch file (see the module docstring)."""
    import torch

    obj = load(path, "cpu", expected="a PyTorch checkpoint")
    meta = {}
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        meta, sd = read_checkpoint(path)
        kind, info = "fcn-port checkpoint", {k: v for k, v in meta.items() if k != "prototxt"}
    else:
        sd = obj if isinstance(obj, dict) else {}
        kind, info = "PyTorch file (not an fcn-port checkpoint)", {"holds": type(obj).__name__}
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    for key, t in tensors.items():  # the NaN/Inf scan touches numel values: a plain storage
        if not _holds_its_values(t):
            raise CaffeFormatError(path, key, f"a tensor of shape {tuple(t.shape)} whose storage "
                                   "does not hold its values (strides that repeat them)")
    net = checkpoint_net(meta, net_by_name)
    report = {"kind": kind, "format": "PyTorch zip", "meta": info, **layer_rows(tensors, net)}
    bad = nonfinite(tensors)
    if bad:
        report["warnings"] = [f"tensor '{k}' holds {n} NaN/Inf values" for k, n in bad]
    return report
