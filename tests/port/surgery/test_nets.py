"""Weight surgery between nets (port/surgery/nets.py) and ``fcn-port surgery``.

Checked against ../shared/FCN_FACTS.md section 3 and the solve.py recipes; sources are real
Caffe files (the V1 oracle, the small FCN oracles) or V1 caffemodels built here the way Caffe
wrote them (legacy num/channels/height/width dims).
"""
import numpy as np
import pytest
import torch

from fcn_port import models
from fcn_port.port import surgery as S
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.cli import main
from fcn_port.port.net import CaffeNet
from fcn_port.port.formats.proto import caffe_pb2
from helpers import ORACLE, upgraded_net, upsample_filt


FCN = ORACLE / "fcn"


V1 = ORACLE / "formats" / "v1_legacy"


def _params(net, keep_vars=False):
    """{"<layer>.<i>": tensor} of a CaffeNet."""
    return {k.split(".", 1)[1]: v for k, v in net.state_dict(keep_vars=keep_vars).items()}


CONVS = "".join(f"""layer {{ name: "conv{s}_{i}" type: "Convolution" bottom: "{b}" top: "conv{s}_{i}"
  convolution_param {{ num_output: {w} kernel_size: 3 pad: {pad} }} }}
layer {{ name: "relu{s}_{i}" type: "ReLU" bottom: "conv{s}_{i}" top: "conv{s}_{i}" }}
""" + (f"""layer {{ name: "pool{s}" type: "Pooling" bottom: "conv{s}_{i}" top: "pool{s}"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
""" if i == n else "") for s, (w, n) in enumerate(zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)), 1)
    for i in range(1, n + 1)
    for b in [f"conv{s}_{i - 1}" if i > 1 else ("data" if s == 1 else f"pool{s - 1}")]
    for pad in ["{PAD}" if (s, i) == (1, 1) else 1])


VGG16 = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 ' \
        'dim: 224 dim: 224 } } }\n' + CONVS.replace("{PAD}", "1") + "".join(
    f'layer {{ name: "{n}" type: "InnerProduct" bottom: "{b}" top: "{n}" '
    f'inner_product_param {{ num_output: {k} }} }}\n'
    for n, b, k in (("fc6", "pool5", 4096), ("fc7", "fc6", 4096), ("fc8", "fc7", 1000)))


FCN32S = """layer { name: "data" type: "Python" top: "data" top: "label"
  python_param { module: "voc_layers" layer: "SBDDSegDataLayer" } }
""" + CONVS.replace("{PAD}", "100") + """
layer { name: "fc6" type: "Convolution" bottom: "pool5" top: "fc6"
  convolution_param { num_output: 4096 kernel_size: 7 } }
layer { name: "fc7" type: "Convolution" bottom: "fc6" top: "fc7"
  convolution_param { num_output: 4096 kernel_size: 1 } }
layer { name: "score_fr" type: "Convolution" bottom: "fc7" top: "score_fr"
  convolution_param { num_output: 21 kernel_size: 1 } }
layer { name: "upscore" type: "Deconvolution" bottom: "score_fr" top: "upscore"
  convolution_param { num_output: 21 kernel_size: 64 stride: 32 bias_term: false } }
layer { name: "score" type: "Crop" bottom: "upscore" bottom: "data" top: "score"
  crop_param { axis: 2 offset: 19 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
  loss_param { ignore_label: 255 normalize: false } }
"""


