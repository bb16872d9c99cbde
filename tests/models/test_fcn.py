"""The hand-written FCN models (models/fcn.py) against real Caffe: every oracle FCN case, layer
by layer; geometry, sizes, train/eval and build options.
"""
import numpy as np
import pytest
import torch

from fcn_port import models
from fcn_port.models.checkpoint import ConvertError, expected_shapes
from fcn_port.models.parity import run_model_case
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.port.formats.text import read_net
from helpers import ORACLE, case_params


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


def test_factories_and_build_options():
    assert models.voc_fcn8s.__name__ == "voc_fcn8s"
    with torch.device("meta"):
        net = models.siftflow_fcn32s(classes=[5, 2], widths=(2, 2, 2, 2, 2), fc=3)
    assert net.cfg.heads == (("_sem", 5), ("_geo", 2))
    assert net.state_dict()["score_fr_geo.0"].shape == (2, 3, 1, 1)
    with pytest.raises(ConvertError, match="2 score head"):
        models.build("siftflow-fcn32s", classes=5)


def test_build_with_weights_takes_their_geometry_or_says_why_not():
    src = ORACLE / "fcn/voc-fcn32s-learned-deconv/weights.caffemodel"
    net = models.build("voc-fcn32s", weights=src)
    assert (net.cfg.classes, net.cfg.widths) == (8, (4, 8, 16, 32, 32))
    with pytest.raises(ConvertError, match="score_fr.0 .*needs"):
        models.build("voc-fcn32s", classes=21, widths=(4, 8, 16, 32, 32), fc=64, weights=src)
    with pytest.raises(ConvertError, match="does not fit voc-fcn8s"):
        models.build("voc-fcn8s", weights=src)
