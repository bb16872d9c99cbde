"""The hand-written FCN models against real Caffe: every oracle FCN case, layer by layer."""
import hashlib

import numpy as np
import pytest
import torch

from conftest import ORACLE, case_params, oracle_cases
from fcn_port import models
from fcn_port.models.checkpoint import ConvertError, expected_shapes
from fcn_port.models.parity import run_model_case
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.port.formats.text import read_net

FCN_CASES = case_params("fcn", "weights.caffemodel")
SMALL = dict(widths=(2, 4, 4, 6, 6), fc=7)  # even: AlexNet has group 2


@pytest.mark.parametrize("case", FCN_CASES)
@pytest.mark.parametrize("model", ["auto", "official"])
def test_model_matches_caffe_on_every_top(case, model):
    name = {"voc-fcn32s-learned-deconv": "voc-fcn32s", "voc-fcn8s-train": "voc-fcn8s"}.get(
        case.name, case.name) if model == "official" else "auto"
    r = run_model_case(case, name)
    caffe_layers = {k.split("/")[1] for k in np.load(case / "blobs.npz").files
                    if k.startswith("top/") and "split" not in k and "drop" not in k}
    # every layer Caffe recorded is compared, for the binary and the HDF5 weights, but the
    # Inputs, the Splits Caffe inserted, Dropout (identity in TEST) and the loss
    assert r["compared"] == 2 * len(caffe_layers - {"data", "label", "loss"}), r
    assert r["pass"] and r["worst"] <= 1e-5, r


@pytest.mark.parametrize("case", FCN_CASES)
def test_model_layers_are_caffes(case):
    """The model's layer list is Caffe's net (names, types, blobs, offsets), and its state_dict
    keys and shapes are the caffemodel's, one to one."""
    weights = read_weights(case / "weights.caffemodel")
    net = models.load(case / "weights.caffemodel")
    caffe_net, _ = read_net(case / "net.prototxt")
    ours = {lp.name: lp for lp in models.net_param(net.cfg, "model").layer}
    for lp in caffe_net.layer:
        if lp.type in ("Input", "SoftmaxWithLoss"):
            continue
        mine = ours[lp.name]
        assert (mine.type, list(mine.bottom), list(mine.top)) == \
            (lp.type, list(lp.bottom), list(lp.top)), lp.name
        if lp.type == "Crop":
            assert list(mine.crop_param.offset) == list(lp.crop_param.offset)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in weights.state_dict().items()}


def test_official_crop_offsets_are_derived():
    offsets = {name: [(lp.name, list(lp.crop_param.offset)) for lp in
                      models.net_param(cfg, "deploy").layer if lp.type == "Crop"]
               for name, cfg in models.OFFICIAL.items()}
    assert offsets["voc-fcn32s"] == [("score", [19])]
    assert offsets["voc-fcn16s"] == [("score_pool4c", [5]), ("score", [27])]
    assert offsets["voc-fcn8s"] == [("score_pool4c", [5]), ("score_pool3c", [9]), ("score", [31])]
    assert offsets["voc-fcn8s-atonce"] == offsets["voc-fcn8s"]
    assert offsets["voc-fcn-alexnet"] == [("score", [18])]
    assert offsets["siftflow-fcn16s"] == [("score_pool4_semc", [5]), ("score_sem", [27]),
                                          ("score_pool4_geoc", [5]), ("score_geo", [27])]
    assert offsets["nyud-fcn32s-color-hha"] == [("score", [19])]


def test_full_size_parameter_counts():
    """Counts from FCN_FACTS (worked out from the official nets, not from this code)."""
    def count(name):
        return sum(int(np.prod(s)) for s in expected_shapes(models.OFFICIAL[name]).values())
    assert count("voc-fcn32s") == 136_152_917
    assert count("voc-fcn16s") == 134_815_994
    assert count("voc-fcn8s") == 134_489_759
    fc6 = expected_shapes(models.OFFICIAL["voc-fcn8s"])
    assert fc6["fc6.0"] == (4096, 512, 7, 7) and fc6["fc6.1"] == (4096,)