def test_full_size_vgg16_to_fcn32s_numbers():
    """Shapes only (meta device): VGG16's fc6 4096x25088 becomes conv 4096x512x7x7."""
    src, dst = S.param_shapes(upgraded_net(VGG16)), S.param_shapes(upgraded_net(FCN32S))
    assert src["fc6"] == [(4096, 25088), (4096,)] and dst["fc6"] == [(4096, 512, 7, 7), (4096,)]
    report = S.plan_transplant(dst, src)
    coerced = {(e.target, e.blob): (e.source_shape, e.target_shape) for e in report.select("coerced")}
    assert coerced == {("fc6", 0): ((4096, 25088), (4096, 512, 7, 7)),
                       ("fc7", 0): ((4096, 4096), (4096, 4096, 1, 1))}
    assert sum(np.prod(s) for s in dst["fc6"]) == 102_764_544 == 102_760_448 + 4096
    assert report.layers("dropped") == ["fc8"]
    assert sum(e.values for e in report.select("dropped")) == 4_097_000
    assert sum(e.values for e in report.select("copied")) == 14_714_688 + 4096 + 4096
    assert report.layers("not initialised") == ["score_fr", "upscore"]
    alex = S.plan_transplant({"fc6": [(4096, 256, 6, 6), (4096,)]},
                             {"fc6": [(4096, 9216), (4096,)]})
    assert [e.action for e in alex.entries] == ["coerced", "copied"]
    assert S.nominal_input_shapes(upgraded_net(FCN32S)) == {"data": (1, 3, 500, 500),
                                                    "label": (1, 1, 500, 500)}
    assert S.param_shapes(models.deploy_net("voc-fcn32s")) == dst  # the official deploy net


@pytest.mark.parametrize("name", ["voc-fcn8s-atonce", "siftflow-fcn16s", "nyud-fcn32s-color-d",
                                  "nyud-fcn32s-color-hha"])
def test_official_train_nets_with_python_data_layers_have_the_deploy_params(name):
    from fcn_port.models import OFFICIAL, net_param

    train = net_param(OFFICIAL[name], "trainval" if name.startswith(("sift", "nyud")) else "train")
    assert any(lp.type == "Python" for lp in train.layer)
    assert S.param_shapes(train) == S.param_shapes(models.deploy_net(name))


CLASSIFIER = """name: "tiny-vgg" input: "data" input_dim: 1 input_dim: 3 input_dim: 6 input_dim: 6
layers { name: "conv1_1" type: CONVOLUTION bottom: "data" top: "conv1_1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layers { name: "relu1_1" type: RELU bottom: "conv1_1" top: "conv1_1" }
layers { name: "pool1" type: POOLING bottom: "conv1_1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "fc6" type: INNER_PRODUCT bottom: "pool1" top: "fc6" inner_product_param { num_output: 8 } }
layers { name: "relu6" type: RELU bottom: "fc6" top: "fc6" }
layers { name: "fc7" type: INNER_PRODUCT bottom: "fc6" top: "fc7" inner_product_param { num_output: 8 } }
layers { name: "fc8" type: INNER_PRODUCT bottom: "fc7" top: "fc8" inner_product_param { num_output: 10 } }
"""


TINY_FCN = """name: "tiny-fcn" layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv1_1" type: "Convolution" bottom: "data" top: "conv1_1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1_1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc6" type: "Convolution" bottom: "pool1" top: "fc6"
  convolution_param { num_output: 8 kernel_size: 3 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "Convolution" bottom: "fc6" top: "fc7"
  convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "score_fr" type: "Convolution" bottom: "fc7" top: "score_fr"
  convolution_param { num_output: 5 kernel_size: 1 } }
layer { name: "upscore" type: "Deconvolution" bottom: "score_fr" top: "upscore"
  convolution_param { num_output: 5 kernel_size: 4 stride: 2 bias_term: false } }
"""


@pytest.fixture
def v1_classifier(tmp_path):
    """A V1 caffemodel written as Caffe wrote them: V1 layers, blobs with legacy 4-D dims."""
    rng = np.random.default_rng(2)
    net = upgraded_net(CLASSIFIER)
    out = caffe_pb2.NetParameter(name="tiny-vgg")
    arrays = {}
    for name, shapes in {"conv1_1": [(4, 3, 3, 3), (1, 1, 1, 4)], "fc6": [(1, 1, 8, 36), (1, 1, 1, 8)],
                         "fc7": [(1, 1, 8, 8), (1, 1, 1, 8)], "fc8": [(1, 1, 10, 8), (1, 1, 1, 10)]}.items():
        layer = out.layers.add(name=name)
        arrays[name] = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for a in arrays[name]:
            layer.blobs.add(num=a.shape[0], channels=a.shape[1], height=a.shape[2],
                            width=a.shape[3], data=a.reshape(-1).tolist())
    path = tmp_path / "tiny-vgg.caffemodel"
    path.write_bytes(out.SerializeToString())
    (tmp_path / "tiny-vgg.prototxt").write_text(CLASSIFIER)
    (tmp_path / "tiny-fcn.prototxt").write_text(TINY_FCN)
    return path, net, arrays


