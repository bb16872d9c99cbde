"""Preprocessing as the official data layers, the VOC palette and overlay, and fcn-port infer."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import fcn_port.models as models_pkg
from fcn_port.models import infer, preprocess, vis
from fcn_port import cli
from fcn_port.port.errors import CaffeFormatError, NetError


def _png(path, array, mode=None):
    im = Image.fromarray(np.asarray(array))
    if mode:
        im = im.convert(mode)
    im.save(path)
    return str(path)


# --- preprocessing -------------------------------------------------------------------------


def test_voc_image_exact_numbers_bgr_order(tmp_path):
    # Two RGB pixels: (R, G, B) = (200, 100, 50) and (0, 255, 10).
    path = _png(tmp_path / "a.png", np.array([[[200, 100, 50], [0, 255, 10]]], np.uint8))
    x = preprocess.preprocess_image(path)
    assert x.shape == (1, 3, 1, 2) and x.dtype == torch.float32
    # Hand-computed: channel 0 is B minus 104.00699, 1 is G minus 116.66877, 2 is R minus 122.67892.
    expected = np.array([[[-54.00699, -94.00699]],
                         [[-16.66877, 138.33123]],
                         [[77.32108, -122.67892]]], np.float32)
    np.testing.assert_array_equal(x[0].numpy(), expected)
    # The official formula: float32, [:, :, ::-1], -= np.array(mean) (float64), transpose.
    ref = np.array(Image.open(path), dtype=np.float32)[:, :, ::-1]
    ref -= np.array((104.00699, 116.66877, 122.67892))
    np.testing.assert_array_equal(x[0].numpy(), ref.transpose((2, 0, 1)))


def test_voc_means_differ_by_at_most_one_ulp_and_dtype_follows_the_layer():
    x = np.arange(256, dtype=np.float32)[None, :, None].repeat(3, 2)
    a = preprocess.to_blob(x, preprocess.VOC_MEAN, flip=False).numpy()
    b = preprocess.to_blob(x, preprocess.INFER_PY_MEAN, flip=False).numpy()
    assert 0 < np.abs(a - b).max() <= 1.6e-5
    assert preprocess.VOC_MEAN.dtype == np.float64
    for m in (preprocess.SIFTFLOW_MEAN, preprocess.PASCALCONTEXT_MEAN, preprocess.NYUD_BGR_MEAN,
              preprocess.NYUD_HHA_MEAN, preprocess.NYUD_LOGD_MEAN):
        assert m.dtype == np.float32
    assert preprocess.mean_for("siftflow", [114.578, 115.294, 108.353]).dtype == np.float32
    assert preprocess.mean_for("voc", [104.00699, 116.66877, 122.67892]).dtype == np.float64


def test_siftflow_mean_is_subtracted_in_float32(tmp_path):
    path = _png(tmp_path / "s.png", np.array([[[1, 2, 3]]], np.uint8))
    x = preprocess.preprocess_image(path, preprocess.SIFTFLOW_MEAN)[0, :, 0, 0].numpy()
    expected = np.float32([3, 2, 1]) - np.float32([114.578, 115.294, 108.353])
    np.testing.assert_array_equal(x, expected)


def test_hha_is_not_flipped(tmp_path):
    path = _png(tmp_path / "h.png", np.array([[[10, 20, 30]]], np.uint8))
    x = preprocess.preprocess_hha(path)[0, :, 0, 0].numpy()
    np.testing.assert_array_equal(x, np.float32([10, 20, 30]) - np.float32([132.431, 94.076, 118.477]))
    np.testing.assert_allclose(x, [-122.431, -74.076, -88.477], atol=1e-5)


def test_depth_log_minus_mean_16bit(tmp_path):
    d = np.array([[1000, 2550], [65535, 1]], np.uint16)
    path = _png(tmp_path / "d.png", d)
    assert Image.open(path).mode.startswith("I")
    x = preprocess.preprocess_depth(path)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    np.testing.assert_array_equal(x[0, 0].numpy(), np.log(d.astype(np.float32)) - np.float32(7.844))
    np.testing.assert_allclose(x[0, 0].numpy(), [[-0.9362447, -0.0001514], [3.2463396, -7.844]], atol=2e-6)


def test_depth_refuses_zeros_and_8bit(tmp_path):
    with pytest.raises(CaffeFormatError, match=r"z\.png: 1 depth pixels are <= 0"):
        preprocess.preprocess_depth(_png(tmp_path / "z.png", np.array([[0, 5]], np.uint16)))
    with pytest.raises(CaffeFormatError, match="mode L; expected a 16-bit"):
        preprocess.preprocess_depth(_png(tmp_path / "e.png", np.array([[9, 5]], np.uint8)))


def test_image_modes(tmp_path):
    gray = preprocess.preprocess_image(_png(tmp_path / "g.png", np.array([[7, 200]], np.uint8)))
    rgb = preprocess.preprocess_image(_png(tmp_path / "r.png", np.array([[[7] * 3, [200] * 3]], np.uint8)))
    assert torch.equal(gray, rgb)
    rgba = np.array([[[200, 100, 50, 0], [0, 255, 10, 128]]], np.uint8)  # alpha dropped
    a = preprocess.preprocess_image(_png(tmp_path / "rgba.png", rgba))
    b = preprocess.preprocess_image(_png(tmp_path / "rgb.png", rgba[:, :, :3]))
    assert torch.equal(a, b)
    with pytest.raises(CaffeFormatError, match=r"w\.png: image mode I;16"):
        preprocess.preprocess_image(_png(tmp_path / "w.png", np.array([[7, 900]], np.uint16)))
    with pytest.raises(CaffeFormatError, match=r"x\.jpg: not a JPEG or PNG image"):
        (tmp_path / "x.jpg").write_text("hello")
        preprocess.preprocess_image(tmp_path / "x.jpg")
    with pytest.raises(CaffeFormatError, match="cannot open"):
        preprocess.preprocess_image(tmp_path / "missing.jpg")


def test_read_label_paletted(tmp_path):
    labels = np.array([[0, 1, 15], [20, 255, 3]], np.uint8)
    path = tmp_path / "l.png"
    vis.save_label_png(labels, path)
    out = preprocess.read_label(path)
    assert out.dtype == np.uint8 and np.array_equal(out, labels)
    with pytest.raises(CaffeFormatError, match="mode RGB .*colour rendering"):
        preprocess.read_label(_png(tmp_path / "c.png", vis.color_seg(labels)))


def test_input_kinds_and_nyud_pairs(tmp_path):
    assert preprocess.input_kinds({}) == ["color"]
    assert preprocess.input_kinds({"model": "nyud-fcn32s-hha", "dataset": "nyud",
                                   "inputs": ["data"]}) == ["hha"]
    meta = {"model": "nyud-fcn32s-color-hha", "dataset": "nyud", "inputs": ["color", "hha"]}
    color = _png(tmp_path / "c.png", np.array([[[1, 2, 3]]], np.uint8))
    hha = _png(tmp_path / "h.png", np.array([[[4, 5, 6]]], np.uint8))
    c, h = preprocess.load_inputs(meta, color, hha=hha)
    np.testing.assert_array_equal(c[0, :, 0, 0].numpy(),
                                  np.float32([3, 2, 1]) - np.float32([116.190, 97.203, 92.318]))
    np.testing.assert_array_equal(h[0, :, 0, 0].numpy(),
                                  np.float32([4, 5, 6]) - np.float32([132.431, 94.076, 118.477]))
    with pytest.raises(CaffeFormatError, match="also needs a hha image"):
        preprocess.load_inputs(meta, color)
    with pytest.raises(CaffeFormatError, match="a depth file was given"):
        preprocess.load_inputs(meta, color, hha=hha, depth=hha)
    big = _png(tmp_path / "big.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(CaffeFormatError, match=r"big\.png: hha is \(2, 2\)"):
        preprocess.load_inputs(meta, color, hha=big)


# --- palette, label PNG, overlay -----------------------------------------------------------


def test_voc_palette():
    p = vis.make_palette(256)
    assert p.shape == (256, 3) and p.dtype == np.uint8
    assert p[:8].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0],
                              [0, 0, 128], [128, 0, 128], [0, 128, 128], [128, 128, 128]]
    assert p[8].tolist() == [64, 0, 0] and p[15].tolist() == [192, 128, 128]  # 15 = person
    assert p[20].tolist() == [0, 64, 128] and p[255].tolist() == [224, 224, 192]  # tv, void
    assert np.array_equal(vis.make_palette(21), p[:21])


def test_label_png_is_paletted_and_round_trips(tmp_path):
    labels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    vis.save_label_png(torch.from_numpy(labels.astype(np.int64)), tmp_path / "l.png")
    im = Image.open(tmp_path / "l.png")
    assert im.format == "PNG" and im.mode == "P"
    assert np.array_equal(np.array(im), labels)
    assert np.array_equal(np.array(im.getpalette()[:768], np.uint8).reshape(256, 3), vis.VOC_PALETTE)
    assert np.array(im.convert("RGB"))[15, 15].tolist() == [224, 224, 192]
    with pytest.raises(ValueError, match="0..255"):
        vis.save_label_png(np.array([[256]]), tmp_path / "bad.png")
    assert sorted(os.listdir(tmp_path)) == ["l.png"]


def test_overlay_blends_only_non_background():
    img = np.array([[[10, 20, 30], [200, 100, 51]], [[255, 255, 255], [1, 2, 3]]], np.uint8)
    seg = np.array([[0, 1], [15, 0]])
    for alpha in (0.5, 0.3):
        out = vis.overlay(img, seg, alpha=alpha)
        assert out.dtype == np.uint8
        assert np.array_equal(out[0, 0], img[0, 0]) and np.array_equal(out[1, 1], img[1, 1])
        for (i, j) in ((0, 1), (1, 0)):
            colour = vis.VOC_PALETTE[seg[i, j]]
            want = (np.float32(img[i, j]) * np.float32(1 - alpha) + alpha * colour).astype(np.uint8)
            assert np.array_equal(out[i, j], want)
    out = vis.overlay(img, seg, alpha=0.5)
    assert out[0, 1].tolist() == [164, 50, 25]  # (200+128)/2, 100/2, 51/2 truncated
    assert out[1, 0].tolist() == [223, 191, 191]  # person (192, 128, 128)
    assert np.array_equal(vis.overlay(img, seg, alpha=0.0), img)


# --- predict, infer_files, CLI -------------------------------------------------------------


class FakeNet(torch.nn.Module):
    """Scores = the preprocessed BGR input (mean 0): argmax 0 (B), 1 (G) or 2 (R) per pixel."""

    def __init__(self, meta=None, outputs=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
        self.outputs = outputs
        self.meta = meta or {"model": "fake", "classes": 3, "mean": [0.0, 0.0, 0.0],
                             "inputs": ["data"], "outputs": ["score"], "dataset": "voc"}

    def forward(self, x):
        s = self.conv(x)
        return s if self.outputs == 1 else (s, s.flip(1))


# Pixels: blue -> class 0 (background), green -> 1, red -> 2.
RGB = np.array([[[0, 0, 255], [0, 255, 0]], [[255, 0, 0], [10, 10, 200]]], np.uint8)
LABELS = np.array([[0, 1], [2, 0]])


def test_predict_argmax_and_ties():
    net = FakeNet()
    lab = infer.predict(net, preprocess.to_blob(RGB, np.zeros(3)))
    assert lab.dtype == torch.int64 and np.array_equal(lab[0].numpy(), LABELS)
    tie = infer.predict(net, torch.zeros(1, 3, 2, 2))
    assert tie.abs().sum() == 0  # the first maximal class, as numpy's argmax
    two = infer.predict(FakeNet(outputs=2), [torch.ones(1, 3, 1, 1)])
    assert isinstance(two, tuple) and len(two) == 2


def test_infer_files_writes_labels_and_overlays(tmp_path):
    img = _png(tmp_path / "img.png", RGB)
    out = tmp_path / "out"
    written = infer.infer_files(FakeNet(), [img], out)
    assert written == [str(out / "img.png"), str(out / "img_overlay.png")]
    assert sorted(os.listdir(out)) == ["img.png", "img_overlay.png"]
    label = Image.open(out / "img.png")
    assert label.mode == "P" and np.array_equal(np.array(label), LABELS)
    assert np.array_equal(np.array(Image.open(out / "img_overlay.png")), vis.overlay(RGB, LABELS))


def test_infer_two_outputs_names(tmp_path):
    meta = {"model": "siftflow-fake", "inputs": ["data"], "outputs": ["score_sem", "score_geo"],
            "dataset": "siftflow", "mean": [0, 0, 0]}
    img = _png(tmp_path / "a.jpg", RGB)
    infer.infer_files(FakeNet(meta, outputs=2), [img], tmp_path / "o", overlay_format="jpg")
    assert sorted(os.listdir(tmp_path / "o")) == ["a.png", "a_geo.png", "a_geo_overlay.jpg",
                                                   "a_overlay.jpg"]


def test_infer_refuses_colliding_names_and_overwriting_inputs(tmp_path):
    (tmp_path / "x").mkdir()
    a, b = _png(tmp_path / "a.png", RGB), _png(tmp_path / "x" / "a.jpg", RGB)
    with pytest.raises(CaffeFormatError, match="would write"):
        infer.infer_files(FakeNet(), [a, b], tmp_path / "o")
    with pytest.raises(CaffeFormatError, match="is an input"):
        infer.infer_files(FakeNet(), [a], tmp_path)
    assert not (tmp_path / "o").exists()


@pytest.fixture
def fake_load(monkeypatch):
    monkeypatch.setattr(models_pkg, "load", lambda path, map_location="cpu": FakeNet(),
                        raising=False)


def _cli(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_infer(tmp_path, capsys, fake_load):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    img = _png(tmp_path / "img.png", RGB)
    rc, out, err = _cli(["infer", str(ckpt), img, "-o", str(tmp_path / "o"), "--alpha", "0.25"],
                        capsys)
    assert rc == 0 and err == "" and "img_overlay.png" in out
    assert np.array_equal(np.array(Image.open(tmp_path / "o" / "img_overlay.png")),
                          vis.overlay(RGB, LABELS, alpha=0.25))


def test_cli_bad_image_one_line_and_no_output(tmp_path, capsys, fake_load):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    good = _png(tmp_path / "good.png", RGB)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rc, out, err = _cli(["infer", str(ckpt), good, str(bad), "-o", str(tmp_path / "o")], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("fcn-port: error: ") and "bad.jpg" in err
    assert not (tmp_path / "o").exists()
    rc, _, err = _cli(["infer", str(tmp_path / "none.pt"), good, "-o", str(tmp_path / "o")], capsys)
    assert rc == 2 and "none.pt: does not exist" in err and not (tmp_path / "o").exists()


class FakeColorHHA(FakeNet):
    def __init__(self):
        super().__init__({"model": "nyud-fcn32s-color-hha", "dataset": "nyud", "classes": 3,
                          "inputs": ["color", "hha"], "outputs": ["score"]})

    def forward(self, color, hha):
        return self.conv(color) + 0 * hha


def test_cli_nyud_hha_pairs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models_pkg, "load", lambda p, map_location="cpu": FakeColorHHA(),
                        raising=False)
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    imgs = [_png(tmp_path / f"i{k}.png", RGB) for k in range(2)]
    hhas = [_png(tmp_path / f"h{k}.png", RGB) for k in range(2)]
    rc, _, err = _cli(["infer", str(ckpt), *imgs, "--hha", *hhas, "-o", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path / "o")) == ["i0.png", "i0_overlay.png", "i1.png", "i1_overlay.png"]
    rc, _, err = _cli(["infer", str(ckpt), *imgs, "--hha", hhas[0], "-o", str(tmp_path / "p")], capsys)
    assert rc == 2 and "1 hha files for 2 images" in err and err.count("\n") == 1
    rc, _, err = _cli(["infer", str(ckpt), *imgs, "-o", str(tmp_path / "p")], capsys)
    assert rc == 2 and "also needs a hha image" in err
    assert not (tmp_path / "p").exists()


def test_outputs_are_atomic(tmp_path, monkeypatch):
    img = _png(tmp_path / "img.png", RGB)
    out = tmp_path / "o"
    real_save = Image.Image.save

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        infer.infer_files(FakeNet(), [img], out)
    assert os.listdir(out) == []  # no partial file, no leftover temporary
    monkeypatch.setattr(Image.Image, "save", real_save)
    (out / "img.png").write_bytes(b"old")
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        infer.infer_files(FakeNet(), [img], out)
    assert sorted(os.listdir(out)) == ["img.png"] and (out / "img.png").read_bytes() == b"old"


def test_alpha_and_device_errors(tmp_path):
    img = _png(tmp_path / "img.png", RGB)
    with pytest.raises(NetError, match="alpha"):
        infer.infer_files(FakeNet(), [img], tmp_path / "o", alpha=1.5)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["infer", "c", img, "-o", "d", "--device", "tpu"])


# --- with the real model side --------------------------------------------------------------


def test_official_metas_pick_the_right_preprocessing(tmp_path):
    from fcn_port.models import OFFICIAL

    rgb = _png(tmp_path / "c.png", np.array([[[1, 2, 3]]], np.uint8))
    dep = _png(tmp_path / "d.png", np.array([[1000]], np.uint16))
    flipped = np.float32([3, 2, 1])
    cases = {"voc-fcn8s": ([rgb], [flipped - np.array((104.00699, 116.66877, 122.67892))]),
             "siftflow-fcn8s": ([rgb], [flipped - preprocess.SIFTFLOW_MEAN]),
             "pascalcontext-fcn8s": ([rgb], [flipped - preprocess.PASCALCONTEXT_MEAN]),
             "nyud-fcn32s-color": ([rgb], [flipped - preprocess.NYUD_BGR_MEAN]),
             "nyud-fcn32s-hha": ([rgb], [np.float32([1, 2, 3]) - preprocess.NYUD_HHA_MEAN]),
             "nyud-fcn32s-color-hha": ([rgb, rgb], [flipped - preprocess.NYUD_BGR_MEAN,
                                                     np.float32([1, 2, 3]) - preprocess.NYUD_HHA_MEAN]),
             "nyud-fcn32s-color-d": ([rgb, dep], [flipped - preprocess.NYUD_BGR_MEAN,
                                                  np.log(np.float32([1000])) - np.float32(7.844)])}
    for name, (files, want) in cases.items():
        meta = OFFICIAL[name].meta()
        kinds = preprocess.input_kinds(meta)
        extra = {k: f for k, f in zip(kinds[1:], files[1:])}
        got = preprocess.load_inputs(meta, files[0], **extra)
        assert len(got) == len(want), name
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g[0, :, 0, 0].numpy(), np.float32(w), err_msg=name)


def test_end_to_end_convert_and_infer_bundled_tiny_model(tmp_path, capsys):
    from fcn_port.models import load
    from fcn_port.port import DEFAULT_WEIGHTS

    ckpt = tmp_path / "tiny.pt"
    assert cli.main(["convert", str(DEFAULT_WEIGHTS), "-o", str(ckpt)]) == 0
    rng = np.random.default_rng(0)
    img = _png(tmp_path / "scene.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    capsys.readouterr()
    rc, out, err = _cli(["infer", str(ckpt), img, "-o", str(tmp_path / "o")], capsys)
    assert rc == 0 and err == ""
    assert sorted(os.listdir(tmp_path / "o")) == ["scene.png", "scene_overlay.png"]
    net = load(ckpt)
    assert net.meta["model"] == "voc-fcn8s" and net.meta["inputs"] == ["data"]
    want = infer.predict(net, preprocess.load_inputs(net.meta, img))[0].numpy()
    label = Image.open(tmp_path / "o" / "scene.png")
    assert label.mode == "P" and np.array_equal(np.array(label), want)
    assert len(np.unique(want)) > 1
    assert np.array_equal(np.array(Image.open(tmp_path / "o" / "scene_overlay.png")),
                          vis.overlay(np.array(Image.open(img)), want))
