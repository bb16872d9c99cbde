"""Crop offsets from coord_map: real-Caffe FCN files, hand-written nets, errors, the CLI verb."""
import json
import shutil
import subprocess
import sys
from fractions import Fraction

import pytest

from fcn_port.port import coord_map as cm
from fcn_port.cli import main
from fcn_port.port.errors import NetError
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import parse_text, read_net
from helpers import case_params

FCN_CASES = case_params("fcn", needs="net.prototxt")
EXPECTED = {  # from the official generated prototxts (FCN_FACTS.md, "Crop offsets")
    "voc-fcn32s": {"score": 19},
    "voc-fcn32s-learned-deconv": {"score": 19},
    "voc-fcn16s": {"score_pool4c": 5, "score": 27},
    "voc-fcn8s": {"score_pool4c": 5, "score_pool3c": 9, "score": 31},
    "voc-fcn8s-atonce": {"score_pool4c": 5, "score_pool3c": 9, "score": 31},
    "voc-fcn8s-train": {"score_pool4c": 5, "score_pool3c": 9, "score": 31},
}


# ---- prototxt text builders (the nets below are written from FCN's net.py) ------------------

def conv(name, bottom, ks, stride=1, pad=0, type="Convolution", relu=True, extra=""):
    text = (f'layer {{ name: "{name}" type: "{type}" bottom: "{bottom}" top: "{name}" '
            f'convolution_param {{ num_output: 4 kernel_size: {ks} stride: {stride} pad: {pad} '
            f'{extra}}} }}\n')
    if relu:
        text += (f'layer {{ name: "relu_{name}" type: "ReLU" bottom: "{name}" '
                 f'top: "{name}" }}\n')
    return text


def pool(name, bottom, ks=2, stride=2):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
            f'pooling_param {{ pool: MAX kernel_size: {ks} stride: {stride} }} }}\n')


def layer(name, type, bottoms, extra=""):
    bots = " ".join(f'bottom: "{b}"' for b in bottoms)
    return f'layer {{ name: "{name}" type: "{type}" {bots} top: "{name}" {extra}}}\n'


def crop(name, blob, ref, offset):
    return layer(name, "Crop", [blob, ref], f"crop_param {{ axis: 2 offset: {offset} }} ")


def upscore(name, bottom, ks, stride):
    return conv(name, bottom, ks, stride, type="Deconvolution", relu=False,
                extra="bias_term: false ")


def vgg(data, s=""):
    """VGG16 up to drop7 (suffix ``s`` as in nyud color-hha); returns (text, drop7 name)."""
    t, b = "", data
    for blk, n in enumerate((2, 2, 3, 3, 3), 1):
        for i in range(1, n + 1):
            t += conv(f"conv{blk}_{i}{s}", b, 3, pad=100 if (blk, i) == (1, 1) else 1)
            b = f"conv{blk}_{i}{s}"
        t += pool(f"pool{blk}{s}", b)
        b = f"pool{blk}{s}"
    t += conv(f"fc6{s}", b, 7) + layer(f"drop6{s}", "Dropout", [f"fc6{s}"])
    t += conv(f"fc7{s}", f"drop6{s}", 1) + layer(f"drop7{s}", "Dropout", [f"fc7{s}"])
    return t, f"drop7{s}"


INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 64 dim: 64 } } }\n'

ALEXNET = (INPUT + conv("conv1", "data", 11, 4, 100) + pool("pool1", "conv1", 3, 2)
           + layer("norm1", "LRN", ["pool1"], "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } ")
           + conv("conv2", "norm1", 5, pad=2, extra="group: 2 ") + pool("pool2", "conv2", 3, 2)
           + layer("norm2", "LRN", ["pool2"]) + conv("conv3", "norm2", 3, pad=1)
           + conv("conv4", "conv3", 3, pad=1) + conv("conv5", "conv4", 3, pad=1)
           + pool("pool5", "conv5", 3, 2) + conv("fc6", "pool5", 6)
           + conv("fc7", "fc6", 1) + conv("score_fr", "fc7", 1, relu=False)
           + upscore("upscore", "score_fr", 63, 32) + crop("score", "upscore", "data", 18))


def net(text):
    return parse_text(text, caffe_pb2.NetParameter)[0]


def offsets(text):
    return {r["name"]: (r["offsets"], r["ok"], r["reason"]) for r in cm.net_offsets(net(text))}


# ---- real Caffe ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", FCN_CASES)
def test_oracle_fcn_offsets_match_caffe(case):
    results = cm.net_offsets(read_net(case / "net.prototxt")[0])
    assert results and all(r["ok"] for r in results), results
    for r in results:
        assert r["axis"] == r["file_axis"] == 2
        assert r["offsets"] == r["file_offsets"]  # one offset, as pycaffe writes it
    if case.name in EXPECTED:
        assert {r["name"]: r["offsets"][0] for r in results} == EXPECTED[case.name]


