"""The bundled demo model (models/data/voc-fcn8s-demo.caffemodel, trained by fcn-port with
reproduce/demo/recipe.py) and the first commands of the README: ``fcn-port convert`` with no
argument converts it, ``fcn-port infer voc-fcn8s-demo.pt`` with no image segments the bundled
held-out demo image into the current folder, and the segmentation is correct against the
image's ground truth (models/data/demo_gt.png, a VOC palette PNG with void borders). The
metrics are computed here from the two label maps, as score.py defines them."""
import json

import numpy as np
import pytest
from PIL import Image

from fcn_port.cli import main
from fcn_port.models.verbs import DEMO_IMAGE, DEMO_WEIGHTS
from fcn_port.port.formats.caffemodel import read_weights

DATA = DEMO_WEIGHTS.parent
PRESENT = {0, 1, 7, 8, 12, 15}   # background + the generated data's five classes


def test_bundled_files_are_there_and_small():
    assert DEMO_WEIGHTS.name == "voc-fcn8s-demo.caffemodel" and DEMO_IMAGE.name == "demo.jpg"
    assert DEMO_WEIGHTS.stat().st_size < 5_000_000
    w = read_weights(DEMO_WEIGHTS)
    # the official voc-fcn8s layer names, 21 classes
    assert {"conv1_1", "fc6", "fc7", "score_fr", "upscore2", "score_pool4", "upscore_pool4",
            "score_pool3", "upscore8"} <= set(w.params)
    assert w.params["score_fr"][0].shape[0] == 21 and w.params["fc6"][0].ndim == 4
    gt = np.array(Image.open(DATA / "demo_gt.png"))
    assert Image.open(DATA / "demo_gt.png").mode == "P"
    assert gt.shape == Image.open(DEMO_IMAGE).size[::-1]
    assert len(set(np.unique(gt)) - {0, 255}) >= 2    # a picture with several classes
    report = json.loads((DATA / "demo.json").read_text())
    assert report["heldout"]["mean_iu"] > 0.7


def _metrics(gt, pred):
    keep = gt != 255
    g, p = gt[keep].astype(int), pred[keep].astype(int)
    acc = float((g == p).mean())
    ius = []
    for c in np.unique(g):                 # the classes present in the ground truth
        inter = np.sum((g == c) & (p == c))
        union = np.sum((g == c) | (p == c))
        ius.append(inter / union)
    return acc, float(np.mean(ius))


def test_first_commands_segment_the_demo_image(tmp_path, monkeypatch, one_thread, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["convert"]) == 0
    out = capsys.readouterr().out
    assert "voc-fcn8s-demo.pt: voc-fcn8s" in out
    assert (tmp_path / "voc-fcn8s-demo.pt").is_file()
    assert main(["infer", "voc-fcn8s-demo.pt"]) == 0
    assert (tmp_path / "demo.png").is_file() and (tmp_path / "demo_overlay.png").is_file()
    pred = np.array(Image.open(tmp_path / "demo.png"))
    gt = np.array(Image.open(DATA / "demo_gt.png"))
    assert pred.shape == gt.shape
    assert set(np.unique(pred)) <= PRESENT
    acc, mean_iu = _metrics(gt, pred)
    assert acc > 0.95 and mean_iu > 0.85, (acc, mean_iu)
    overlay = np.array(Image.open(tmp_path / "demo_overlay.png").convert("RGB"))
    image = np.array(Image.open(DEMO_IMAGE).convert("RGB"))
    overlay = overlay[:image.shape[0]]  # below it: the legend strip
    np.testing.assert_array_equal(overlay[pred == 0], image[pred == 0])  # background kept


def test_infer_still_takes_images_and_a_folder(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "-o", "m.pt"]) == 0
    img = tmp_path / "photo.jpg"
    Image.open(DEMO_IMAGE).save(img)
    assert main(["infer", "m.pt", str(img), "-o", "out", "-q"]) == 0
    assert (tmp_path / "out" / "photo.png").is_file()
    assert not (tmp_path / "demo.png").exists()


@pytest.mark.parametrize("name", ["README.md"])
def test_data_readme_says_what_it_is(name):
    text = (DATA / name).read_text()
    assert "fcn-port download voc-fcn8s" in text and "reproduce/demo" in text