@pytest.mark.parametrize("name", list(models.OFFICIAL))
def test_every_official_model_runs_at_any_size(name):
    torch.manual_seed(0)
    net = models.build(name, **SMALL)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    cfg = net.cfg
    inputs = [torch.randn(2, 1 if i == "depth" else 3, 37, 53) for i in cfg.inputs]
    with torch.no_grad():
        out = net(*inputs)
    out = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape) for o in out] == [(2, n, 37, 53) for _, n in cfg.heads]
    assert all(torch.isfinite(o).all() for o in out)


def test_dropout_follows_train_and_eval():
    net = models.build("voc-fcn32s", **SMALL)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        a, b = net(x), net(x)
        net.train()
        c = net(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_detect_reads_family_classes_and_widths():
    cases = {c.name: read_weights(c / "weights.caffemodel").params for c in oracle_cases("fcn")}
    cfg = models.detect(cases["voc-fcn32s-learned-deconv"])
    assert (cfg.name, cfg.classes, cfg.widths, cfg.fc) == ("voc-fcn32s", 8, (4, 8, 16, 32, 32), 64)
    assert models.detect(cases["voc-fcn8s-atonce"]).name == "voc-fcn8s-atonce"
    assert models.detect(cases["voc-fcn16s"]).name == "voc-fcn16s"
    assert models.detect(read_weights(ORACLE / "layers/crop/weights.caffemodel").params) is None
    # the other families, from the layer names of nets built here
    for name in ("voc-fcn-alexnet", "siftflow-fcn8s", "nyud-fcn32s-color-d",
                 "nyud-fcn32s-color-hha", "pascalcontext-fcn16s"):
        with torch.device("meta"):
            sd = models.build(name, **SMALL).state_dict()
        params = {}
        for k, v in sd.items():
            params.setdefault(k.rsplit(".", 1)[0], []).append(np.empty(v.shape, np.float32))
        got = models.detect(params)
        assert (got.name, got.widths, got.fc) == (name, SMALL["widths"], SMALL["fc"])


def test_convert_checkpoint_and_load(tmp_path):
    src = ORACLE / "fcn/voc-fcn8s/weights.caffemodel"
    out, meta = models.convert(str(src), str(tmp_path / "m.pt"))
    assert meta["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert (meta["model"], meta["classes"], meta["mean"]) == \
        ("voc-fcn8s", 21, [104.00699, 116.66877, 122.67892])
    net = models.load(out)
    blobs = np.load(src.parent / "blobs.npz")
    with torch.no_grad():
        score = net(torch.from_numpy(blobs["input/data"]))
    assert np.abs(score.numpy() - blobs["top/score/0"]).max() <= 1e-5 * max(
        1, np.abs(blobs["top/score/0"]).max())
    assert net.meta["source"] == "weights.caffemodel" and not net.training


def test_convert_mismatch_writes_nothing(tmp_path):
    out = tmp_path / "m.pt"
    with pytest.raises(ConvertError, match="missing blob upscore8.0"):
        models.convert(str(ORACLE / "fcn/voc-fcn16s/weights.caffemodel"), str(out),
                       model="voc-fcn8s")
    with pytest.raises(ConvertError, match="give --prototxt"):
        models.convert(str(ORACLE / "layers/crop/weights.caffemodel"), str(out))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_interpreter_checkpoint_for_other_nets(tmp_path):
    case = ORACLE / "layers/conv_group_dilation"
    out, meta = models.convert(str(case / "weights.caffemodel"), str(tmp_path / "c.pt"),
                               prototxt=str(case / "net.prototxt"))
    assert meta["kind"] == "caffenet"
    net = models.load(out)
    blobs = np.load(case / "blobs.npz")
    feed = {b: torch.from_numpy(blobs[f"input/{b}"]) for b in net.inputs}
    with torch.no_grad():
        tops = net(record=True, **feed)["_tops"]
    for key in (k for k in blobs.files if k.startswith("top/")):
        _, layer, i = key.split("/")
        np.testing.assert_allclose(tops[(layer, int(i))].numpy(), blobs[key], atol=1e-5)


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"a": 1}, bad)
    with pytest.raises(ConvertError, match="not an fcn-port checkpoint"):
        models.load(bad)
    with pytest.raises(ConvertError, match="cannot read"):
        models.load(tmp_path / "missing.pt")


