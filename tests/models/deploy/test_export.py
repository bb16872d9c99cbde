"""Export back to Caffe (caffemodel, HDF5, deploy prototxt) and to ONNX.

The parity tests run what was exported through the interpreter (Caffe's semantics, strict
loading) on the oracle input and compare with the output real Caffe computed for the original
weights; the byte tests compare with the caffemodel files real Caffe wrote.
"""
import hashlib
import json

import h5py
import numpy as np
import pytest
import torch

from fcn_port import models
from fcn_port.models.deploy.export import export
from fcn_port.port.net import to_proto
from fcn_port.models.deploy.onnx import traceable
from fcn_port import cli
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.port.errors import NetError
from fcn_port.port.net import CaffeNet, from_prototxt
from fcn_port.port.formats.text import read_net
from helpers import blob_error, case_params, oracle_cases


FCN_CASES = case_params("fcn", needs="weights.caffemodel")
RTOL = 1e-5


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    return blob_error(a, b)


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{case name: (case dir, checkpoint, binary report, hdf5 report)} for every FCN case."""
    out = {}
    for case in oracle_cases("fcn", needs="weights.caffemodel"):
        d = tmp_path_factory.mktemp(case.name)
        ckpt, _ = models.convert(str(case / "weights.caffemodel"), str(d / "model.pt"))
        binary = export(ckpt, d / "x.caffemodel", prototxt=d / "deploy.prototxt")
        hdf5 = export(ckpt, d / "x.caffemodel.h5", h5=True)
        out[case.name] = case, ckpt, binary, hdf5
    return out


@pytest.mark.parametrize("case", FCN_CASES)
@pytest.mark.parametrize("fmt", ["binary", "hdf5"])
def test_exported_pair_runs_like_real_caffe(case, fmt, exported):
    _, _, binary, hdf5 = exported[case.name]
    report = binary if fmt == "binary" else hdf5
    blobs = np.load(case / "blobs.npz")
    x = torch.from_numpy(blobs["input/data"])
    net = CaffeNet(read_net(binary["prototxt"])[0], input_shapes={"data": tuple(x.shape)})
    loaded = net.load_caffemodel(report["caffemodel"], strict=True)
    assert not loaded["missing"] and not loaded["unexpected"]
    with torch.no_grad():
        score = net(data=x)["score"]
    assert _rel(score, blobs["top/score/0"]) < RTOL


@pytest.mark.parametrize("case", FCN_CASES)
def test_export_is_what_net_toproto_writes(case, exported):
    _, ckpt, binary, _ = exported[case.name]
    ours, caffe = read_weights(binary["caffemodel"]), read_weights(case / "weights.caffemodel")
    assert ours.version == "V2" and ours.upgrades == []
    assert list(ours.params) == list(caffe.params)  # the same param layers, in net order
    for name, blobs in caffe.params.items():
        assert len(ours.params[name]) == len(blobs)
        for a, b in zip(ours.params[name], blobs):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    kinds = {lp.name: lp.type for lp in caffe.net.layer}
    theirs = [lp.name for lp in caffe.net.layer if lp.type == "Input"]
    if len(theirs) == 1:  # convert -> export keeps the source's Input layer name (Caffe's: data)
        assert [lp.name for lp in ours.net.layer if lp.type == "Input"] == theirs == ["data"]
    for lp in ours.net.layer:  # every layer, Splits included, phase TEST as Net::Init sets it
        assert lp.phase == 1 and kinds.get(lp.name, lp.type) == lp.type
    assert [lp.type for lp in ours.net.layer].count("Split") == \
        [lp.type for lp in caffe.net.layer].count("Split")
    # round trip: convert -> export -> convert gives identical tensors and config
    again, meta = models.convert(binary["caffemodel"], str(ckpt) + ".again.pt")
    a, b = torch.load(ckpt, weights_only=True), torch.load(again, weights_only=True)
    assert list(a["state_dict"]) == list(b["state_dict"])
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert {k: v for k, v in meta.items() if k not in ("source", "sha256")} == \
        {k: v for k, v in a["meta"].items() if k not in ("source", "sha256")}


@pytest.mark.parametrize("case", FCN_CASES)
def test_interpreter_net_exports_byte_identical_to_caffe(case, tmp_path):
    net = from_prototxt(case / "net.prototxt", weights=str(case / "weights.caffemodel"))
    report = export(net, tmp_path / "x.caffemodel")
    assert report["sha256"] == _sha(case / "weights.caffemodel")
    export(net, tmp_path / "x.h5", h5=True)
    with h5py.File(tmp_path / "x.h5") as ours, h5py.File(case / "weights.caffemodel.h5") as ref:
        assert sorted(ours["data"]) == sorted(ref["data"])  # a group per layer, as ToHDF5
        for name, group in ref["data"].items():
            assert sorted(group) == sorted(ours["data"][name])
            for i in group:
                assert np.array_equal(group[i][()], ours["data"][name][i][()])


@pytest.mark.parametrize("case", case_params("layers", needs="weights.caffemodel"))
def test_caffenet_checkpoint_exports_back(case, tmp_path):
    ckpt, meta = models.convert(str(case / "weights.caffemodel"), str(tmp_path / "c.pt"),
                                prototxt=str(case / "net.prototxt"))
    assert meta["kind"] == "caffenet"
    report = export(ckpt, tmp_path / "x.caffemodel", prototxt=tmp_path / "net.prototxt")
    assert report["sha256"] == _sha(case / "weights.caffemodel")  # loss_weight, phase, splits
    assert read_net(tmp_path / "net.prototxt")[0] == read_net(case / "net.prototxt")[0]


def test_to_proto_filters_phase_and_weights_losses():
    net = models.net_param(models.OFFICIAL["voc-fcn32s"], "val")
    test = to_proto(net, "TEST")
    loss = [lp for lp in test.layer if lp.type == "SoftmaxWithLoss"]
    assert len(loss) == 1 and list(loss[0].loss_weight) == [1.0]
    assert test.HasField("name") and all(lp.HasField("phase") for lp in test.layer)
    drop = [lp for lp in test.layer if lp.type == "Dropout"]
    assert drop and all(lp.phase == 1 for lp in drop)


def test_two_head_model_exports_against_its_deploy_net(tmp_path):
    # every param layer of the module is a layer of the deploy net, and shapes are Caffe's
    with torch.device("meta"):
        model = models.FCN(models.OFFICIAL["siftflow-fcn8s"].replace(widths=(2,) * 5, fc=4))
    model = model.to_empty(device="cpu")
    with torch.no_grad():  # uninitialised memory may hold NaN, which loading refuses
        for p in model.parameters():
            p.zero_()
    report = export(model, tmp_path / "s.caffemodel", prototxt=tmp_path / "d.prototxt")
    w = read_weights(report["caffemodel"])
    assert set(w.params) == {k.rsplit(".", 1)[0] for k in model.state_dict()}
    net = CaffeNet(read_net(tmp_path / "d.prototxt")[0])
    assert not net.load_caffemodel(w, strict=True)["unexpected"]


def test_cli_export(tmp_path, capsys, exported):
    case, ckpt, _, _ = exported["voc-fcn8s"]
    out = tmp_path / "a.caffemodel"
    assert cli.main(["export", ckpt, "-o", str(out), "--prototxt", str(tmp_path / "d.prototxt"),
                     "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["sha256"] == _sha(out) and r["layers"] == 52 and r["param_layers"] == 21
    assert cli.main(["export", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_onnx_needs_an_fcn():
    with pytest.raises(NetError, match="FCN models"):
        traceable(from_prototxt(oracle_cases("fcn")[0] / "net.prototxt"))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_stock_model_traces_at_any_size(exported):
    _, ckpt, _, _ = exported["voc-fcn8s-atonce"]
    model = models.load(ckpt)
    same, kept = traceable(model)
    assert kept == [] and same is model  # nothing swapped: the Caffe layers trace as they are
    with torch.no_grad(), pytest.warns(torch.jit.TracerWarning):  # the layers' Python checks
        traced = torch.jit.trace(model, torch.randn(1, 3, 41, 59))
        for size in [(41, 59), (1, 1), (64, 33)]:
            x = torch.randn(1, 3, *size) * 50
            assert torch.equal(traced(x), model(x))


def test_onnx_export_matches_pytorch_and_real_caffe(tmp_path, exported):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fcn_port.models.deploy.onnx import export_onnx

    case, ckpt, _, _ = exported["voc-fcn8s"]
    report = export_onnx(ckpt, tmp_path / "m.onnx", size=(41, 59))
    assert report["dynamic"] and report["inputs"] == ["data"]
    assert [c["size"] for c in report["checks"]] == [[41, 59], [54, 66]]
    assert all(c["error"] < RTOL for c in report["checks"])
    blobs = np.load(case / "blobs.npz")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    score, = session.run(None, {"data": blobs["input/data"]})
    assert _rel(score, blobs["top/score/0"]) < RTOL


def test_cli_onnx_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", "x.pt", "--size", "3"])
    assert cli.main(["export", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "is a folder" in capsys.readouterr().err
