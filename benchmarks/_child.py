"""What the benchmark runs in a fresh interpreter: one approach, timed, or the verification.

Each approach turns the caffemodel into a ``torch.save`` file of ``{"<layer>.<i>": tensor}``
and prints one JSON line: seconds (from after the imports to the end of the save), the read
and save parts, and memory (``ru_maxrss``, and ``/proc/self/status`` after the imports and at
the end, while the tensors are still alive).
"""
import json
import resource
import time

APPROACHES = {
    "a": "baseline: ParseFromString + np.array per blob + torch.save",
    "b": "fcn-port: read_weights + torchsave.save",
    "b_torch": "fcn-port read_weights + plain torch.save",
    "c": "fcn-port: read_weights alone (no save)",
}
SAVES = ("a", "b", "b_torch")


def _status():
    """VmHWM, VmRSS, RssAnon, RssFile of this process, in KiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0])
    return out


def _maxrss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _baseline_read(model):
    """(a): what one writes without fcn-port: protobuf parses it all, numpy copies each blob."""
    import numpy as np
    import torch

    from fcn_port.port.formats.proto import caffe_pb2

    net = caffe_pb2.NetParameter()
    with open(model, "rb") as f:
        net.ParseFromString(f.read())
    state = {}
    for layer in net.layer:
        for i, blob in enumerate(layer.blobs):
            state[f"{layer.name}.{i}"] = torch.from_numpy(
                np.array(blob.data, dtype=np.float32).reshape(blob.shape.dim))
    return (net, state), state


def run(name, model, out):
    """Time approach ``name`` on ``model``, writing ``out``; print the JSON result line."""
    import numpy as np  # noqa: F401  (every approach has its imports done before the clock)
    import torch

    from fcn_port.port.formats import caffemodel

    from fcn_port.port.fileio import torchsave
    from fcn_port.port.formats.proto import caffe_pb2  # noqa: F401

    if name not in APPROACHES:
        raise SystemExit(f"unknown approach {name!r}; expected one of {', '.join(APPROACHES)}")
    imports = {"maxrss_kib": _maxrss_kib(), **_status()}
    t0 = time.perf_counter()
    if name == "a":
        keep, state = _baseline_read(model)
    else:
        keep = caffemodel.read_weights(model)
        state = keep.state_dict()
    read_s = time.perf_counter() - t0
    if name in ("a", "b_torch"):
        torch.save(state, out)
    elif name == "b":
        torchsave.save(state, out)
    seconds = time.perf_counter() - t0
    end = _status()  # while the arrays and the map are alive
    del keep, state
    print(json.dumps({"seconds": seconds, "read_s": read_s, "save_s": seconds - read_s,
                      "maxrss_kib": _maxrss_kib(), "vmhwm_kib": end["VmHWM"],
                      "imports": imports, "end": end}))


def verify(reference, others, expected_keys, expected_params):
    """Every output holds the same keys, in the same order, as ``reference`` (baseline (a)),
    with equal tensors; ``zipfile`` finds every CRC right; and which outputs are byte-identical."""
    import filecmp
    import zipfile

    import torch

    ref = torch.load(reference, mmap=True, weights_only=True)
    got = [[k, list(v.shape)] for k, v in ref.items()]
    problems = [] if got == expected_keys else [f"{reference}: keys/shapes {got} differ from "
                                                f"voc-fcn8s {expected_keys}"]
    count = sum(v.numel() for v in ref.values())
    if count != expected_params:
        problems.append(f"{reference}: {count:,} values, expected {expected_params:,}")
    identical = []
    for path in others:
        problems += _compare(ref, path, torch)
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        if bad is not None:
            problems.append(f"{path}: zipfile finds a wrong CRC-32 in {bad}")
        identical.append(filecmp.cmp(reference, path, shallow=False))
    print(json.dumps({"problems": problems, "identical": identical}))


def _compare(ref, path, torch):
    other = torch.load(path, mmap=True, weights_only=True)
    if list(other) != list(ref):
        return [f"{path}: keys {list(other)} differ from {list(ref)}"]
    return [f"{path}: tensor {k!r} differs ({other[k].dtype} {tuple(other[k].shape)} vs "
            f"{v.dtype} {tuple(v.shape)})"
            for k, v in ref.items()
            if other[k].dtype != v.dtype or other[k].shape != v.shape or not torch.equal(other[k], v)]


def make(model, keep, seed):
    """Write the random voc-fcn8s (or reuse a kept one of the right size); print its size."""
    import os

    import _fcn8s

    net, shapes = _fcn8s.net_parameter()  # asserts 134,489,759 parameters
    want = _fcn8s.expected_size(net, shapes)
    keys = [[f"{layer}.{i}", list(s)] for layer, blobs in shapes.items() for i, s in enumerate(blobs)]
    result = {"size": want, "keys": keys, "params": _fcn8s.NUM_PARAMS, "reused": True, "seconds": 0.0}
    if not (keep and os.path.exists(model) and os.path.getsize(model) == want):
        t0 = time.perf_counter()
        result.update(size=_fcn8s.make_caffemodel(model, seed), reused=False,
                      seconds=time.perf_counter() - t0)
    print(json.dumps(result))
