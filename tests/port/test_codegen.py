"""fcn-port codegen: the generated file runs where fcn_port cannot be imported, and its outputs
equal the interpreter's on every oracle net and on a net of every other type it writes, and
Caffe's for the FCN nets and a net fed by Caffe's own data layers (their tops are inputs)."""
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from fcn_port import cli
from fcn_port.port.codegen import TYPES, generate, state_dict
from fcn_port.port.formats.text import read_net
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
np.savez(sys.argv[4], **{k: v.detach().numpy() for k, v in out.items()})
"""


def _run_generated(tmp_path, net, feed, text=None, state=None):
    """Runs the generated file of ``net`` (or ``text`` with ``state``) on ``feed`` in a
    subprocess that cannot import fcn_port; its outputs by name."""
    (tmp_path / "generated.py").write_text(generate(net) if text is None else text)
    torch.save(state_dict(net) if state is None else state, tmp_path / "state.pt")
    np.savez(tmp_path / "feed.npz", **feed)
    run = subprocess.run([sys.executable, "-c", RUN, str(tmp_path), str(tmp_path / "state.pt"),
                          str(tmp_path / "feed.npz"), str(tmp_path / "out.npz")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(np.load(tmp_path / "out.npz"))


def test_generated_modules_equal_the_interpreter_on_every_oracle_net(tmp_path):
    for case in CASES:
        net = from_prototxt(case / "net.prototxt", "TEST", weights=case / "weights.caffemodel")
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
    assert len(CASES) >= 46


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
    masked = tmp_path / "masked.prototxt"
    masked.write_text('input: "x" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }\n'
                      'layer { name: "p" type: "Pooling" bottom: "x" top: "y" top: "mask" '
                      'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')
    assert cli.main(["codegen", str(masked), "-o", str(tmp_path / "x.py")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "x.py").exists()
    with pytest.raises(SystemExit):
        cli.main(["codegen", str(masked)])  # -o is required


NET = """
input: "x" input_shape { dim: 2 dim: 3 dim: 6 dim: 6 }
input: "lab" input_shape { dim: 2 }
input: "t" input_shape { dim: 2 dim: 3 dim: 6 dim: 6 }
input: "h" input_shape { dim: 3 dim: 3 }
input: "s" input_shape { dim: 3 dim: 6 }
input: "gates" input_shape { dim: 1 dim: 2 dim: 12 }
input: "c0" input_shape { dim: 1 dim: 2 dim: 3 }
input: "cont" input_shape { dim: 1 dim: 2 }
layer { name: "clip" type: "Clip" bottom: "x" top: "clip" clip_param { min: -0.5 max: 0.7 } }
layer { name: "swish" type: "Swish" bottom: "x" top: "swish" swish_param { beta: 1.5 } }
layer { name: "elu" type: "ELU" bottom: "x" top: "elu" elu_param { alpha: 0.3 } }
layer { name: "bnll" type: "BNLL" bottom: "x" top: "bnll" }
layer { name: "thr" type: "Threshold" bottom: "x" top: "thr" threshold_param { threshold: 0.2 } }
layer { name: "abs" type: "AbsVal" bottom: "x" top: "abs" }
layer { name: "exp" type: "Exp" bottom: "x" top: "exp" exp_param { base: 2 scale: 0.5 shift: 1 } }
layer { name: "log" type: "Log" bottom: "abs" top: "log"
        log_param { base: 10 scale: 2 shift: 1 } }
layer { name: "pow0" type: "Power" bottom: "x" top: "pow0" power_param { power: 2 scale: 0 shift: 3 } }
layer { name: "sto" type: "Pooling" bottom: "abs" top: "sto"
        pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 } }
layer { name: "tile" type: "Tile" bottom: "x" top: "tile" tile_param { axis: 2 tiles: 2 } }
layer { name: "rsum" type: "Reduction" bottom: "x" top: "rsum"
        reduction_param { operation: SUMSQ axis: 1 coeff: 0.3 } }
layer { name: "rmean" type: "Reduction" bottom: "x" top: "rmean"
        reduction_param { operation: MEAN axis: 2 } }