@pytest.mark.parametrize("case", case_params("fcn", needs="weights.caffemodel"))
def test_offsets_from_a_caffemodel(case):
    results = cm.net_offsets(cm.load_net(case / "weights.caffemodel"))
    assert results and all(r["ok"] for r in results)  # its header has Caffe's Split layers


def test_crop_offset_while_building():
    """crop_offset sees only the layers so far, as pycaffe's crop() inside net.py does."""
    text, top = vgg("data")
    layers = list(net(INPUT + text + conv("score_fr", top, 1, relu=False)
                      + upscore("upscore", "score_fr", 64, 32)).layer)
    assert cm.crop_offset(layers, "upscore", "data") == (2, [19])
    layers += net(upscore("upscore2", "score_fr", 4, 2) + conv("score_pool4", "pool4", 1)).layer
    assert cm.crop_offset(layers, "score_pool4", "upscore2") == (2, [5])
    assert cm.crop_offset(caffe_pb2.NetParameter(layer=layers), "upscore", "data") == (2, [19])


def test_alexnet_18():
    assert offsets(ALEXNET) == {"score": ([18], True, None)}


def test_nyud_color_hha_two_towers():
    """crop(upscore, color) goes up through Eltwise(score_frcolor, score_frhha)."""
    data = ('layer { name: "data" type: "Python" top: "color" top: "hha" top: "label" '
            'python_param { module: "nyud_layers" layer: "NYUDSegDataLayer" } }\n')
    color, c7 = vgg("color", "color")
    hha, h7 = vgg("hha", "hha")
    text = (data + color + conv("score_frcolor", c7, 1, relu=False) + hha
            + conv("score_frhha", h7, 1, relu=False)
            + layer("score_fused", "Eltwise", ["score_frcolor", "score_frhha"],
                    "eltwise_param { operation: SUM coeff: 0.5 coeff: 0.5 } ")
            + upscore("upscore", "score_fused", 64, 32) + crop("score", "upscore", "color", 19))
    assert offsets(text) == {"score": ([19], True, None)}
    layers = net(text).layer
    assert cm.crop_offset(layers, "upscore", "hha") == (2, [19])  # the second bottom's tower
    with pytest.raises(NetError, match="'score_frhha' and 'score_frcolor' meet at no common "
                                       "blob.*not connected"):  # color and hha are two roots
        cm.crop_offset(layers, "score_frhha", "score_frcolor")


def test_siftflow_two_heads_and_phases():
    """Two heads on one body, TRAIN and TEST data layers; every crop of both heads checks."""
    data = "".join(
        f'layer {{ name: "data" type: "Python" top: "data" top: "sem" top: "geo" '
        f'include {{ phase: {p} }} python_param {{ module: "siftflow_layers" '
        f'layer: "SIFTFlowSegDataLayer" }} }}\n' for p in ("TRAIN", "TEST"))
    text, top = vgg("data")
    text = data + text
    for h in ("sem", "geo"):
        text += (conv(f"score_fr_{h}", top, 1, relu=False)
                 + upscore(f"upscore2_{h}", f"score_fr_{h}", 4, 2)
                 + conv(f"score_pool4_{h}", "pool4", 1, relu=False)
                 + crop(f"score_pool4_{h}c", f"score_pool4_{h}", f"upscore2_{h}", 5)
                 + layer(f"fuse_pool4_{h}", "Eltwise", [f"upscore2_{h}", f"score_pool4_{h}c"])
                 + upscore(f"upscore_pool4_{h}", f"fuse_pool4_{h}", 4, 2)
                 + conv(f"score_pool3_{h}", "pool3", 1, relu=False)
                 + crop(f"score_pool3_{h}c", f"score_pool3_{h}", f"upscore_pool4_{h}", 9)
                 + layer(f"fuse_pool3_{h}", "Eltwise", [f"upscore_pool4_{h}", f"score_pool3_{h}c"])
                 + upscore(f"upscore8_{h}", f"fuse_pool3_{h}", 16, 8)
                 + crop(f"score_{h}", f"upscore8_{h}", "data", 31)
                 + layer(f"loss_{h}", "SoftmaxWithLoss", [f"score_{h}", h]))
    results = cm.net_offsets(net(text))
    assert [(r["name"], r["offsets"], r["ok"], r["phase"]) for r in results] == [
        (f"{n}_{h}{c}", [o], True, "TEST") for h in ("sem", "geo")
        for n, c, o in (("score_pool4", "c", 5), ("score_pool3", "c", 9), ("score", "", 31))]


def test_in_place_rebinding_uses_the_latest_producer():
    # 'x' is first a stride-2 pool, then rebound by an identity conv on data
    text = INPUT + pool("x", "data") + conv("y", "data", 3, pad=1, relu=False)
    layers = list(net(text).layer)
    layers[-1].top[0] = "x"
    assert cm.crop_offset(layers, "x", "data") == (2, [0])
    with pytest.raises(NetError, match="scale 2 is not 1"):
        cm.crop_offset(layers[:2], "x", "data")


