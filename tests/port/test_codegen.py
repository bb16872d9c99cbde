"""fcn-port codegen: the generated file runs where fcn_port cannot be imported, and its outputs
equal the interpreter's on every oracle case it can express (and Caffe's for the FCN nets)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fcn_port import cli
from fcn_port.port.codegen import generate, state_dict
from fcn_port.port.errors import UnsupportedError
from fcn_port.port.net import from_prototxt
from helpers import ORACLE

CASES = sorted(p for kind in ("layers", "fcn", "zoo") for p in (ORACLE / kind).iterdir()
               if (p / "weights.caffemodel").exists())
RUN = """
import sys, json, numpy as np, torch
sys.modules["fcn_port"] = None            # the generated file must not need fcn-port
sys.path.insert(0, sys.argv[1])
import generated
net = generated.Net()
state = torch.load(sys.argv[2], weights_only=True)
net.load_state_dict(state)
feed = {k: torch.from_numpy(v) for k, v in np.load(sys.argv[3]).items()}
with torch.no_grad():
    out = net(**feed)
np.savez(sys.argv[4], **{k: v.numpy() for k, v in out.items()})
"""


def _run_generated(tmp_path, net, feed):
    (tmp_path / "generated.py").write_text(generate(net))
    torch.save(state_dict(net), tmp_path / "state.pt")
    np.savez(tmp_path / "feed.npz", **feed)
    run = subprocess.run([sys.executable, "-c", RUN, str(tmp_path), str(tmp_path / "state.pt"),
                          str(tmp_path / "feed.npz"), str(tmp_path / "out.npz")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(np.load(tmp_path / "out.npz"))


def test_generated_modules_equal_the_interpreter_where_they_can_express_the_net(tmp_path):
    expressed = []
    for case in CASES:
        meta = json.loads((case / "case.json").read_text())
        net = from_prototxt(case / "net.prototxt", "TEST", weights=case / "weights.caffemodel")
        try:
            generate(net)
        except UnsupportedError:
            continue
        blobs = np.load(case / "blobs.npz")
        feed = {b: blobs[f"input/{b}"].astype(np.float32) for b in net.inputs}
        with torch.no_grad():
            want = net(**{k: torch.from_numpy(v) for k, v in feed.items()})
        (tmp_path / case.name).mkdir()
        got = _run_generated(tmp_path / case.name, net, feed)
        assert sorted(got) == sorted(want), case.name
        for k in got:
            np.testing.assert_allclose(got[k], want[k].numpy(), rtol=1e-6, atol=1e-6,
                                       err_msg=f"{case.name}: {k}")
        expressed.append((case.parent.name, case.name, meta.get("kind")))
    names = {n for _, n, _ in expressed}
    assert {"voc-fcn8s", "resnet50", "googlenet", "caffenet"} <= names and len(expressed) >= 30, \
        expressed


def test_generated_fcn8s_matches_caffe(tmp_path):
    case = ORACLE / "fcn" / "voc-fcn8s"
    net = from_prototxt(case / "net.prototxt", "TEST", weights=case / "weights.caffemodel")
    blobs = np.load(case / "blobs.npz")
    got = _run_generated(tmp_path, net, {"data": blobs["input/data"].astype(np.float32)})
    caffe = blobs["top/score/0"]
    assert np.abs(got["score"] - caffe).max() / max(1, np.abs(caffe).max()) <= 1e-5


def test_cli_writes_the_file_and_weights_and_refuses_what_it_cannot_write(tmp_path, capsys):
    case = ORACLE / "fcn" / "voc-fcn8s"
    out, w = tmp_path / "fcn8s.py", tmp_path / "fcn8s.safetensors"
    assert cli.main(["codegen", str(case / "net.prototxt"), str(case / "weights.caffemodel"),
                     "-o", str(out), "--weights-out", str(w)]) == 0
    text = out.read_text()
    assert "import fcn_port" not in text and "class Net(nn.Module)" in text
    assert 'self.add_module("conv1_1", Blobs(' in text
    from fcn_port.port.fileio import safetensors

    tensors, _ = safetensors.read(w)
    assert "upscore8.0" in tensors
    lstm = ORACLE / "zoo" / "lstm_rnn"
    assert cli.main(["codegen", str(lstm / "net.prototxt"), "-o", str(tmp_path / "x.py")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "x.py").exists()
    with pytest.raises(SystemExit):
        cli.main(["codegen", str(lstm / "net.prototxt")])  # -o is required