layer { name: "i2c" type: "Im2col" bottom: "x" top: "i2c"
        convolution_param { kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "sc2" type: "Scale" bottom: "x" bottom: "s" top: "sc2"
        scale_param { axis: 1 bias_term: true } }
layer { name: "bias" type: "Bias" bottom: "x" top: "bias" bias_param { num_axes: 1 } }
layer { name: "ipt" type: "InnerProduct" bottom: "x" top: "ipt"
        inner_product_param { num_output: 4 axis: 2 transpose: true
                              weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "par" type: "Parameter" top: "par" parameter_param { shape { dim: 2 dim: 5 } } }
layer { name: "dummy" type: "DummyData" top: "dummy"
        dummy_data_param { shape { dim: 2 dim: 2 } data_filler { type: "constant" value: 1.5 } } }
layer { name: "flat" type: "Flatten" bottom: "x" top: "flat" }
layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "scores"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
layer { name: "acc" type: "Accuracy" bottom: "scores" bottom: "lab" top: "acc" top: "per_class"
        accuracy_param { top_k: 2 } }
layer { name: "am" type: "ArgMax" bottom: "scores" top: "am" argmax_param { top_k: 2 out_max_val: true } }
layer { name: "sl" type: "SoftmaxWithLoss" bottom: "scores" bottom: "lab" top: "sl" top: "prob" }
layer { name: "sce" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "sce"
        loss_param { ignore_label: 0 normalization: VALID } }
layer { name: "hinge" type: "HingeLoss" bottom: "scores" bottom: "lab" top: "hinge"
        hinge_loss_param { norm: L2 } }
layer { name: "info" type: "InfogainLoss" bottom: "scores" bottom: "lab" bottom: "h" top: "info" }
layer { name: "unit" type: "LSTMUnit" bottom: "c0" bottom: "gates" bottom: "cont"
        top: "c1" top: "h1" }
layer { name: "quiet" type: "Silence" bottom: "t" }
"""


def test_every_type_codegen_writes_equals_the_interpreter(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    torch.manual_seed(0)
    net = from_prototxt(tmp_path / "net.prototxt", "TEST")
    with torch.no_grad():
        net.layers["bias"].blob(0).normal_()
        net.layers["sc2"].blob(0).normal_()
        net.layers["par"].blob(0).normal_()
    g = torch.Generator().manual_seed(1)
    feed = {b: torch.randn(net.blob_shapes[b], generator=g).numpy() for b in net.inputs}
    feed["lab"] = np.array([2, 0], np.float32)
    feed["t"] = (torch.rand(feed["t"].shape, generator=g) > 0.5).float().numpy()
    feed["h"] = np.abs(feed["h"])
    feed["cont"] = np.array([[1, 0]], np.float32)
    with torch.no_grad():
        want = net(**{k: torch.from_numpy(v) for k, v in feed.items()})
    got = _run_generated(tmp_path, net, feed)
    assert sorted(got) == sorted(want)
    for k in got:
        np.testing.assert_allclose(got[k], want[k].detach().numpy(), rtol=1e-6, atol=1e-6,
                                   err_msg=k)
    seen = {lp.type for case in CASES for lp in read_net(case / "net.prototxt")[0].layer}
    seen |= {lp.type for lp in read_net(tmp_path / "net.prototxt")[0].layer}
    assert set(TYPES) - seen <= {"HDF5Output", "Split"}, set(TYPES) - seen


def test_data_layer_tops_are_inputs_and_the_generated_net_equals_caffe(tmp_path, monkeypatch):
    case = ORACLE / "data" / "lmdb_raw_meanfile_crop"
    monkeypatch.chdir(tmp_path)
    assert cli.main(["codegen", str(case / "net.prototxt"), "-o", "gen.py"]) == 0
    blobs = np.load(case / "blobs.npz")
    feed = {"data": blobs["top/data/0"], "label": blobs["top/data/1"]}
    out = _run_generated(tmp_path, None, feed, text=(tmp_path / "gen.py").read_text(), state={})
    np.testing.assert_allclose(out["pool"], blobs["top/pool/0"], rtol=1e-6, atol=1e-6)


def test_names_in_the_file_are_data_never_code(tmp_path):
    """A hostile prototxt's layer, blob and net names (quotes, newlines, code) end up only in
    string literals and escaped comments: the generated file does what the net says."""
    bad = 'c\\"\\nraise SystemExit(7)\\n#'
    (tmp_path / "net.prototxt").write_text(
        f'name: "{bad}"\ninput: "x{bad}" input_shape {{ dim: 1 dim: 2 dim: 4 dim: 4 }}\n'
        f'layer {{ name: "{bad}" type: "Convolution" bottom: "x{bad}" top: "y{bad}" '
        'convolution_param { num_output: 3 kernel_size: 3 } }\n')
    net = from_prototxt(tmp_path / "net.prototxt", "TEST")
    text = generate(net)
    assert "\nraise SystemExit" not in text
    (arg,) = re.findall(r"def forward\(self, (\w+)\)", text)  # the input, as an identifier
    feed = {arg: np.ones((1, 2, 4, 4), np.float32)}
    got = _run_generated(tmp_path, net, feed)
    with torch.no_grad():
        want = net(torch.ones(1, 2, 4, 4))
    (key,) = want
    np.testing.assert_allclose(got[key], want[key].numpy(), rtol=1e-6, atol=1e-6)