def test_v1_fc_to_conv_transplant_runs_like_the_classifier(v1_classifier, tmp_path):
    path, cls_net, arrays = v1_classifier
    params, report = S.transplant_net(path, upgraded_net(TINY_FCN))
    acts = {(e.target or e.source, e.blob): e.action for e in report.entries}
    assert acts[("conv1_1", 1)] == "copied"  # legacy 1x1x1x4 bias loads in place: not a coercion
    assert acts[("fc6", 0)] == acts[("fc7", 0)] == "coerced"
    assert acts[("fc8", 0)] == acts[("fc8", 1)] == "dropped"
    assert report.layers("not initialised") == ["score_fr", "upscore"]
    assert report.layers("interpolated") == ["upscore"]
    out = tmp_path / "fcn.caffemodel"
    S.save(params, out, net=upgraded_net(TINY_FCN))
    fcn = CaffeNet(upgraded_net(TINY_FCN))
    assert fcn.load_caffemodel(str(out), strict=True)["missing"] == []
    sd = _params(fcn)
    assert torch.equal(sd["fc6.0"], torch.from_numpy(arrays["fc6"][0].reshape(8, 4, 3, 3)))
    assert torch.equal(sd["fc7.0"], torch.from_numpy(arrays["fc7"][0].reshape(8, 8, 1, 1)))
    assert torch.equal(sd["conv1_1.1"], torch.from_numpy(arrays["conv1_1"][1].reshape(4)))
    assert not sd["score_fr.0"].any() and torch.equal(sd["upscore.0"][2, 2], S.bilinear_kernel(4))
    cls = CaffeNet(cls_net)
    cls.load_caffemodel(str(path))
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    want = cls(data=x, tops=["fc7"])["fc7"]
    got = fcn(data=x, tops=["fc7"])["fc7"]
    assert got.shape == (1, 8, 1, 1) and torch.allclose(got.reshape(1, 8), want, atol=1e-5)


def test_real_v1_file_fc6_becomes_a_conv_caffe_agrees_with():
    net = upgraded_net(V1.joinpath("net.prototxt").read_text().replace(
        'type: INNER_PRODUCT bottom: "pool1" top: "fc6"\n  inner_product_param { num_output: 6 }',
        'type: CONVOLUTION bottom: "pool1" top: "fc6"\n  '
        'convolution_param { num_output: 6 kernel_h: 109 kernel_w: 111 }'))
    params, report = S.transplant_net(V1 / "weights.caffemodel", net, interp_layers=None)
    assert [(e.target, e.blob, e.action, e.source_shape, e.target_shape) for e in report.entries
            if e.target == "fc6"] == [("fc6", 0, "coerced", (6, 60495), (6, 5, 109, 111)),
                                      ("fc6", 1, "copied", (6,), (6,))]
    fcn = CaffeNet(net)
    with torch.no_grad():
        for k, p in _params(fcn, keep_vars=True).items():
            name, i = k.rsplit(".", 1)
            p.copy_(torch.from_numpy(params[name][int(i)]))
    blobs = np.load(V1 / "blobs.npz")
    with torch.no_grad():
        got = fcn(data=torch.from_numpy(blobs["input/data"]), tops=["fc6"])["fc6"]
    assert np.allclose(got.reshape(1, 6).numpy(), blobs["top/fc6/0"], rtol=1e-4, atol=1e-4)


def test_count_mismatch_is_an_error_naming_layer_blob_and_shapes():
    with pytest.raises(S.SurgeryError) as e:
        S.transplant_net(FCN / "voc-fcn32s-learned-deconv" / "weights.caffemodel",
                         FCN / "voc-fcn16s" / "net.prototxt")
    msg = str(e.value)
    for words in ("weights.caffemodel", "blob 0 of layer 'score_fr'", "(8, 64, 1, 1)",
                  "(21, 64, 1, 1)", "repeat or truncate"):
        assert words in msg


