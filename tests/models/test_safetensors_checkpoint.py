"""Safetensors checkpoints (models/portable.py, models/shapes.py, the .safetensors branches of
models/checkpoint.py): written without torch, the same tensors and meta as the .pt, loaded by
every verb with the .pt's checks, and readable by the safetensors package.
"""
import hashlib
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from fcn_port import models
from fcn_port.cli import main
from fcn_port.models.checkpoint import convert_to_safetensors, expected_shapes
from fcn_port.models.shapes import param_shapes
from fcn_port.port.errors import CaffeFormatError, UserInputError
from fcn_port.port.fileio import safetensors as st
from fcn_port.port.formats.caffemodel import read_weights, write_weights
from helpers import ORACLE

FCN8S = ORACLE / "fcn/voc-fcn8s/weights.caffemodel"


def _demo():
    from fcn_port.models.verbs import DEMO_WEIGHTS

    return str(DEMO_WEIGHTS)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The bundled demo model converted both ways."""
    d = tmp_path_factory.mktemp("pair")
    st_out, st_meta = convert_to_safetensors(_demo(), str(d / "demo.safetensors"))
    pt_out, pt_meta = models.convert(_demo(), str(d / "demo.pt"))
    return st_out, st_meta, pt_out, pt_meta


def test_param_shapes_are_the_modules_for_every_official_model():
    for name, cfg in models.OFFICIAL.items():
        assert param_shapes(cfg) == expected_shapes(cfg), name
        small = models.config(name, widths=(2, 4, 4, 6, 6), fc=8,
                              classes=[5] * len(cfg.heads))
        assert list(param_shapes(small).items()) == list(expected_shapes(small).items()), name


def test_demo_safetensors_gives_bit_identical_outputs_to_the_pt(pair):
    st_out, st_meta, pt_out, pt_meta = pair
    assert st_meta == pt_meta
    a, b = models.load(st_out), models.load(pt_out)
    assert a.meta == b.meta and not a.training
    x = torch.from_numpy(np.random.default_rng(1).uniform(-100, 100, (1, 3, 45, 61))
                         .astype(np.float32))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sb)


def test_header_holds_the_state_dict_and_metadata(pair):
    st_out, _, _, _ = pair
    blob = open(st_out, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    md = header.pop("__metadata__")
    assert md["format"] == "fcn-port/1" and md["model"] == "voc-fcn8s" and md["kind"] == "fcn"
    assert json.loads(md["widths"]) == [8, 16, 32, 64, 64] and json.loads(md["fc"]) == 128
    assert json.loads(md["classes"]) == 21 and "classes" in json.loads(md["json_keys"])
    assert md["sha256"] == hashlib.sha256(open(_demo(), "rb").read()).hexdigest()  # filled last
    weights = read_weights(_demo())
    keys = [f"{k}.{i}" for k, blobs in weights.params.items() for i in range(len(blobs))]
    assert list(header) == keys  # Caffe's names, in the caffemodel's order
    assert header["conv1_1.0"]["shape"] == [8, 3, 3, 3] and header["conv1_1.0"]["dtype"] == "F32"
    begin, end = header["score_fr.0"]["data_offsets"]
    got = np.frombuffer(blob[8 + n + begin:8 + n + end], "<f4")
    assert np.array_equal(got, weights.params["score_fr"][0].reshape(-1))


def test_any_project_loads_it_with_the_safetensors_package(pair):
    stt = pytest.importorskip("safetensors.torch")
    st_out, _, pt_out, _ = pair
    theirs = stt.load_file(st_out)
    ours = torch.load(pt_out, weights_only=True)["state_dict"]
    assert set(theirs) == set(ours) and all(torch.equal(theirs[k], v) for k, v in ours.items())


def test_convert_imports_no_torch(tmp_path):
    code = ("import sys\nfrom fcn_port.cli import main\n"
            f"rc = main(['convert', {_demo()!r}, '-o', {str(tmp_path / 'c.safetensors')!r}])\n"
            "assert rc == 0, rc\n"
            "from fcn_port.models.checkpoint import convert_to_safetensors\n"
            f"convert_to_safetensors({str(FCN8S)!r}, {str(tmp_path / 'f.safetensors')!r})\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert models.load(tmp_path / "c.safetensors").meta["model"] == "voc-fcn8s"


def test_oracle_fcn_and_interpreter_checkpoints_match_their_pt(tmp_path):
    x = torch.from_numpy(np.load(FCN8S.parent / "blobs.npz")["input/data"])
    a = models.load(convert_to_safetensors(str(FCN8S), str(tmp_path / "f.safetensors"))[0])
    b = models.load(models.convert(str(FCN8S), str(tmp_path / "f.pt"))[0])
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    case = ORACLE / "layers/conv_group_dilation"
    outs = [models.load(models.convert(str(case / "weights.caffemodel"), str(tmp_path / f"c{s}"),
                                       prototxt=str(case / "net.prototxt"))[0])
            for s in (".safetensors", ".pt")]
    assert outs[0].meta == outs[1].meta and outs[0].meta["kind"] == "caffenet"
    blobs = np.load(case / "blobs.npz")
    feed = {k: torch.from_numpy(blobs[f"input/{k}"]) for k in outs[0].inputs}
    with torch.no_grad():
        tops = [net(record=True, **feed)["_tops"] for net in outs]
    assert tops[0].keys() == tops[1].keys() and all(torch.equal(tops[0][k], tops[1][k])
                                                    for k in tops[0])


def test_verbs_read_it(pair, tmp_path, capsys):
    st_out = pair[0]
    assert main(["infer", st_out, "-o", str(tmp_path / "inf"), "-q"]) == 0
    assert (tmp_path / "inf" / "demo.png").exists()
    assert main(["export", st_out, "-o", str(tmp_path / "e.caffemodel")]) == 0
    exported = read_weights(tmp_path / "e.caffemodel")
    assert np.array_equal(exported.params["upscore8"][0], read_weights(_demo()).params["upscore8"][0])


def _rewrite(src, out, edit):
    """A copy of safetensors ``src`` with ``edit(arrays, metadata)`` applied."""
    arrays, md = st.read(src)
    arrays = {k: np.array(a) for k, a in arrays.items()}
    edit(arrays, md)
    st.write(out, arrays, md)
    return out


def test_load_refuses_what_the_pt_path_refuses(pair, tmp_path):
    src = pair[0]
    cases = {
        "nan": (lambda a, m: a["fc7.0"].__setitem__((0, 0, 0, 0), np.nan), "NaN"),
        "shape": (lambda a, m: a.__setitem__("score_fr.1", np.zeros(5, np.float32)), "metadata"),
        "no tag": (lambda a, m: m.pop("format"), "not an fcn-port checkpoint"),
        "bad json": (lambda a, m: m.__setitem__("widths", "[8, 16"), "JSON"),
        "f16": (lambda a, m: a.__setitem__("fc7.1", a["fc7.1"].astype(np.float16)), "float32"),
        "missing": (lambda a, m: a.pop("upscore8.0"), "missing"),
    }
    for name, (edit, word) in cases.items():
        bad = _rewrite(src, tmp_path / f"{name.replace(' ', '_')}.safetensors", edit)
        with pytest.raises(CaffeFormatError, match=word):
            models.load(bad)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CaffeFormatError, match="safetensors"):
        models.load(garbage)
    out = tmp_path / "o"
    assert main(["infer", str(tmp_path / "nan.safetensors"), "-o", str(out)]) == 2
    assert not out.exists()


def test_convert_refuses_nan_and_wrong_names(tmp_path):
    weights = read_weights(FCN8S)
    params = {k: [np.array(a) for a in v] for k, v in weights.params.items()}
    params["fc6"][0][0, 0, 0, 0] = np.inf
    write_weights(params, tmp_path / "inf.caffemodel", net=weights.net)
    out = tmp_path / "inf.safetensors"
    with pytest.raises(CaffeFormatError, match="NaN/Inf"):
        convert_to_safetensors(str(tmp_path / "inf.caffemodel"), str(out))
    assert [p.name for p in tmp_path.iterdir()] == ["inf.caffemodel"]  # no output, no temporary
    with pytest.raises(UserInputError, match=".safetensors"):
        convert_to_safetensors(str(FCN8S), str(tmp_path / "x.pt"))
    copy = tmp_path / "w.caffemodel"
    copy.write_bytes(FCN8S.read_bytes())
    assert convert_to_safetensors(str(copy))[0] == str(tmp_path / "w.safetensors")
