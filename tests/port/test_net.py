"""The interpreter (port/net.py) against real Caffe, and its rules: include/exclude, Python
layers, loss weights, strict loading, save/trace/compile.
"""
import json
import warnings

import numpy as np
import pytest
import torch

from fcn_port.port import net as netmod
from fcn_port.port.formats import text
from fcn_port.port.net import CaffeNet, NetError, from_prototxt
from fcn_port.port.parity import blob_error, run_case
from helpers import ORACLE, case_params


CASES = case_params("layers") + case_params("fcn") + case_params("formats")


@pytest.mark.parametrize("case", CASES)
def test_every_oracle_case_matches_caffe(case):
    r = run_case(case)
    assert r["pass"], r
    assert r["compared"] >= 2 and r["worst"] <= 1e-5


def test_layer_list_is_caffes_including_splits():
    case = ORACLE / "fcn" / "voc-fcn8s-train"
    net = from_prototxt(case / "net.prototxt")
    caffe = json.loads((case / "case.json").read_text())["layers"]
    assert [(lp.name, lp.type, list(lp.bottom), list(lp.top)) for lp in net.layer_params] == \
        [(l["name"], l["type"], l["bottoms"], l["tops"]) for l in caffe]


def _net(body, phase="TEST", **kw):
    param, _ = text.parse_text(body, netmod.caffe_pb2.NetParameter)
    return CaffeNet(param, phase, **kw)


INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'


@pytest.mark.parametrize("body,needle", [
    (INPUT + 'layer { name: "x" type: "Frobnicate" bottom: "data" top: "x" }', "layer 'x': unsupported type 'Frobnicate'; nearest supported: "),
    (INPUT + 'layer { name: "x" type: "Relu" bottom: "data" top: "x" }', "nearest supported: ReLU, "),
    (INPUT + 'layer { name: "r" type: "ReLU" bottom: "nothing" top: "r" }', "layer 'r' (ReLU): bottom 'nothing' is not a top"),
    (INPUT + 'layer { name: "a" type: "ReLU" bottom: "b" top: "a" }\nlayer { name: "b" type: "ReLU" bottom: "a" top: "b" }',
     "layer 'a' (ReLU): bottom 'b'"),
    (INPUT + 'layer { name: "c" type: "Input" top: "c" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 8 } } }\n'
             'layer { name: "s" type: "Eltwise" bottom: "data" bottom: "c" top: "s" }', "layer 's' (Eltwise)"),
    ('layer { name: "d" type: "Input" top: "d" }\n'
     'layer { name: "p" type: "Pooling" bottom: "d" top: "p" pooling_param { kernel_size: 2 } }',
     "layer 'p' (Pooling): the shape of bottom 'd' is not known"),
])
def test_bad_nets_give_clear_errors(body, needle):
    with pytest.raises(NetError) as err:
        _net(body)
    assert needle in str(err.value)


def test_include_exclude_rules_and_stages():
    body = INPUT + (
        'layer { name: "train_only" type: "ReLU" bottom: "data" top: "t" include { phase: TRAIN } }\n'
        'layer { name: "staged" type: "ReLU" bottom: "data" top: "s" include { stage: "deploy" } }\n'
        'layer { name: "not_test" type: "ReLU" bottom: "data" top: "n" exclude { phase: TEST } }\n'
        'layer { name: "lvl" type: "ReLU" bottom: "data" top: "l" include { min_level: 2 } }\n')
    names = lambda n: [lp.name for lp in n.layer_params if lp.type != "Split"]
    assert names(_net(body)) == ["data"]
    assert names(_net(body, "TRAIN")) == ["data", "train_only", "not_test"]
    assert names(_net(body, stages=("deploy",), level=3)) == ["data", "staged", "lvl"]


PY = ('layer { name: "data" type: "Python" top: "data" top: "label" python_param { module: "evil" layer: "Boom" } }\n'
      'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 1 } }\n'
      'layer { name: "fix" type: "Python" bottom: "conv" top: "fixed" python_param { module: "os" layer: "system" } }\n')


def test_python_layers_are_never_imported_unless_allowed():
    with pytest.raises(NetError, match="not bound"):
        _net(PY, input_shapes={"data": (1, 3, 4, 4), "label": (1, 1, 4, 4)})
    net = _net(PY, input_shapes={"data": (1, 3, 4, 4), "label": (1, 1, 4, 4)},
               python_layers={"fix": lambda x: x * 2})
    assert net.inputs == ["data", "label"]
    x = torch.randn(1, 3, 4, 4)
    out = net(data=x, label=torch.zeros(1, 1, 4, 4))
    assert torch.allclose(out["fixed"], 2 * net.layers["conv"](x))


def test_loss_weights_default_and_explicit():
    case = ORACLE / "fcn" / "voc-fcn8s-train"
    net = from_prototxt(case / "net.prototxt")
    assert [(net.layer_params[li].name, w) for li, _, w in net.loss_tops] == [("loss", 1.0)]
    specs = {(n, i): s for n, i, _, s in net.param_specs}
    assert specs[("conv1_1", 1)].lr_mult == 2 and specs[("upscore2", 0)].lr_mult == 0


def test_load_reports_missing_and_unexpected_and_checks_shapes():
    case = ORACLE / "fcn" / "voc-fcn8s"
    net = from_prototxt(case / "net.prototxt")
    report = net.load_caffemodel(ORACLE / "fcn" / "voc-fcn16s" / "weights.caffemodel")
    assert "score_pool3" in report["missing"] and "upscore16" in report["unexpected"]
    from fcn_port.port.formats.caffemodel import read_weights

    w = read_weights(case / "weights.caffemodel")
    w.params["conv1_1"] = [np.zeros((5, 3, 3, 3), np.float32), w.params["conv1_1"][1]]
    with pytest.raises(NetError, match=r"layer 'conv1_1': shape \(5, 3, 3, 3\) in the file"):
        net.load_caffemodel(w)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_save_reload_trace_and_compile(tmp_path):
    case = ORACLE / "fcn" / "voc-fcn8s"
    net = from_prototxt(case / "net.prototxt", weights=case / "weights.caffemodel").eval()
    x = torch.from_numpy(np.load(case / "blobs.npz")["input/data"])
    want = net(data=x)["score"]
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    again = from_prototxt(case / "net.prototxt")
    again.load_state_dict(torch.load(tmp_path / "sd.pt"))
    assert torch.equal(again(data=x)["score"], want)
    torch.save(net, tmp_path / "net.pt")
    whole = torch.load(tmp_path / "net.pt", weights_only=False)
    assert torch.equal(whole(data=x)["score"], want)
    class Score(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, d):
            return self.net(data=d)["score"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit is deprecated in torch 2.13 and warns about shapes
        traced = torch.jit.trace(Score(), (x,))
    assert torch.allclose(traced(x), want, atol=1e-6)
    compiled = torch.compile(net)
    assert blob_error(compiled(data=x)["score"].detach(), want.detach()) <= 1e-5


def test_duplicate_layer_names_are_an_error():
    from fcn_port.port.errors import NetError
    from fcn_port.port.net import CaffeNet
    from fcn_port.port.formats.proto import caffe_pb2
    from fcn_port.port.formats.text import parse_text

    net, _ = parse_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }'
                        'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }'
                        'layer { name: "r" type: "ReLU" bottom: "y" top: "z" }',
                        caffe_pb2.NetParameter)
    with pytest.raises(NetError, match="layer 'r' .*names must be unique"):
        CaffeNet(net)