def test_32s_to_16s_with_expanded_score_layer(tmp_path):
    src = read_weights(FCN / "voc-fcn32s-learned-deconv" / "weights.caffemodel")
    params, report = S.transplant_net(src, FCN / "voc-fcn16s" / "net.prototxt", expand=["score_fr"])
    assert report.layers("not initialised") == ["upscore2", "score_pool4", "upscore16"]
    assert report.layers("dropped") == ["upscore"]
    assert np.array_equal(params["score_fr"][0][:8], src.params["score_fr"][0])
    assert not params["score_fr"][0][8:].any() and not params["score_pool4"][0].any()


def test_16s_to_8s_loads_exactly_what_flat_copies_predict(tmp_path):
    src = read_weights(FCN / "voc-fcn16s" / "weights.caffemodel")
    net = S.resolve_net(FCN / "voc-fcn8s" / "net.prototxt")
    params, report = S.transplant_net(src, net)
    assert report.layers("not initialised") == ["upscore_pool4", "score_pool3", "upscore8"]
    assert report.layers("dropped") == ["upscore16"] and not report.select("coerced")
    out = tmp_path / "fcn8s.caffemodel.h5"
    S.save(params, out, net=net)
    fcn8s = CaffeNet(net)
    fcn8s.load_caffemodel(str(out), strict=True)
    sd = _params(fcn8s)
    for name, blobs in src.params.items():
        if name != "upscore16":
            for i, a in enumerate(blobs):
                want = upsample_filt(4) if name == "upscore2" else None  # re-interpolated, as solve.py does
                got = sd[f"{name}.{i}"].numpy()
                assert np.array_equal(got if want is None else got[3, 3], a if want is None else want)
    assert not sd["score_pool3.0"].any() and np.array_equal(sd["upscore8.0"][1, 1], upsample_filt(16))
    assert not sd["upscore8.0"][1, 2].any()


def test_untouched_layers_keep_their_fillers_and_suffix_transplants_chain():
    net = S.resolve_net(FCN / "voc-fcn8s-atonce" / "net.prototxt")
    params, report = S.transplant_net(FCN / "voc-fcn8s" / "weights.caffemodel", net)
    assert report.layers("not initialised") == ["scale_pool4", "scale_pool3"]
    assert np.all(params["scale_pool4"][0] == np.float32(0.01))
    assert np.all(params["scale_pool3"][0] == np.float32(0.0001))
    # color-HHA: two towers from two nets, the second starting from the first's result
    a, b = {"conv": [np.ones((2, 1)), np.ones(2)]}, {"conv": [np.full((2, 1), 2.0), np.zeros(2)]}
    target = {"convcolor": [(2, 1), (2,)], "convhha": [(2, 1), (2,)], "fuse": [(1,)]}
    first, r1 = S.transplant(target, a, "color")
    second, r2 = S.transplant(first, b, suffix="hha")
    assert r1.layers("not initialised") == ["convhha", "fuse"] and r1.layers("copied") == ["convcolor"]
    assert second["convcolor"][0].tolist() == [[1], [1]] and second["convhha"][0].tolist() == [[2], [2]]


def test_a_model_name_means_the_model_even_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    from fcn_port.models import deploy_net
    from fcn_port.port.errors import UserInputError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "voc-fcn8s").mkdir()            # what `fcn-port net voc-fcn8s -o voc-fcn8s` makes
    net = S.resolve_net("voc-fcn8s", by_name=deploy_net)
    assert net == deploy_net("voc-fcn8s")
    # a path is written as one; a plain name no model has is read as a file when there is one
    (tmp_path / "voc-fcn8s" / "train.prototxt").write_text(
        (FCN / "voc-fcn8s" / "net.prototxt").read_text())
    assert S.resolve_net("./voc-fcn8s/train.prototxt", by_name=deploy_net) == \
        S.resolve_net(FCN / "voc-fcn8s" / "net.prototxt")
    (tmp_path / "mynet").write_text((FCN / "voc-fcn8s" / "net.prototxt").read_text())
    assert S.resolve_net("mynet", by_name=deploy_net) == S.resolve_net(tmp_path / "mynet")
    with pytest.raises(UserInputError):
        S.resolve_net("voc-fcn9s", by_name=deploy_net)


