"""Write the malformed-input corpus (run from anywhere: ``python tests/data/malformed/make.py``).

Every file is made from small valid ones (the oracle's 4 KB lr_exp caffemodel, its nets and
solver, a sgd_step_itersize solverstate, a tiny FCN checkpoint, a tiny PNG) by one deliberate
fault. ``cases.json`` lists each file with the verb a user would run on it and words its one-line
error must contain; tests/port/formats/test_malformed.py runs them all through the CLI.
"""
import io
import json
import os
import struct
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from fcn_port.port.formats import wire
from fcn_port.port.formats.caffemodel import read_weights, write_weights
from fcn_port.port.formats.hdf5 import write_hdf5_weights

HERE = Path(__file__).resolve().parent
ORACLE = HERE.parent / "oracle"
BASE = ORACLE / "solver" / "lr_exp"
CASES = []


def case(name, data, verb, *words, names=None):
    """Write ``data`` to ``name`` and record how the test runs it; the error must name
    ``names`` (default: the file itself; a solver's broken net names the net)."""
    (HERE / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    CASES.append({"file": name, "verb": verb, "words": list(words), "names": names or name})


# ------------------------------------------------------------------------ binary caffemodels

def _layer_fields(buf):
    return [f for f in wire.fields(buf, 0, len(buf)) if f[0] == 100]


def caffemodels(good):
    layers = _layer_fields(good)
    with_blobs = [f for f in layers if any(g[0] == 7 for g in wire.fields(good, f[3], f[4]))]
    number, _, key_at, start, stop, _ = with_blobs[-1]  # the last layer with blobs
    blob = next(f for f in wire.fields(good, start, stop) if f[0] == 7)
    data = next(f for f in wire.fields(good, blob[3], blob[4]) if f[0] == 5)
    cuts = {"in-layer-key": key_at + 1, "in-length-prefix": start - 1, "after-length": start,
            "in-layer-name": start + 3, "in-blob-key": blob[2] + 1, "in-blob-data": data[3] + 5,
            "last-byte": len(good) - 1, "first-layer-end": layers[0][4] + 1}
    for what, at in cuts.items():
        case(f"truncated-{what}.caffemodel", good[:at], "inspect", "truncated")
    case("empty.caffemodel", b"", "inspect", "empty")
    case("wrong-wire-type-layer.caffemodel", wire.key(100, wire.VARINT) + b"\x05", "inspect",
         "wire type")
    case("group-wire-type.caffemodel", wire.key(100, wire.SGROUP) + b"\x00", "inspect", "wire type 3")
    case("invalid-wire-type-7.caffemodel", wire.varint((100 << 3) | 7) + b"\x00", "inspect", "wire type 7")
    case("huge-length-prefix.caffemodel", wire.key(100, wire.LEN) + wire.varint(1 << 62) + b"\0" * 8,
         "inspect", "claims")
    case("negative-length-prefix.caffemodel", wire.key(100, wire.LEN) + wire.varint(-1) + b"\0" * 8,
         "inspect", "claims")
    case("varint-never-ends.caffemodel", b"\x08" + b"\xff" * 16, "inspect", "varint")
    case("field-number-zero.caffemodel", b"\x00\x01\x02", "inspect", "field number 0")
    huge_blob = _shape(1 << 31, 1 << 31) + _floats([1.0])
    case("blob-shape-claims-2e18-values.caffemodel", _blob_layer("conv", huge_blob), "inspect",
         "disagrees")
    case("blob-count-disagrees-with-shape.caffemodel",
         _blob_layer("conv", _shape(2, 3) + _floats([1, 2, 3])), "inspect", "conv", "6 values")
    case("blob-negative-dim.caffemodel", _blob_layer("conv", _shape(-1) + _floats([1])), "inspect",
         "negative")
    case("blob-legacy-dims-disagree.caffemodel",
         _blob_layer("conv", b"\x08\x01\x10\x02\x18\x01\x20\x01" + _floats([1])), "inspect", "holds 2")
    case("blob-bytes-not-whole-floats.caffemodel",
         _blob_layer("conv", _shape(1) + wire.length_delimited(5, 3) + b"abc"), "inspect", "whole number")
    case("blob-data-huge-length.caffemodel",
         _blob_layer("conv", _shape(1) + wire.key(5, wire.LEN) + wire.varint(1 << 40)), "inspect", "claims")
    nested = b"\x01"
    for _ in range(3000):  # an unknown field nested 3000 deep
        nested = wire.length_delimited(900, len(nested)) + nested
    case("deep-nesting.caffemodel", nested, "inspect", "900")
    name = b"\x0a\x03\xf6\xf7\xf8"
    case("layer-name-not-utf8.caffemodel", wire.length_delimited(100, len(name)) + name, "inspect", "UTF-8")
    v1 = b"\x22\x02v1"
    both = wire.length_delimited(2, len(v1)) + v1 + good
    case("v1-and-v2-layers.caffemodel", both, "inspect", "both")
    case("unknown-top-level-field.caffemodel", good + wire.key(900, wire.VARINT) + b"\x01",
         "inspect", "field 900")
    case("prototxt-given-as-caffemodel.caffemodel", (BASE / "train.prototxt").read_bytes(),
         "convert", "prototxt", "--prototxt")
    # issue 16: inputs that took minutes or internal errors, small files
    n = 30000  # single unpacked data and diff floats in turn (quadratic: minutes at 3 MB)
    one = (wire.key(5, wire.I32) + b"\0\0\x80\x3f" + wire.key(6, wire.I32) + b"\0\0\0\0") * n
    case("alternating-unpacked-data-diff.caffemodel", _blob_layer("conv", _shape(n + 1) + one),
         "inspect", "disagrees")
    case("scalar-score-fr.caffemodel", _blob_layer("score_fr", _shape() + _floats([1.0])),
         "convert", "shape ()")
    case("blob-shape-40000-dims.caffemodel",
         _blob_layer("conv", _shape(*([1 << 62] * 40000 + [0]))), "inspect", "32 dims")


def _blob_layer(name, blob_bytes):
    layer = wire.length_delimited(1, len(name)) + name.encode() + wire.length_delimited(7, len(blob_bytes)) + blob_bytes
    return wire.length_delimited(100, len(layer)) + layer


def _shape(*dims):
    packed = b"".join(wire.varint(d) for d in dims)
    dim = wire.length_delimited(1, len(packed)) + packed
    return wire.length_delimited(7, len(dim)) + dim


def _floats(values):
    raw = np.asarray(values, "<f4").tobytes()
    return wire.length_delimited(5, len(raw)) + raw


def nonfinite(weights):
    for what, value in (("nan", np.nan), ("inf", np.inf)):
        params = {k: [a.copy() for a in v] for k, v in weights.params.items()}
        first = next(iter(params))
        params[first][0].reshape(-1)[0] = value
        write_weights(params, HERE / "tmp.caffemodel", net=weights.net)
        case(f"{what}-weights.caffemodel", (HERE / "tmp.caffemodel").read_bytes(), "convert-prototxt",
             "NaN/Inf", first)
        os.unlink(HERE / "tmp.caffemodel")


# ------------------------------------------------------------------------------------ HDF5

def hdf5_files(weights, good):
    def h5(name, fill, verb="inspect", *words):
        tmp = HERE / "tmp.h5"
        with h5py.File(tmp, "w") as f:
            fill(f)
        case(name, tmp.read_bytes(), verb, *words)
        os.unlink(tmp)

    write_hdf5_weights(weights, HERE / "tmp.h5")
    raw = (HERE / "tmp.h5").read_bytes()
    os.unlink(HERE / "tmp.h5")
    case("truncated.caffemodel.h5", raw[:len(raw) // 3], "inspect", "HDF5")
    hurt = bytearray(raw)
    hurt[40:48] = b"\xff" * 8  # the superblock's base address / end-of-file address
    case("corrupt-superblock.caffemodel.h5", bytes(hurt), "inspect", "HDF5")
    h5("no-data-group.caffemodel.h5", lambda f: f.create_dataset("x", data=np.zeros(3)), "inspect", "/data")
    # a gap (0, 2) is a shared param Caffe keeps at its owner; a name that is no index is not
    h5("blob-names-not-indices.caffemodel.h5", lambda f: (
        f.create_dataset("data/conv/0", data=np.zeros(2, "f4")),
        f.create_dataset("data/conv/02", data=np.zeros(2, "f4"))), "inspect", "/data/conv")
    h5("blob-index-1000.caffemodel.h5", lambda f: f.create_dataset("data/conv/1000",
                                                                    data=np.zeros(2, "f4")),
       "inspect", "/data/conv")
    h5("integer-blob.caffemodel.h5", lambda f: f.create_dataset("data/conv/0", data=np.zeros(2, "i4")),
       "inspect", "float")
    h5("dataset-claims-4tb.caffemodel.h5",
       lambda f: f.create_dataset("data/conv/0", shape=(1 << 40,), dtype="f4", chunks=(1024,)),
       "inspect", "16 times")
    h5("solverstate-without-iter.solverstate.h5", lambda f: f.create_group("history"), "inspect", "/iter")
    # issue 16: a link that reads another file (a FIFO there blocks), and many unallocated
    # datasets each under the per-file bound that together claim gigabytes

    def external(f):
        f.create_group("data/conv")
        f["data/conv/0"] = h5py.ExternalLink("/etc/hostname", "/x")
    h5("external-link.caffemodel.h5", external, "inspect", "external link")

    def fill_values(f):
        for i in range(400):
            f.create_dataset(f"data/l{i}/0", shape=(1 << 20,), dtype="f4", chunks=(1 << 14,))
    h5("fill-value-datasets.caffemodel.h5", fill_values, "inspect", "16 times")


# --------------------------------------------------------------------------- solverstates

def solverstates():
    good = (ORACLE / "solver" / "sgd_step_itersize" / "snapshots" / "snap_iter_5.solverstate").read_bytes()
    case("empty.solverstate", b"", "inspect", "empty")
    case("truncated-history.solverstate", good[:len(good) // 2], "inspect", "truncated")
    case("truncated-last-byte.solverstate", good[:-1], "inspect", "truncated")
    bad_blob = _shape(4) + _floats([1, 2])
    case("history-count-disagrees.solverstate", wire.length_delimited(3, len(bad_blob)) + bad_blob,
         "inspect", "disagrees")
    case("iter-wrong-wire-type.solverstate", wire.length_delimited(1, 2) + b"ab", "inspect", "wire type")
    case("huge-length.solverstate", wire.key(3, wire.LEN) + wire.varint(1 << 60), "inspect", "claims")


# ------------------------------------------------------------------------------- prototxts

def nets():
    text = (BASE / "train.prototxt").read_text()
    conv = 'layer {\n  name: "conv1"'
    assert conv in text
    dup = text + '\nlayer {\n  name: "again"\n  type: "ReLU"\n  bottom: "data"\n  top: "conv1"\n}\n'
    case("duplicate-top.prototxt", dup, "convert-prototxt", "conv1", "multiple sources")
    first = text.index("layer {", text.index(conv) + 1)
    cycle = text.replace('bottom: "data"', 'bottom: "loss"', 1)
    case("cycle.prototxt", cycle, "convert-prototxt", "loss", "earlier")
    case("missing-bottom.prototxt", text.replace('bottom: "data"', 'bottom: "dat"', 1),
         "convert-prototxt", "dat")
    case("misspelled-type.prototxt", text.replace('type: "Convolution"', 'type: "Convolutoin"', 1),
         "convert-prototxt", "Convolutoin")
    case("unbalanced-brace.prototxt", text[:first - 2], "convert-prototxt", "prototxt")
    case("unknown-field.prototxt", text.replace(conv, conv + "\n  colour: 3", 1), "convert-prototxt",
         "colour")
    case("deep-nesting.prototxt", "layer { " * 5000 + "}" * 5000, "convert-prototxt", "prototxt")
    case("not-utf8.prototxt", b"layer { name: \"\xff\xfe\" }", "convert-prototxt", "UTF-8")
    case("huge-number.prototxt", text.replace("num_output:", "num_output: 99999999999999999999 #", 1),
         "convert-prototxt", "prototxt")
    case("wrong-class-count.prototxt", _reclass(text), "convert-prototxt", "shape")
    return text


def _reclass(text):
    import re
    return re.sub(r"num_output: (\d+)", lambda m: f"num_output: {int(m.group(1)) + 3}", text, count=1)


def solvers(net_text):
    good = (BASE / "solver.prototxt").read_text()
    (HERE / "net-duplicate-top.prototxt").write_text(
        net_text + '\nlayer {\n  name: "again"\n  type: "ReLU"\n  bottom: "data"\n  top: "conv1"\n}\n')
    (HERE / "net-cycle.prototxt").write_text(net_text.replace('bottom: "data"', 'bottom: "loss"', 1))
    (HERE / "net-missing-bottom.prototxt").write_text(net_text.replace('bottom: "data"', 'bottom: "dat"', 1))
    for what in ("duplicate-top", "cycle", "missing-bottom"):
        case(f"solver-{what}.prototxt", good.replace("train.prototxt", f"net-{what}.prototxt"),
             "train", names=f"net-{what}.prototxt")
    case("solver-syntax-error.prototxt", good + "\nbase_lr 0.1\n", "train", "solver-syntax-error")
    case("solver-no-net.prototxt", good.replace('train_net: "train.prototxt"', ""), "train", "train net")
    case("solver-missing-net.prototxt", good.replace("train.prototxt", "nowhere.prototxt"), "train",
         "nowhere.prototxt")
    case("solver-unknown-field.prototxt", good + "\nlearning_rate: 0.1\n", "train", "learning_rate")
    case("solver-not-utf8.prototxt", good.encode() + b"\n# \xff\xfe\n", "train", "UTF-8")


# ------------------------------------------------------------------------------ checkpoints

def checkpoints():
    from fcn_port.models import build, config

    torch.manual_seed(0)
    cfg = config("voc-fcn32s", classes=[2], widths=[1, 1, 1, 1, 1], fc=1)
    net = build("voc-fcn32s", classes=[2], widths=[1, 1, 1, 1, 1], fc=1)
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    meta = {"kind": "fcn", **cfg.meta(), "source": "made by make.py", "sha256": "0" * 64,
            "fcn_port": "0.1.0"}
    good = {"format": "fcn-port/1", "meta": meta, "state_dict": sd}

    def save(name, obj, *words, **kw):
        buf = io.BytesIO()
        torch.save(obj, buf, **kw)
        case(name, buf.getvalue(), "infer", *words)
        return buf.getvalue()

    raw = save("good.pt", good)
    CASES.pop()  # the valid one is the base of the image cases, not a case itself
    save("pickle-calls-os-system.pt", {"format": "fcn-port/1", "x": _Evil()}, "refused", "posix.system")
    save("legacy-pickle-calls-os-system.pt", {"x": _Evil()}, "refused", "system",
         _use_new_zipfile_serialization=False)
    case("truncated.pt", raw[:len(raw) // 2], "infer", "checkpoint")
    case("empty.pt", b"", "infer", "empty")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("hello.txt", "not a checkpoint")
    case("foreign-zip.pt", zbuf.getvalue(), "infer", "checkpoint")
    save("a-list.pt", [1, 2, 3], "not an fcn-port checkpoint")
    save("no-format-tag.pt", {"meta": meta, "state_dict": sd}, "format tag")
    bad = {k: v.clone() for k, v in sd.items()}
    bad["conv1_1.0"].view(-1)[0] = float("nan")
    save("nan-weights.pt", {**good, "state_dict": bad}, "NaN", "conv1_1.0")
    save("wrong-class-count.pt", {**good, "meta": {**meta, "classes": 5, "heads": [["", 5]]}},
         "score_fr", "classes 5")
    save("meta-missing-keys.pt", {**good, "meta": {"kind": "fcn"}}, "metadata")
    save("state-dict-not-tensors.pt", {**good, "state_dict": {"conv1_1.0": [1.0]}}, "tensors")
    case("caffemodel-text.pt", "layer { }", "infer", "caffemodel")
    # issue 16: small files that would take gigabytes, dtypes that ended in internal errors
    save("expanded-tensor.pt", {**good, "state_dict": {**sd, "fc6.0": torch.zeros(1).expand(
        35000, 35000)}}, "storage", "fc6.0")
    save("float64-weights.pt", {**good, "state_dict": {**sd, "fc6.0": sd["fc6.0"].double()}},
         "float64", "fc6.0")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as zi, zipfile.ZipFile(zbuf, "w") as zo:
        for info in zi.infolist():
            zo.writestr(info.filename, zi.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    case("deflated-record.pt", zbuf.getvalue(), "infer", "compressed")
    # an interpreter checkpoint whose prototxt declares a 20-billion-value layer its (empty)
    # state dict does not fill: refused before the net is built (it took 5.3 GB)
    huge = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 '
            'dim: 8 dim: 8 } } }\nlayer { name: "ip" type: "InnerProduct" bottom: "data" '
            'top: "ip" inner_product_param { num_output: 100000000 } }\n')
    caffenet = {"kind": "caffenet", "model": "huge", "prototxt": huge, "source": "make.py",
                "sha256": "0" * 64, "fcn_port": "0.1.0"}
    save("caffenet-huge-layer.pt", {"format": "fcn-port/1", "meta": caffenet, "state_dict": {}},
         "does not fill", "ip")


class _Evil:
    def __reduce__(self):
        return os.system, ("echo this must never run",)


# ----------------------------------------------------------------------------- safetensors

def safetensors_files():
    """Headers whose shapes numpy cannot hold (issue 16: internal errors in ``inspect``)."""
    def st(name, header, *words):
        head = (header if isinstance(header, str) else json.dumps(header)).encode()
        case(name, len(head).to_bytes(8, "little") + head, "inspect", *words)

    def empty(shape):
        return {"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}
    st("65-axes.safetensors", empty([0] * 65), "65 axes")
    st("dims-overflow.safetensors", empty([1 << 70, 0]), "2^48")
    st("dims-product-overflows.safetensors", empty([1 << 62, 1 << 62, 0]), "2^48")
    st("deep-json.safetensors", '{"w":' * 5000 + "{}" + "}" * 5000, "JSON")


# ---------------------------------------------------------------------------------- images

def images():
    png = io.BytesIO()
    Image.fromarray(np.full((12, 14, 3), 128, np.uint8)).save(png, "PNG")
    png = png.getvalue()
    (HERE / "good.png").write_bytes(png)
    case("truncated.png", png[:len(png) // 2], "infer-image", "truncated.png")
    case("text-named.png", "not an image", "infer-image", "image")
    case("empty.jpg", b"", "infer-image", "empty.jpg")
    jpg = io.BytesIO()
    Image.fromarray(np.full((12, 14, 3), 128, np.uint8)).save(jpg, "JPEG")
    case("truncated.jpg", jpg.getvalue()[:200], "infer-image", "truncated.jpg")
    deep = io.BytesIO()
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(deep, "PNG")
    case("sixteen-bit.png", deep.getvalue(), "infer-image", "16-bit")
    case("bomb-100000x100000.png", _png_header(100000, 100000), "infer-image", "bomb")
    # issue 16: a PostScript program under a photo's name never reaches Pillow's EPS decoder
    case("postscript-named.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{} loop\n",
         "infer-image", "JPEG or PNG")


def _png_header(w, h):
    """A PNG whose header claims w x h pixels and holds one empty data chunk."""
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def main():
    for old in HERE.iterdir():
        if old.name not in ("make.py", "README.md"):
            old.unlink()
    good = (BASE / "init.caffemodel").read_bytes()
    (HERE / "good.caffemodel").write_bytes(good)
    (HERE / "good.prototxt").write_bytes((BASE / "train.prototxt").read_bytes())
    weights = read_weights(HERE / "good.caffemodel")
    caffemodels(good)
    nonfinite(weights)
    hdf5_files(weights, good)
    solverstates()
    solvers(nets())
    checkpoints()
    safetensors_files()
    images()
    (HERE / "cases.json").write_text(json.dumps(CASES, indent=1) + "\n")
    size = sum(p.stat().st_size for p in HERE.iterdir())
    print(f"{len(CASES)} cases, {size:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
