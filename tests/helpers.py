"""What the tests share: where the real-Caffe oracle cases are, one layer builder, one way to run
each oracle layer alone, and the relative error (the source's own ``blob_error``).

Import it as ``from helpers import ...``: setup.cfg puts ``tests/`` on ``sys.path``.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import parse_text, read_net
from fcn_port.port.formats.upgrade import upgrade_net
from fcn_port.port.layers import LayerError, lookup
from fcn_port.port.layers import types as layer_types
from fcn_port.port.parity import DEFAULT_RTOL, blob_error

__all__ = ["DATA", "ORACLE", "REPO", "SHARED", "TOL", "VISION", "blob_error", "case_params",
           "case_types", "layer_fails", "layer_runs", "load_case", "make_layer", "oracle_cases",
           "to_numpy", "upgraded_net", "upsample_filt", "layer_setup_fails"]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"
ORACLE = DATA / "oracle"
SHARED = REPO.parent / "shared" / "oracle" / "cases"   # the workplace's cases, when present (CI)
TOL = DEFAULT_RTOL                                      # 1e-5 of max(1, max|caffe|)
VISION = frozenset({"Convolution", "Deconvolution", "Pooling", "Crop"})  # Caffe's vision_layers


# ------------------------------------------------------------------------------- oracle cases

def oracle_cases(group, needs=None):
    """Case folders of ``group`` ('layers', 'fcn', 'formats', 'solver'), in-repo ones first."""
    found = {}
    for root in (SHARED, ORACLE):  # in-repo copies win over shared ones of the same name
        for case in sorted((root / group).glob("*")) if (root / group).is_dir() else ():
            if case.is_dir() and (needs is None or (case / needs).exists()):
                found[case.name] = case
    return [found[k] for k in sorted(found)]


def case_params(group, needs=None):
    return [pytest.param(c, id=f"{group}/{c.name}") for c in oracle_cases(group, needs)]


def case_types(case):
    """The layer types Caffe instantiated for a forward case (inserted Splits included)."""
    return {entry["type"] for entry in json.loads((case / "case.json").read_text())["layers"]}


def load_case(case):
    """(upgraded net, case.json, blobs.npz, Caffe's weights by layer) of a forward case."""
    net, _ = read_net(case / "net.prototxt")
    meta = json.loads((case / "case.json").read_text())
    blobs = np.load(case / "blobs.npz")
    weights = read_weights(case / "weights.caffemodel").params
    return net, meta, blobs, weights


# -------------------------------------------------------------------------------- comparisons

def to_numpy(x):
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def upgraded_net(text):
    """A NetParameter from prototxt text, upgraded as Caffe does on load."""
    net, _ = parse_text(text, caffe_pb2.NetParameter)
    upgrade_net(net)
    return net


def upsample_filt(size):
    """The official surgery.py upsample_filt: factor (size+1)//2, centre factor-1 (odd) or
    factor-0.5; a bilinear kernel written from FCN_FACTS.md, not from the source."""
    f = (size + 1) // 2
    c = f - 1 if size % 2 else f - 0.5
    r = 1 - np.abs(np.arange(size) - c) / f
    return (r[:, None] * r[None, :]).astype(np.float32)


# ------------------------------------------------------------------------------------- layers

def make_layer(text, bottom_shapes, phase="TEST"):
    """A layer from LayerParameter text and its bottoms' shapes (one top named after it if none)."""
    lp, _ = parse_text(text, caffe_pb2.LayerParameter)
    if not lp.top and lp.type != "Silence":
        lp.top.append(lp.name)
    return lookup(lp)(lp, [tuple(s) for s in bottom_shapes], phase)


def layer_fails(match, fn, *args):
    """``fn(*args)`` raises a LayerError matching ``match``; its message."""
    with pytest.raises(LayerError, match=match) as info:
        fn(*args)
    return str(info.value)


def layer_runs(case, types=None):
    """Each layer of ``types`` (default: every one) that Caffe instantiated in ``case``, built
    alone from its LayerParameter with Caffe's blobs: (entry, layer, bottoms, Caffe's tops).

    The bottoms are what Caffe itself fed it (``input/<blob>`` for net inputs, else the recorded
    top of the layer that wrote that blob last), so every comparison isolates one layer.
    """
    net, meta, blobs, weights = load_case(case)
    lps = {lp.name: lp for lp in net.layer}
    source = {}                         # blob name -> npz key of the value Caffe had last
    for entry in meta["layers"]:
        name, kind = entry["name"], entry["type"]
        if kind == "Input":
            fed = [f"input/{t}" for t in entry["tops"]]
        else:
            fed = [source.get(b, f"input/{b}") for b in entry["bottoms"]]
        if types is None or kind in types:
            lp = lps.get(name)
            if lp is None:              # a Split Caffe inserted
                lp = caffe_pb2.LayerParameter(name=name, type=kind, bottom=entry["bottoms"],
                                              top=entry["tops"])
            bottoms = [torch.from_numpy(np.array(blobs[k])) for k in fed]
            cls = layer_types()[kind]
            shapes = [] if cls.is_source else [tuple(b.shape) for b in bottoms]
            layer = cls(lp, shapes, meta["phase"])
            params = weights.get(name, [])
            assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == \
                {str(i): w.shape for i, w in enumerate(params)}, name   # Caffe's blob shapes
            layer.load_state_dict({str(i): torch.from_numpy(np.array(w))
                                   for i, w in enumerate(params)})
            tops = [np.array(blobs[f"top/{name}/{i}"]) for i in range(len(entry["tops"]))]
            yield entry, layer, bottoms, tops
        for i, t in enumerate(entry["tops"]):
            source[t] = f"top/{name}/{i}"


def layer_setup_fails(text, bottom_shapes, *needles, phase="TEST"):
    """Making the layer raises a LayerError whose message holds every needle; the message."""
    with pytest.raises(LayerError) as info:
        make_layer(text, bottom_shapes, phase)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    return str(info.value)


def kill_at_hold(argv, hold, *, cwd=None, env=None, timeout=120):
    """Run ``argv`` in a child whose writes of files matching ``hold`` pause
    (``atomic_output``'s test hook), SIGKILL it once it announces the paused temporary path, and
    return ``(that path, the stderr lines before it, the child's exit status)``."""
    import os
    import signal
    import subprocess
    import time

    from fcn_port.port.fileio.files import HOLD_ENV

    env = dict(os.environ if env is None else env, **{HOLD_ENV: hold})
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        start, before, line = time.monotonic(), [], child.stderr.readline()
        while "test hold:" not in line:
            assert line or child.poll() is None, f"the child ended ({child.poll()}) unheld"
            assert time.monotonic() - start < timeout, "the child never reached the hold"
            before.append(line)
            line = child.stderr.readline()
        assert line.startswith("fcn-port: test hold: "), line  # the hook's announcement
        child.send_signal(signal.SIGKILL)
        status = child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    return line.split("test hold:", 1)[1].strip(), before, status
