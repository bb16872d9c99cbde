"""export_onnx writes under a temporary name with the file's own name and checks the file there:
a failed export or check leaves nothing at the output path (no onnx package needed: the
exporter and the check are stand-ins that record what they were given)."""
import os
from pathlib import Path

import pytest
import torch

from fcn_port import models
from fcn_port.models.deploy import onnx as onnx_export
from fcn_port.port.errors import NetError

TINY = Path(onnx_export.__file__).resolve().parents[2] / "port" / "data"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out, _ = models.convert(str(TINY / "voc-fcn8s-tiny.caffemodel"),
                            str(tmp_path_factory.mktemp("tiny") / "tiny.pt"))
    return out


@pytest.fixture
def stand_ins(monkeypatch):
    seen = {"export": [], "check": []}

    def export(module, inputs, path, **kw):
        seen["export"].append(path)
        with open(path, "wb") as f:
            f.write(b"ONNX stand-in")

    def check(path, model, size, dynamic, rtol):
        seen["check"].append((path, open(path, "rb").read()))
        if seen.get("fail"):
            raise NetError(f"{path}: differs from the PyTorch model")
        return []

    monkeypatch.setattr(onnx_export.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(torch.onnx, "export", export)
    monkeypatch.setattr(onnx_export, "check_onnx", check)
    return seen


def test_onnx_is_written_whole_under_its_own_name_and_checked_before_it_is_placed(
        tmp_path, ckpt, stand_ins):
    out = tmp_path / "m.onnx"
    report = onnx_export.export_onnx(ckpt, out, size=(41, 59))
    (written,), ((checked, body),) = stand_ins["export"], stand_ins["check"]
    assert os.path.basename(written) == "m.onnx" and written != str(out)
    assert checked == written and body == b"ONNX stand-in"  # checked before the rename
    assert out.read_bytes() == b"ONNX stand-in" and report["onnx"] == str(out)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]  # the private folder is gone


def test_a_failed_onnx_check_leaves_no_file(tmp_path, ckpt, stand_ins):
    stand_ins["fail"] = True
    out = tmp_path / "m.onnx"
    with pytest.raises(NetError):
        onnx_export.export_onnx(ckpt, out, size=(41, 59))
    assert stand_ins["check"] and os.listdir(tmp_path) == []


def test_export_checks_the_onnx_side_before_writing_the_caffemodel(tmp_path, capsys,
                                                                   monkeypatch):
    """``export CKPT -o X.caffemodel --onnx X.onnx`` on what cannot become ONNX (an interpreter
    checkpoint; no onnx package) wrote the caffemodel, then exited 2 (issue 16): now it writes
    neither."""
    from fcn_port.cli import main

    layer = Path(__file__).resolve().parents[2] / "data" / "oracle" / "layers" / "lrn"
    net = tmp_path / "net.pt"
    assert main(["convert", str(layer / "weights.caffemodel"), "--prototxt",
                 str(layer / "net.prototxt"), "-o", str(net)]) == 0
    fcn, _ = models.convert(str(TINY / "voc-fcn8s-tiny.caffemodel"), str(tmp_path / "fcn.pt"))
    monkeypatch.setattr(onnx_export.importlib.util, "find_spec", lambda name: None)
    for ckpt, words in [(net, "CaffeNet"), (fcn, "'onnx' package")]:
        capsys.readouterr()
        assert main(["export", str(ckpt), "-o", str(tmp_path / "x.caffemodel"), "--onnx",
                     str(tmp_path / "x.onnx")]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
        assert sorted(os.listdir(tmp_path)) == ["fcn.pt", "net.pt"]
