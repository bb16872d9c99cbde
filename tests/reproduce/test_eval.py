"""``fcn-port eval`` (reproduce/evaluate.py, segtests.py, grid.py) on a generated VOC tree.

Expected numbers are computed here the way score.py's ``compute_hist`` does it, transcribed:
per image, the model's own forward on the official preprocessing (PIL, float32, RGB->BGR,
minus ``np.array(mean)``, CHW), numpy ``argmax`` over the channels, ``bincount(n * gt + pred)``
over the pixels whose ground truth is in [0, n), and the loss of SoftmaxWithLoss with
``normalize: false`` written out in numpy (sum of -log max(softmax at the label, FLT_MIN) in
float32, void skipped).
The two-head path (SIFT Flow) runs on a hand-made reader object and on a generated SIFT Flow
tree (test_siftflow's generator and transcribed layer)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcn_port import models
from fcn_port.cli import main
from fcn_port.models.deploy.export import export
from fcn_port.port.errors import UnsupportedError, UserInputError
from fcn_port.reproduce import datasets, evaluate
from fcn_port.reproduce.grid import grid_size
from fcn_port.reproduce.segtests import SegTest, heads_of
import vocdata as VOC  # the VOC/SBD generators (tests/vocdata.py)

WIDTHS = ["--widths", "2", "4", "4", "8", "8", "--fc", "8"]


def _test_module(name):
    """A sibling test module (its data generators); test modules are not importable by name."""
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_fcn_port_{name}_generators", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_fcn(name, seed=0, **kw):
    """A reduced-width FCN with random weights (Caffe's default init is zeros: all ties)."""
    torch.manual_seed(seed)
    model = models.build(name, widths=(2, 4, 4, 8, 8), fc=8, **kw)
    with torch.no_grad():
        for key, p in model.named_parameters():
            p.normal_(0, 0.1 if "upscore" in key else 0.3)
    return model


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    ids = VOC.make_voc(root / "VOC2011", n=4)
    model = random_fcn("voc-fcn32s")
    export(model, root / "w.caffemodel")
    ckpt, _ = models.convert(root / "w.caffemodel", root / "w.pt")
    return root, ids, Path(ckpt)


def official_numbers(root, ids, ckpt, n=21):
    """compute_hist, transcribed: (hist, mean per-image loss)."""
    net = models.load(ckpt)
    hist, loss = np.zeros((n, n)), 0.0
    for name in ids:
        x = VOC.official_image(root / "VOC2011" / "JPEGImages" / f"{name}.jpg")
        gt = np.array(Image.open(root / "VOC2011" / "SegmentationClass" / f"{name}.png"))
        with torch.no_grad():
            score = net(torch.from_numpy(np.ascontiguousarray(x)))[0].numpy()
        pred = score.argmax(axis=0)
        a, b = gt.flatten().astype(int), pred.flatten()
        k = (a >= 0) & (a < n)
        hist += np.bincount(n * a[k] + b[k], minlength=n ** 2).reshape(n, n)
        s = score.reshape(n, -1)                        # Caffe: float32 softmax, then
        e = np.exp(s - s.max(0))                         # -log(max(p, FLT_MIN)) per pixel
        prob = e / e.sum(0)
        valid = a != 255
        picked = prob[a[valid], np.nonzero(valid)[0]]
        loss += -np.log(np.maximum(picked, np.finfo(np.float32).tiny)).astype(np.float64).sum()
    return hist, loss / len(ids)


def test_eval_is_compute_hist(kit):
    root, ids, ckpt = kit
    want_hist, want_loss = official_numbers(root, ids, ckpt)
    ev = evaluate.Evaluation(ckpt, "voc", root / "VOC2011")
    assert ev.split == "seg11valid" and ev.ids == ids
    test = ev.run(progress=False)
    conf = test.conf["score"]
    np.testing.assert_array_equal(conf.hist, want_hist)
    assert conf.loss == pytest.approx(want_loss, rel=1e-5)
    (r,) = test.results()
    diag = np.diag(want_hist)
    assert r["overall_acc"] == pytest.approx(diag.sum() / want_hist.sum(), abs=1e-15)
    iu = diag / (want_hist.sum(1) + want_hist.sum(0) - diag)
    assert r["mean_iu"] == pytest.approx(np.nanmean(iu), abs=1e-15)
    assert 0 < r["mean_iu"] < 1 and r["images"] == 4
    assert evaluate.Evaluation(root / "w.caffemodel", "voc", root / "VOC2011").run(
        progress=False).conf["score"].hist.tolist() == want_hist.astype(int).tolist()


def test_eval_cli_table_json_saved_predictions_and_grid(kit, tmp_path, capsys):
    root, ids, ckpt = kit
    want_hist, _ = official_numbers(root, ids, ckpt)
    base = ["eval", str(ckpt), "--dataset", "voc", "--root", str(root / "VOC2011")]
    pred, grid, png = tmp_path / "pred", tmp_path / "grid.png", tmp_path / "conf.png"
    assert main(base + ["--save-pred", str(pred), "--grid", str(grid), "--grid-images", "3",
                        "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "voc-fcn32s" in out and "mean IU" in out and "seg11valid" in out
    assert sorted(p.stem for p in pred.glob("*.png")) == ids
    assert Image.open(pred / f"{ids[0]}.png").mode == "P"
    assert Image.open(grid).size == grid_size(3) == (900, 900)
    assert png.is_file()

    assert main(base + ["--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {k: got[k] for k in ("model", "dataset", "split", "images")} == {
        "model": "voc-fcn32s", "dataset": "voc", "split": "seg11valid", "images": 4}
    (head,) = got["heads"]
    assert (head["score"], head["label"], head["classes"]) == ("score", "label", 21)
    diag = np.diag(want_hist)
    assert head["overall_acc"] == pytest.approx(diag.sum() / want_hist.sum(), abs=1e-15)
    assert len(head["per_class"]) == 21 and head["loss"] > 0

    assert main(["score", "--pred", str(pred), "--gt", str(root / "VOC2011" /
                                                          "SegmentationClass"), "--json"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    assert rescored["confusion"] == want_hist.astype(int).tolist()
    for k in ("overall_acc", "mean_acc", "mean_iu", "fwavacc"):
        assert rescored[k] == head[k]

    assert main(base + ["--json", "--limit", "2", "--split", "seg11valid"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2


@pytest.mark.parametrize("change, words", [
    (["--root", "{tmp}/nowhere"], "--root"),
    (["--split", "seg12"], "seg12"),
    (["--dataset", "siftflow"], "--dataset voc"),
    (["CKPT", "{tmp}/garbage.pt"], "garbage.pt"),
    (["CKPT", "{tmp}/missing.pt"], "missing.pt"),
    (["--limit", "0"], "--limit"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--limit", "-1"], "--"),
    (["--save-pred", "{tmp}/no/such/dir"], "--save-pred"),
])
def test_eval_errors_are_one_line_and_write_nothing(kit, tmp_path, capsys, change, words):
    root, ids, ckpt = kit
    (tmp_path / "garbage.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    args = {"CKPT": str(ckpt), "--dataset": "voc", "--root": str(root / "VOC2011")}
    flag, value = change[0], change[1].replace("{tmp}", str(tmp_path))
    args[flag] = value
    argv = ["eval", args.pop("CKPT")] + [x for kv in args.items() for x in kv]
    outs = ["--save-pred", str(tmp_path / "pred"), "--grid", str(tmp_path / "g.png"),
            "--png", str(tmp_path / "c.png")]
    if flag == "--save-pred":
        outs = outs[2:]
    assert main(argv + outs) == 2
    err = capsys.readouterr()
    assert err.out == "" and words in err.err and err.err.count("\n") == 1
    assert err.err.startswith("fcn-port: error:")
    assert not (tmp_path / "pred").exists() and not (tmp_path / "g.png").exists()
    assert not (tmp_path / "c.png").exists()


def test_pascalcontext_needs_the_voc_root_and_unknown_layers_say_so(kit, monkeypatch):
    root, _, _ = kit
    export(random_fcn("pascalcontext-fcn32s"), root / "ctx.caffemodel")
    monkeypatch.setattr(datasets, "folder_keys", lambda lp: ("context_dir", "voc_dir"))
    with pytest.raises(UserInputError, match="--voc-root"):
        evaluate.Evaluation(root / "ctx.caffemodel", "pascalcontext", root)
    monkeypatch.setattr(datasets, "folder_keys", lambda lp: ())
    with pytest.raises(UnsupportedError, match="no reader"):
        evaluate.Evaluation(root / "ctx.caffemodel", "pascalcontext", root, voc_root=root)


class TwoHeadReader:
    """A hand-made reader with SIFT Flow's tops (data, sem, geo) and the reader API."""

    def __init__(self, n=3):
        rng = np.random.default_rng(5)
        self.ids, self.split = [f"img{k}" for k in range(n)], "test"
        self.tops = ("data", "sem", "geo")
        self.items = []
        for k in range(n):
            h, w = 30 + 2 * k, 34
            sem = rng.integers(0, 33, (1, 1, h, w)).astype(np.float32)
            sem[..., :3, :] = 255
            geo = rng.integers(0, 3, (1, 1, h, w)).astype(np.float32)
            self.items.append({"data": rng.normal(0, 50, (1, 3, h, w)).astype(np.float32),
                               "sem": sem, "geo": geo})

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, d):
        return self.items[d]


def test_two_heads_are_scored_separately(tmp_path, monkeypatch, capsys):
    cfg = models.config("siftflow-fcn32s")
    heads = heads_of(models.net_param(cfg, "test").layer, {"sem", "geo"})
    assert [(h.score, h.label, h.loss) for h in heads] == [
        ("score_sem", "sem", "loss"), ("score_geo", "geo", "loss_geo")]
    export(random_fcn("siftflow-fcn32s", seed=3), tmp_path / "sift.caffemodel")
    reader = TwoHeadReader()
    monkeypatch.setattr(datasets, "folder_keys", lambda lp: ("siftflow_dir",))
    monkeypatch.setattr(datasets, "reader_for", lambda *a, **k: reader)
    net = models.load(tmp_path / "sift.caffemodel")
    want = {}
    for item in reader.items:
        with torch.no_grad():
            outs = net(torch.from_numpy(item["data"]))
        heads = (("score_sem", "sem", 33), ("score_geo", "geo", 3))
        for (score, label, n), out in zip(heads, outs):
            a = item[label].flatten().astype(int)
            b = out[0].numpy().argmax(0).flatten()
            k = (a >= 0) & (a < n)
            want[score] = want.get(score, 0) + np.bincount(n * a[k] + b[k], minlength=n * n)
    pred = tmp_path / "pred"
    argv = ["eval", str(tmp_path / "sift.caffemodel"), "--dataset", "siftflow", "--root",
            str(tmp_path), "--json", "--save-pred", str(pred)]
    assert main(argv) == 0
    got = json.loads(capsys.readouterr().out)
    assert [(h["score"], h["label"], h["classes"]) for h in got["heads"]] == [
        ("score_sem", "sem", 33), ("score_geo", "geo", 3)]
    ev = evaluate.Evaluation(tmp_path / "sift.caffemodel", "siftflow", tmp_path)
    test = ev.run(progress=False)
    for score in ("score_sem", "score_geo"):
        n = test.conf[score].n
        np.testing.assert_array_equal(test.conf[score].hist, want[score].reshape(n, n))
    assert sorted(p.name for p in pred.glob("*.png")) == sorted(
        [f"img{k}.png" for k in range(3)] + [f"img{k}_geo.png" for k in range(3)])
    # score.py's loss is net.blobs['loss'] (the semantic loss) for both heads (issue 17);
    # each head's own loss layer's mean is head_loss
    sem, geo = test.results()
    assert sem["loss"] == geo["loss"] == sem["head_loss"] != geo["head_loss"]


def test_segtest_needs_a_head():
    with pytest.raises(UserInputError, match="SoftmaxWithLoss"):
        SegTest([])


def test_siftflow_tree_two_heads_end_to_end(tmp_path, capsys):
    """The SIFT Flow reader on a generated tree: score_sem vs sem and score_geo vs geo, each
    against compute_hist transcribed on the official layer's arrays (transcribed in
    test_siftflow)."""
    sift = _test_module("test_siftflow")
    names = sift.make_siftflow(tmp_path / "sift-flow", split="test", n=3)
    export(random_fcn("siftflow-fcn32s", seed=4), tmp_path / "sift.caffemodel")
    net = models.load(tmp_path / "sift.caffemodel")
    want = {"score_sem": np.zeros(33 * 33), "score_geo": np.zeros(9)}
    for name in names:
        x, sem, geo = sift.official_arrays(tmp_path / "sift-flow", name)
        with torch.no_grad():
            outs = net(torch.from_numpy(np.ascontiguousarray(x)))
        for (score, n), gt, out in zip((("score_sem", 33), ("score_geo", 3)), (sem, geo), outs):
            a, b = np.asarray(gt).flatten().astype(int), out[0].numpy().argmax(0).flatten()
            k = (a >= 0) & (a < n)
            want[score] += np.bincount(n * a[k] + b[k], minlength=n * n)
    assert main(["eval", str(tmp_path / "sift.caffemodel"), "--dataset", "siftflow", "--root",
                 str(tmp_path / "sift-flow"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["split"] == "test" and got["images"] == 3
    for head in got["heads"]:
        n = head["classes"]
        hist = want[head["score"]].reshape(n, n)
        diag = np.diag(hist)
        assert head["overall_acc"] == pytest.approx(diag.sum() / hist.sum(), abs=1e-15)
        assert head["fwavacc"] is not None and head["loss"] > 0


def test_nyud_color_d_two_inputs_end_to_end(tmp_path, capsys):
    """nyud-fcn32s-color-d takes color and log depth: eval feeds each from the official
    NYUDSegDataLayer's tops (the layer's arrays transcribed in test_nyud) and scores 40 classes
    against compute_hist transcribed here."""
    nyud = _test_module("test_nyud")
    names = nyud.make_nyud(tmp_path / "nyud", (("test", 3),))["test"]
    export(random_fcn("nyud-fcn32s-color-d", seed=5), tmp_path / "cd.caffemodel")
    net = models.load(tmp_path / "cd.caffemodel")
    hist = np.zeros(40 * 40)
    for name in names:
        color, depth, gt = (nyud.official(tmp_path / "nyud", kind, name)
                            for kind in ("color", "depth", "label"))
        with torch.no_grad():
            out = net(torch.from_numpy(np.ascontiguousarray(color)), torch.from_numpy(depth))
        a, b = gt.flatten().astype(int), out[0].numpy().argmax(0).flatten()
        k = (a >= 0) & (a < 40)
        hist += np.bincount(40 * a[k] + b[k], minlength=40 * 40)
    assert main(["eval", str(tmp_path / "cd.caffemodel"), "--dataset", "nyud", "--root",
                 str(tmp_path / "nyud"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["split"] == "test" and got["images"] == 3 and len(got["heads"]) == 1
    head, hist = got["heads"][0], hist.reshape(40, 40)
    assert head["classes"] == 40 and head["pixels"] == hist.sum()
    assert head["overall_acc"] == pytest.approx(np.diag(hist).sum() / hist.sum(), abs=1e-15)


def test_pascalcontext_two_folders_end_to_end(tmp_path, capsys):
    """pascalcontext-fcn32s: --root is context_dir and --voc-root voc_dir (images from its
    VOC2010/), labels mapped to 59 classes + background by the official layer's lists
    (transcribed in test_context); 60 classes against compute_hist transcribed here."""
    ctx = _test_module("test_context")
    names = ctx.make_context(tmp_path, split="val", n=3)
    export(random_fcn("pascalcontext-fcn32s", seed=6), tmp_path / "pc.caffemodel")
    net = models.load(tmp_path / "pc.caffemodel")
    hist = np.zeros(60 * 60)
    for name in names:
        x = ctx.official_image(tmp_path / "pascal" / "VOC2010", name)
        gt = ctx.official_label(tmp_path / "pascal-context", name)
        with torch.no_grad():
            out = net(torch.from_numpy(np.ascontiguousarray(x)))
        a, b = gt.flatten().astype(int), out[0].numpy().argmax(0).flatten()
        hist += np.bincount(60 * a + b, minlength=60 * 60)  # no void: every pixel counts
    assert main(["eval", str(tmp_path / "pc.caffemodel"), "--dataset", "pascalcontext",
                 "--root", str(tmp_path / "pascal-context"), "--voc-root",
                 str(tmp_path / "pascal"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    head, hist = got["heads"][0], hist.reshape(60, 60)
    assert got["split"] == "val" and got["images"] == 3 and head["classes"] == 60
    assert head["pixels"] == hist.sum() and head["ignored"] == 0
    assert head["overall_acc"] == pytest.approx(np.diag(hist).sum() / hist.sum(), abs=1e-15)
