"""Parity against real Caffe: run an oracle case folder and compare every blob Caffe recorded.

A forward case (format: ``shared/oracle/README.md``) holds ``net.prototxt``, ``case.json``
(phase, inputs, whether backward ran), ``weights.caffemodel`` (and often ``.h5``) and
``blobs.npz``: ``input/<blob>``, ``top/<layer>/<i>``, and for backward cases ``diff/<input>``
and ``pdiff/<layer>/<i>``. Each blob's error is ``max|ours - caffe| / max(1, max|caffe|)``.
"""
import json
import os
from pathlib import Path

import numpy as np
import torch

from .errors import CaffeFormatError, NetError

DEFAULT_RTOL = 1e-5


def blob_error(ours, caffe):
    ours = np.asarray(ours, np.float64)
    caffe = np.asarray(caffe, np.float64)
    if ours.shape != caffe.shape:
        if ours.size != caffe.size:
            return float("inf")
        ours = ours.reshape(caffe.shape)
    if caffe.size == 0:
        return 0.0
    return float(np.abs(ours - caffe).max() / max(1.0, float(np.abs(caffe).max())))


class Comparison:
    """Running worst error over the blobs of one case."""

    def __init__(self):
        self.compared, self.worst, self.where = 0, 0.0, ""

    def add(self, name, ours, caffe):
        err = blob_error(ours, caffe)
        self.compared += 1
        if err > self.worst or not self.where:
            self.worst, self.where = err, name


def _tensor(a):
    return torch.from_numpy(np.array(a, np.float32))


def run_forward_case(case, rtol=DEFAULT_RTOL, caffe_blas=False):
    """Interpret one forward/backward case and compare; returns the dict ``--json`` prints.
    ``caffe_blas``: in Caffe's summation order (:mod:`.layers.blas`)."""
    if caffe_blas:
        from .layers.blas import caffe_blas as order

        with order():
            row = run_forward_case(case, rtol)
        return {**row, "kind": row["kind"] + " (caffe-blas)"}
    from .net import from_prototxt

    case = Path(case)
    meta = json.loads((case / "case.json").read_text())
    blobs = np.load(case / "blobs.npz")
    if meta.get("kind") == "data":
        return _run_data_case(case, meta, blobs, rtol)
    weights = [p for p in (case / "weights.caffemodel", case / "weights.caffemodel.h5") if p.exists()]
    if not weights:
        raise CaffeFormatError(case, "", "no weights.caffemodel: "
                               + meta.get("weights_note", "the case is incomplete"))
    cmp = Comparison()
    for wpath in weights:
        tag = "" if wpath.suffix == ".caffemodel" else " [h5]"
        net = from_prototxt(case / "net.prototxt", meta.get("phase", "TEST"), weights=wpath)
        names = [lp.name for lp in net.layer_params]
        caffe_names = [l["name"] for l in meta.get("layers", [])]
        if caffe_names and names != caffe_names:
            raise NetError(f"{case}: instantiated layers differ from Caffe's: ours {names}, "
                             f"Caffe {caffe_names}")
        grads = bool(meta.get("backward")) and net.force_backward  # Caffe's input diffs
        feed = {b: _tensor(blobs[f"input/{b}"]).requires_grad_(grads) for b in net.inputs}
        out = net(record=True, **feed)
        tops = out["_tops"]
        for key in blobs.files:
            if key.startswith("top/"):
                layer, i = _layer_and_index(key)
                cmp.add(f"{key}{tag}", tops[(layer, int(i))].detach().numpy(), blobs[key])
        if meta.get("backward"):
            net.zero_grad()
            net.loss(tops).backward()
            params = {(name, i): p for name, i, p, _ in net.param_specs}
            for key in blobs.files:
                if key.startswith("diff/"):
                    g = feed[key[5:]].grad
                    cmp.add(f"{key}{tag}", np.zeros_like(blobs[key]) if g is None else g.numpy(), blobs[key])
                elif key.startswith("pdiff/"):
                    layer, i = _layer_and_index(key)
                    g = params[(layer, int(i))].grad
                    cmp.add(f"{key}{tag}", np.zeros_like(blobs[key]) if g is None else g.numpy(), blobs[key])
    return {"case": case.name, "kind": "backward" if meta.get("backward") else "forward",
            "compared": cmp.compared, "worst": cmp.worst, "where": cmp.where,
            "pass": cmp.compared > 0 and cmp.worst <= rtol}


