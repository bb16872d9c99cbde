"""``fcn-port inspect``: what a Caffe file is and what it holds.

Any prototxt (net or solver), caffemodel (binary or HDF5), or solverstate (binary or HDF5):
format and version, each layer with type, bottoms, tops and param shapes, parameter totals,
and what loading upgraded. :func:`inspect_file` returns a plain dict (the ``--json`` output);
:func:`format_report` renders it for people.
"""
import os

import numpy as np
from google.protobuf import text_format

from ..errors import CaffeFormatError
from .protoutil import printable
from .sniff import sniff

BIG = 64 << 20  # files above this get a progress bar while their values are summarised


def detect(path):
    """'hdf5', 'text', 'torch' (a PyTorch zip or pickle), 'safetensors' or 'binary', from the
    first bytes."""
    if os.path.isdir(path):
        raise CaffeFormatError(path, "", "is a folder, not a file; expected a Caffe file "
                               "(prototxt, caffemodel, solverstate) or an fcn-port checkpoint")
    if not os.path.isfile(path):
        raise CaffeFormatError(path, "", "no such file")
    from ..fileio.safetensors import is_safetensors

    if is_safetensors(path):
        return "safetensors"
    kind = sniff(path)
    if kind == "empty":
        raise CaffeFormatError(path, "", "the file is empty; expected a Caffe file (prototxt, "
                               "caffemodel, solverstate) or an fcn-port checkpoint")
    return {"zip": "torch", "pickle": "torch", "hdf5": "hdf5", "text": "text"}.get(kind, "binary")


def _layers(net, params, absent=()):
    """One row per layer; a param an HDF5 file leaves out (shared, kept at its owner) is
    None in ``params``."""
    rows = []
    for i, layer in enumerate(net.layer):
        blobs = params.get(layer.name, [])
        rows.append({"index": i, "name": layer.name, "type": layer.type,
                     "bottoms": list(layer.bottom), "tops": list(layer.top),
                     "params": [None if (layer.name, k) in absent else list(a.shape)
                                for k, a in enumerate(blobs)],
                     "count": int(sum(a.size for a in blobs))})
    return rows


def _stats(params, size, chunk=1 << 22):
    """Per-layer min/max/mean and non-finite counts, in chunks; a progress bar for big files."""
    from tqdm import tqdm

    total = sum(a.nbytes for blobs in params.values() for a in blobs)
    out = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc="summarising", leave=False,
              disable=None if size >= BIG else True) as bar:
        for name, blobs in params.items():
            lo, hi, acc, n, bad = np.inf, -np.inf, 0.0, 0, 0
            for a in blobs:
                flat = a.reshape(-1)
                for i in range(0, flat.size, chunk):
                    part = flat[i:i + chunk]
                    finite = np.isfinite(part)
                    good = part if finite.all() else part[finite]
                    if good.size:
                        lo, hi = min(lo, float(good.min())), max(hi, float(good.max()))
                        acc += float(good.sum(dtype=np.float64))
                    n, bad = n + good.size, bad + part.size - good.size
                    bar.update(part.nbytes)
            if n or bad:
                out[name] = {"min": lo if n else None, "max": hi if n else None,
                             "mean": acc / n if n else None, "nonfinite": bad}
    return out


def _weights_report(path, stats):
    from .caffemodel import read_weights

    w = read_weights(path)
    report = {"kind": "caffemodel", "format": "HDF5" if w.format == "hdf5" else "binary",
              "version": w.version, "upgrades": w.upgrades, "net": w.net.name,
              "layers": _layers(w.net, w.params, w.absent), "total_params": int(w.num_params)}
    if w.format == "hdf5":
        report["note"] = "HDF5 weights keep layer names and params only (no types, no order)"
    if w.legacy:
        report["legacy_dims"] = sorted(f"{n}[{i}]" for n, i in w.legacy)
    if w.diffs:
        report["diffs"] = sorted(w.diffs)
    if stats:
        report["stats"] = _stats(w.params, os.path.getsize(path))
        bad = [f"layer '{n}' holds {s['nonfinite']} NaN/Inf values"
               for n, s in report["stats"].items() if s["nonfinite"]]
        if bad:
            report["warnings"] = bad
    return report


def _state_report(path):
    from .solverstate import read_solverstate

    s = read_solverstate(path)
    return {"kind": "solverstate", "format": "HDF5" if s.format == "hdf5" else "binary",
            "iter": s.iter, "current_step": s.current_step, "learned_net": s.learned_net,
            "history": [list(a.shape) for a in s.history],
            "total_params": int(sum(a.size for a in s.history))}