def test_factories_and_build_options():
    assert models.voc_fcn8s.__name__ == "voc_fcn8s"
    with torch.device("meta"):
        net = models.siftflow_fcn32s(classes=[5, 2], widths=(2, 2, 2, 2, 2), fc=3)
    assert net.cfg.heads == (("_sem", 5), ("_geo", 2))
    assert net.state_dict()["score_fr_geo.0"].shape == (2, 3, 1, 1)
    with pytest.raises(ConvertError, match="2 score head"):
        models.build("siftflow-fcn32s", classes=5)


@pytest.mark.parametrize("name", list(models.OFFICIAL))
def test_every_official_net_instantiates_in_the_interpreter(name):
    """Each split the `net` verb writes sets up in CaffeNet (shapes checked by Caffe's rules),
    and its score blobs come out at the input's size."""
    from fcn_port.port.net import CaffeNet

    cfg = models.OFFICIAL[name].replace(**SMALL)
    train, test = cfg.solver["splits"]
    size = (1, 1, 61, 83)
    for split, phase in ((train, "TRAIN"), (test, "TEST"), ("deploy", "TEST")):
        shapes = {b: (1, 1 if b in ("depth", "label", "sem", "geo") else 3, 61, 83)
                  for b in ("data", "color", "hha", "depth", "label", "sem", "geo")}
        with torch.device("meta"):
            net = CaffeNet(models.net_param(cfg, split), phase, input_shapes=shapes)
        for out, (_, n) in zip(cfg.outputs, cfg.heads):
            assert net.blob_shapes[out] == (1, n) + size[2:], (split, out)
        losses = [lp.name for lp in net.layer_params if lp.type == "SoftmaxWithLoss"]
        assert losses == ([] if split == "deploy" else ["loss", "loss_geo"][:len(cfg.heads)])


def test_torch_hub_entry_points_match_the_zoo():
    import subprocess
    import sys

    root = ORACLE.parents[2]
    hub = subprocess.run([sys.executable, "-c", f"""
import torch, sys
net = torch.hub.load({str(root)!r}, "voc_fcn8s", source="local", trust_repo=True,
                     weights={str(ORACLE / 'fcn/voc-fcn8s/weights.caffemodel')!r})
import runpy
names = [n for n, v in runpy.run_path({str(root / "hubconf.py")!r}).items() if "fcn" in n and not n.startswith("_")]
print(type(net).__name__, net.cfg.widths, len(names))
"""], capture_output=True, text=True, cwd="/")
    assert hub.returncode == 0, hub.stderr
    assert hub.stdout.split() == ["FCN", "(4,", "8,", "16,", "32,", "32)", str(len(models.OFFICIAL))]


def test_build_with_weights_takes_their_geometry_or_says_why_not():
    src = ORACLE / "fcn/voc-fcn32s-learned-deconv/weights.caffemodel"
    net = models.build("voc-fcn32s", weights=src)
    assert (net.cfg.classes, net.cfg.widths) == (8, (4, 8, 16, 32, 32))
    with pytest.raises(ConvertError, match="score_fr.0 .*needs"):
        models.build("voc-fcn32s", classes=21, widths=(4, 8, 16, 32, 32), fc=64, weights=src)
    with pytest.raises(ConvertError, match="does not fit voc-fcn8s"):
        models.build("voc-fcn8s", weights=src)