def _run_data_case(case, meta, blobs, rtol):
    """A case whose net reads its own data (Caffe's data layers, paths relative to the case):
    ``passes`` forward passes, each compared with ``top/...`` (pass 1) or ``pass<p>/top/...``."""
    from .datalayers import TYPES, source_for
    from .formats.text import read_net
    from .net import CaffeNet, filter_layers

    phase = meta.get("phase", "TEST")
    param, _ = read_net(case / "net.prototxt")
    sources = {lp.name: source_for(lp, phase, case, meta.get("random_seed"))
               for lp in filter_layers(param, phase) if lp.type in TYPES}
    first = {top: v for src in sources.values() for top, v in src[0].items()}
    net = CaffeNet(param, phase, input_shapes={t: v.shape for t, v in first.items()})
    cmp = Comparison()
    for p in range(meta.get("passes", 1)):
        feed = {t: _tensor(v) for src in sources.values() for t, v in src[p].items()}
        with torch.no_grad():
            tops = net(record=True, **feed)["_tops"]
        prefix = "top/" if p == 0 else f"pass{p + 1}/top/"
        for key in blobs.files:
            if key.startswith(prefix):
                layer, i = _layer_and_index(key[len(prefix) - 4:])
                cmp.add(key, tops[(layer, int(i))].numpy(), blobs[key])
    return {"case": case.name, "kind": f"data ({meta.get('passes', 1)} passes)",
            "compared": cmp.compared, "worst": cmp.worst, "where": cmp.where,
            "pass": cmp.compared > 0 and cmp.worst <= rtol}


def _layer_and_index(key):
    """``top/<layer>/<i>`` or ``pdiff/<layer>/<i>`` -> (layer, i); a layer's name may hold
    ``/`` (GoogLeNet's ``inception_3a/1x1``)."""
    layer, i = key.split("/", 1)[1].rsplit("/", 1)
    return layer, i


def run_case(case, rtol=None, run=run_forward_case, kind="forward", solver_run=None):
    """Any case folder: forward/backward cases go through ``run(case, rtol)`` (the interpreter,
    or e.g. a hand-written model; ``kind`` names it); solver cases through
    ``solver_run(case, rtol)`` (the solver emulator, which port/ cannot import: the caller
    passes it), reported as unsupported without one. ``rtol`` None is each kind's default
    (1e-5 here; the solver runner's own, 1e-2). A net or weights that cannot run is a failed
    case with its error, not an exception."""
    case = Path(case)
    if (case / "solver.prototxt").exists():
        if solver_run is None:
            return {"case": case.name, "kind": "solver", "compared": 0, "worst": None,
                    "where": "", "pass": None,
                    "note": "solver cases replay through the solver emulator (fcn_port.solvers), "
                            "without --model"}
        return solver_run(case, rtol)
    rtol = DEFAULT_RTOL if rtol is None else rtol
    for need in ("net.prototxt", "case.json", "blobs.npz"):
        if not (case / need).exists():
            raise CaffeFormatError(case, "", f"not an oracle case folder: {need} is missing")
    try:
        return run(case, rtol)
    except (NetError, CaffeFormatError) as e:  # the net or its weights could not run
        error = str(e)
    except Exception as e:  # a bug: this case fails with it, the cases after it still run
        if os.environ.get("FCN_PORT_DEBUG"):
            raise
        error = f"internal error: {type(e).__name__}: {e} (a bug in fcn-port; FCN_PORT_DEBUG=1 " \
                "shows the traceback)"
    return {"case": case.name, "kind": kind, "compared": 0, "worst": None,
            "where": "", "pass": False, "error": error}


def format_table(results):
    rows = [("case", "kind", "blobs", "worst", "where", "result")]
    for r in results:
        worst = "-" if r["worst"] is None else f"{r['worst']} ulp" if "max_ulp" in r else \
            f"{r['worst']:.2e}"
        verdict = {True: "pass", False: "FAIL", None: "not supported"}[r["pass"]]
        where = r.get("error") or r["where"]
        where = where if len(where) <= 160 else where[:157] + "..."
        rows.append((r["case"], r["kind"], str(r["compared"]), worst, where, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