def test_cli_transplant_end_to_end(tmp_path, capsys):
    out = tmp_path / "out.caffemodel"
    rc = main(["surgery", "transplant", str(FCN / "voc-fcn16s" / "weights.caffemodel"),
               "--net", str(FCN / "voc-fcn8s" / "net.prototxt"), "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and out.exists()
    for words in ("copied", "dropped          upscore16[0]", "not initialised  score_pool3[0]",
                  "interpolated", f"wrote {out}"):
        assert words in text
    CaffeNet(S.resolve_net(FCN / "voc-fcn8s" / "net.prototxt")).load_caffemodel(str(out), strict=True)


def test_cli_expand_interp_and_color_d(tmp_path, capsys, v1_classifier):
    learned = str(FCN / "voc-fcn32s-learned-deconv" / "weights.caffemodel")
    out = tmp_path / "wide.caffemodel"
    assert main(["surgery", "expand-score", learned, "--layer", "score_fr", "--classes", "12",
                 "-o", str(out)]) == 0
    wide = read_weights(out)
    assert wide.params["score_fr"][0].shape == (12, 64, 1, 1)
    assert [lp.convolution_param.num_output for lp in wide.net.layer if lp.name == "score_fr"] == [12]
    out16 = tmp_path / "16s.caffemodel"
    assert main(["surgery", "expand-score", learned, "--layer", "score_fr", "--net",
                 str(FCN / "voc-fcn16s" / "net.prototxt"), "-o", str(out16)]) == 0
    assert main(["surgery", "interp", str(out16), "--layers", "upscore2", "-o", str(out)]) == 0
    assert np.array_equal(read_weights(out).params["upscore2"][0][5, 5], upsample_filt(4))
    color_d = TINY_FCN.replace(  # NYUD color-D: Python data layer (color, depth, label), Concat
        'name: "data" type: "Input" top: "data"\n  input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } }',
        'name: "color" type: "Python" top: "color" top: "depth" top: "label"\n  python_param { '
        'module: "nyud_layers" layer: "NYUDSegDataLayer" } }\nlayer { name: "data" type: "Concat" '
        'bottom: "color" bottom: "depth" top: "data"').replace('"conv1_1" type', '"conv1_1_bgrd" type')
    (tmp_path / "color-d.prototxt").write_text(color_d)
    path, _, arrays = v1_classifier
    capsys.readouterr()
    assert main(["surgery", "color-d", str(path), "--net", str(tmp_path / "color-d.prototxt"),
                 "--no-interp", "-o", str(out)]) == 0
    assert "color-d          conv1_1 -> conv1_1_bgrd[0]" in capsys.readouterr().out
    w = read_weights(out).params["conv1_1_bgrd"][0]
    assert w.shape == (4, 4, 3, 3) and np.array_equal(w[:, 3], np.mean(arrays["conv1_1"][0], axis=1))


@pytest.mark.parametrize("argv, words", [
    (["transplant", "LEARNED", "--net", "NET16"], "blob 0 of layer 'score_fr'"),
    (["transplant", "MISSING", "--net", "NET16"], "cannot open"),
    (["interp", "LEARNED", "--layers", "score_fr"], "score_fr"),
    (["transplant", "LEARNED", "--net", "NET16", "--expand", "nope"], "no param layer 'nope'"),
])
def test_cli_bad_input_gives_one_line_and_no_file(argv, words, tmp_path, capsys):
    subs = {"LEARNED": str(FCN / "voc-fcn32s-learned-deconv" / "weights.caffemodel"),
            "NET16": str(FCN / "voc-fcn16s" / "net.prototxt"), "MISSING": str(tmp_path / "no.caffemodel")}
    out = tmp_path / "out" / "x.caffemodel"
    out.parent.mkdir()
    assert main(["surgery"] + [subs.get(a, a) for a in argv] + ["-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcn-port: error:") and err.count("\n") == 1 and words in err
    assert list(out.parent.iterdir()) == []