def test_per_axis_offsets_and_layer_maps():
    text = INPUT + layer("c", "Convolution", ["data"],
                         "convolution_param { num_output: 1 kernel_h: 3 kernel_w: 7 } ")
    assert cm.crop_offset(net(text).layer, "data", "c") == (2, [1, 3])
    half = Fraction(1, 2)
    dil = net(conv("d", "data", 3, pad=2, relu=False, extra="dilation: 2 ")).layer[0]
    assert cm.layer_map(dil) == (2, (1,), (0,))  # effective kernel 5, pad 2: centred
    pl = net(pool("p", "data", 3, 2)).layer[0]
    assert cm.layer_map(pl) == (2, (half,), (-half,))
    dc = net(upscore("u", "data", 4, 2)).layer[0]
    assert cm.layer_map(dc) == (2, (2,), (Fraction(3, 2),))
    cr = net(crop("k", "a", "b", 7)).layer[0]
    assert cm.layer_map(cr) == (2, (1,), (-7,))
    assert cm.layer_map(net(layer("s", "Scale", ["a"])).layer[0]) == cm.IDENTITY
    with pytest.raises(NetError, match="'g' \\(Pooling\\).*global pooling"):
        cm.layer_map(net(layer("g", "Pooling", ["a"], "pooling_param { global_pooling: true } "))
                     .layer[0])


# ---- errors ----------------------------------------------------------------------------------

def test_undefined_map_names_the_layer():
    text = (INPUT + conv("conv1", "data", 3, pad=1)
            + layer("ip", "InnerProduct", ["conv1"], "inner_product_param { num_output: 4 } ")
            + crop("bad", "ip", "data", 0))
    (r,) = cm.net_offsets(net(text))
    assert not r["ok"] and r["offsets"] is None
    assert "'bad'" in r["reason"] and "'ip' (InnerProduct)" in r["reason"]
    with pytest.raises(NetError, match="'ip' \\(InnerProduct\\)"):
        cm.layer_map(next(lp for lp in net(text).layer if lp.name == "ip"))


def test_scale_mismatch():
    text, _ = vgg("data")
    with pytest.raises(NetError, match="crop layer 'c'.*scale 8 is not 1"):
        cm.crop_offset(net(INPUT + text).layer, "pool3", "data", name="c")


def test_non_integer_and_positive_shift():
    text = INPUT + upscore("u", "data", 2, 1) + conv("v", "data", 3, relu=False)
    layers = net(text).layer
    with pytest.raises(NetError, match="shift -0.5 is not an integer"):
        cm.crop_offset(layers, "u", "data")
    with pytest.raises(NetError, match="shift 1 is positive"):
        cm.crop_offset(layers, "v", "data")
    with pytest.raises(NetError, match="'nope' is not a top"):
        cm.crop_offset(layers, "nope", "data")


# ---- the CLI ---------------------------------------------------------------------------------

def fcn8s():
    return next(c.values[0] for c in FCN_CASES if c.values[0].name == "voc-fcn8s")


def test_cli_table(capsys):
    assert main(["offsets", str(fcn8s() / "net.prototxt")]) == 0
    out = capsys.readouterr().out
    assert "3 Crop layers" in out
    assert out.count(" OK") == 3 and "score_pool3, upscore_pool4" in out


def test_cli_json_and_caffemodel(capsys):
    assert main(["offsets", "--json", str(fcn8s() / "weights.caffemodel")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [c["offsets"] for c in report["crops"]] == [[5], [9], [31]]


def test_cli_mismatch_exits_1(tmp_path, capsys):
    path = tmp_path / "net.prototxt"
    text = (fcn8s() / "net.prototxt").read_text()
    assert text.count("offset: 5\n") == 1
    path.write_text(text.replace("offset: 5\n", "offset: 6\n"))
    assert main(["offsets", str(path)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and out.count(" OK") == 2  # the crops after it still derive
    assert main(["offsets", "--json", str(path)]) == 1
    crops = json.loads(capsys.readouterr().out)["crops"]
    assert [(c["file_offsets"], c["offsets"], c["ok"]) for c in crops] == [
        ([6], [5], False), ([9], [9], True), ([31], [31], True)]
    assert crops[2]["note"]  # the misaligned Eltwise is noticed


def test_cli_no_crops_and_bad_input(tmp_path, capsys):
    path = tmp_path / "plain.prototxt"
    path.write_text(INPUT + conv("c", "data", 3))
    assert main(["offsets", str(path)]) == 0
    assert "no Crop layers" in capsys.readouterr().out
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer { name: \n")
    for p in (bad, tmp_path / "missing.prototxt"):
        run = subprocess.run([sys.executable, "-m", "fcn_port.cli", "offsets", str(p)],
                             capture_output=True, text=True)
        assert run.returncode == 2 and run.stdout == ""
        assert run.stderr.startswith("fcn-port: error:") and run.stderr.count("\n") == 1


def test_hdf5_caffemodel_is_refused_clearly(tmp_path):
    case = fcn8s()
    h5 = tmp_path / "w.caffemodel.h5"
    shutil.copy(case / "weights.caffemodel.h5", h5)
    with pytest.raises(Exception, match="only weights"):
        cm.load_net(h5)