def _text_report(path, known_types=None):
    from . import text
    from .caffemodel import net_version
    from .upgrade import upgrade_net

    try:
        net, notes = text.read_net(path, upgrade=False)
    except CaffeFormatError as net_error:
        try:
            solver, notes = text.read_solver(path)
        except CaffeFormatError as solver_error:
            raise (solver_error if "solver" in os.path.basename(path) else net_error) from None
        return {"kind": "solver", "format": "prototxt", "upgrades": notes,
                "settings": text_format.MessageToString(solver, as_one_line=True)}
    from .netcheck import check_net

    version = net_version(net)
    notes += upgrade_net(net, path=path)
    report = {"kind": "net", "format": "prototxt", "version": version, "upgrades": notes,
              "net": net.name, "layers": _layers(net, {}), "total_params": None}
    problems = check_net(net, known_types)
    if problems:
        report["warnings"] = problems
    return report


def _safetensors_report(path, net_by_name=None):
    """``inspect``'s dict for a safetensors file (fcn-port's checkpoints are ``fcn-port/1``):
    its metadata (JSON values decoded, as ``json_keys`` lists them) and tensors by layer."""
    import json

    from ..fileio import safetensors
    from .torchfile import checkpoint_net, layer_rows

    arrays, meta = safetensors.read(path, "a safetensors file")
    info = dict(meta)
    try:
        for key in json.loads(info.pop("json_keys", "[]")):
            info[key] = json.loads(info[key])
    except (ValueError, TypeError, KeyError, RecursionError):
        pass  # shown as the strings they are (nested past the parser's depth, too)
    ours = info.pop("format", None) == "fcn-port/1"
    net = checkpoint_net(info, net_by_name) if ours else None
    info.pop("prototxt", None)
    report = {"kind": "fcn-port checkpoint" if ours else "safetensors file (not fcn-port's)",
              "format": "safetensors", "meta": info, **layer_rows(arrays, net)}
    bad = [(k, int((~np.isfinite(a)).sum())) for k, a in arrays.items()
           if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        report["warnings"] = [f"tensor '{k}' holds {n} NaN/Inf values" for k, n in bad]
    return report


def inspect_file(path, *, stats=False, known_types=None, net_by_name=None):
    """Describe ``path`` as a dict; raise CaffeFormatError for anything unreadable. A net's
    problems (unknown types when ``known_types`` is given, bottoms no earlier layer makes,
    duplicate tops) are listed under ``warnings``, as are NaN/Inf values in weights.
    ``net_by_name``: an official model's net, for the layer types of an FCN checkpoint."""
    path = os.fspath(path)
    kind = detect(path)
    if kind == "torch":
        from .torchfile import describe

        report = describe(path, net_by_name)
    elif kind == "safetensors":
        report = _safetensors_report(path, net_by_name)
    elif kind == "text":
        from .sniff import first_words, prototxt_like

        if not prototxt_like(path):
            raise CaffeFormatError(path, "", f"text that is no prototxt ({first_words(path)}); "
                                   "expected a prototxt, a caffemodel or a solverstate")
        report = _text_report(path, known_types)
    elif kind == "hdf5":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                is_state = "history" in f
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise CaffeFormatError(path, "", f"unreadable HDF5 file ({e}); expected an HDF5 "
                                   "caffemodel or solverstate") from None
        report = _state_report(path) if is_state else _weights_report(path, stats)
    elif path.endswith(".solverstate"):
        report = _state_report(path)
    elif path.endswith(".binaryproto"):
        report = _blob_report(path)
    else:
        report = _weights_report(path, stats)
    return {"file": path, "bytes": os.path.getsize(path), **report}


def _blob_report(path):
    """A ``.binaryproto``: one BlobProto (a mean image, Infogain's H), its shape and values."""
    from .blobproto import read_blob_file

    data = read_blob_file(path).data
    report = {"format": "binary", "kind": "BlobProto", "shape": list(data.shape),
              "count": int(data.size)}
    if data.size:
        finite = data[np.isfinite(data)]
        report["stats"] = {"min": float(finite.min()) if finite.size else None,
                           "max": float(finite.max()) if finite.size else None,
                           "mean": float(finite.mean(dtype=np.float64)) if finite.size else None,
                           "nonfinite": int(data.size - finite.size)}
        image = data[0] if data.ndim == 4 and data.shape[0] == 1 else data
        if image.ndim == 3:
            report["channel_means"] = [float(v) for v in
                                       image.reshape(image.shape[0], -1).mean(1, dtype=np.float64)]
    return report


def _shape(s):
    return "(shared)" if s is None else "x".join(map(str, s)) if s else "scalar"


def _esc(text):
    """A name from a file, fit for a terminal: control characters (ESC, OSC, CR, newlines)
    escaped, so that a file can neither rewrite the user's terminal nor forge output lines."""
    return printable(text, limit=1 << 20)


def format_report(r):
    """Human-readable text of :func:`inspect_file`'s dict; every string that came from the
    file, or is its name, is escaped (:func:`_esc`)."""
    head = f"{_esc(r['file'])}: {r['format']} {r['kind']}"
    if r.get("version"):
        head += f", format {r['version']}"
    lines = [head + f" ({r['bytes']:,} bytes)"]
    if r.get("net"):
        lines.append(f"net name: {_esc(r['net'])}")
    for note in r.get("upgrades") or []:
        lines.append(f"upgraded: {_esc(note)}")
    if r.get("note"):
        lines.append(f"note: {_esc(r['note'])}")
    for key, value in (r.get("meta") or {}).items():
        lines.append(f"{_esc(key)}: {_esc(value)}")
    if r["kind"] == "BlobProto":
        lines.append(f"shape: {_shape(r['shape'])} ({r['count']:,} values)")
        if r.get("stats") and r["stats"]["min"] is None:
            lines.append(f"values: all {r['count']:,} NaN/Inf")
        elif r.get("stats"):
            s = r["stats"]
            lines.append(f"values: min {s['min']:.6g}, max {s['max']:.6g}, mean {s['mean']:.6g}"
                         + (f", {s['nonfinite']} NaN/Inf" if s["nonfinite"] else ""))
        if r.get("channel_means"):
            lines.append("per-channel mean (what --mean-file subtracts): ["
                         + ", ".join(f"{v:.5f}" for v in r["channel_means"]) + "]")
    if r["kind"] == "solver":
        lines.append(f"settings: {r['settings']}")
    if r["kind"] == "solverstate":
        lines += [f"iter {r['iter']}, current_step {r['current_step']}, "
                  f"learned_net '{_esc(r['learned_net'])}'",
                  f"history: {len(r['history'])} blobs, {r['total_params']:,} values"]
        lines += [f"  {i:3d}  {_shape(s)}" for i, s in enumerate(r["history"])]
    if "layers" in r:
        stats = r.get("stats", {})
        rows = [(str(l["index"]), _esc(l["name"]), _esc(l["type"]) or "?",
                 _esc(f"{','.join(l['bottoms'])} -> {','.join(l['tops'])}")
                 if l["tops"] or l["bottoms"] else "",
                 "  ".join(_shape(p) for p in l["params"]), f"{l['count']:,}" if l["params"] else "")
                for l in r["layers"]]
        header = ("#", "layer", "type", "bottoms -> tops", "params", "count")
        widths = [max(len(x[i]) for x in rows + [header]) for i in range(6)]
        fmt = "  ".join(f"{{:{'>' if i in (0, 5) else '<'}{w}}}" for i, w in enumerate(widths))
        lines.append(fmt.format(*header).rstrip())
        for row, layer in zip(rows, r["layers"]):
            line = fmt.format(*row).rstrip()
            s = stats.get(layer["name"])
            if s:
                line += f"  [min {s['min']:.4g}, max {s['max']:.4g}, mean {s['mean']:.4g}" + (
                    f", {s['nonfinite']} NaN/Inf]" if s["nonfinite"] else "]")
            lines.append(line)
        with_params = sum(1 for l in r["layers"] if l["params"])
        if r.get("total_params") is not None:
            lines.append(f"total: {r['total_params']:,} parameters in {with_params} layers "
                         f"({len(r['layers'])} layers)")
        else:
            lines.append(f"total: {len(r['layers'])} layers (a net definition holds no parameters)")
    return "\n".join(lines)


def load_net(path):
    """The NetParameter of a net prototxt or a binary caffemodel, upgraded.

    An HDF5 caffemodel holds only the weights (no layer settings), so it raises
    CaffeFormatError, as does anything unreadable.
    """
    path = os.fspath(path)
    kind = detect(path)
    if kind == "hdf5":
        raise CaffeFormatError(path, "", "an HDF5 caffemodel stores only weights, not the layer "
                                         "settings crop offsets come from; give the net prototxt "
                                         "or a binary caffemodel")
    if kind == "text":
        from .text import read_net

        return read_net(path)[0]
    from .caffemodel import read_weights

    return read_weights(path).net
