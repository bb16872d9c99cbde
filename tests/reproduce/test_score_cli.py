"""``fcn-port score`` end to end on generated label PNGs (paletted with the VOC palette, and
8-bit grayscale), and its one-line errors: exit status 2, nothing on stdout, no --png."""
import json

import numpy as np
import pytest
from PIL import Image

from fcn_port.cli import main
from fcn_port.models.vis import save_label_png
from fcn_port.reproduce.score import Confusion

SHAPES = [(30, 40), (25, 33), (40, 20)]


@pytest.fixture
def folders(tmp_path):
    """gt/ (paletted, void borders) and pred/ (paletted, one grayscale) with their arrays."""
    rng = np.random.default_rng(7)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    arrays = []
    for k, (h, w) in enumerate(SHAPES):
        gt = rng.integers(0, 6, (h, w)).astype(np.uint8)
        gt[:2] = 255
        gt[:, -1] = 255
        pred = np.where(rng.random((h, w)) < 0.7, np.where(gt == 255, 0, gt),
                        rng.integers(0, 21, (h, w))).astype(np.uint8)
        pred[gt == 255] = 17                        # anything under void is not counted
        stem = f"2008_{k:06d}"
        save_label_png(gt, gt_dir / f"{stem}.png")
        if k == 1:
            Image.fromarray(pred, mode="L").save(pred_dir / f"{stem}.png")
        else:
            save_label_png(pred, pred_dir / f"{stem}.png")
        arrays.append((gt, pred))
    return tmp_path, gt_dir, pred_dir, arrays


def test_json_matches_the_accumulator_and_png_is_written(folders, capsys):
    tmp, gt_dir, pred_dir, arrays = folders
    save_label_png(np.zeros((4, 4), np.uint8), pred_dir / "extra.png")   # no gt: noted, skipped
    conf = Confusion(21)
    for gt, pred in arrays:
        conf.add(gt, pred)
    want = conf.metrics()
    png = tmp / "conf.png"
    assert main(["score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--json",
                 "--png", str(png)]) == 0
    out, err = capsys.readouterr()
    got = json.loads(out)
    for key in ("overall_acc", "mean_acc", "mean_iu", "fwavacc"):
        assert got[key] == want[key]
    assert got["images"] == 3 and got["classes"] == 21 and got["loss"] is None
    assert got["confusion"] == conf.hist.tolist()
    assert got["ignored"] == sum(int((g == 255).sum()) for g, _ in arrays)
    rows = {r["class"]: r for r in got["per_class"]}
    assert rows["aeroplane"]["iu"] == want["iu"][1]
    assert rows["tvmonitor"]["acc"] is None              # absent from the gt: NaN -> null
    assert "1 prediction(s)" in err and png.is_file()


def test_table_in_percent(folders, capsys):
    _, gt_dir, pred_dir, arrays = folders
    conf = Confusion(21)
    for gt, pred in arrays:
        conf.add(gt, pred)
    assert main(["score", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 0
    out = capsys.readouterr().out
    assert "mean IU" in out and f"{100 * conf.metrics()['mean_iu']:.2f}" in out
    assert "background" in out and "tvmonitor" in out


def _fails(argv, capsys, *words):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fcn-port: error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_errors(folders, capsys):
    tmp, gt_dir, pred_dir, arrays = folders
    png = tmp / "conf.png"
    base = ["score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--png", str(png)]
    _fails(["score", "--pred", str(pred_dir), "--gt", str(tmp / "nope")], capsys,
           "nope", "no such directory")
    (pred_dir / "2008_000002.png").unlink()
    _fails(base, capsys, "no prediction for", str(gt_dir / "2008_000002.png"))
    save_label_png(np.zeros((5, 5), np.uint8), pred_dir / "2008_000002.png")
    _fails(base, capsys, str(pred_dir / "2008_000002.png"), "size 5x5")
    save_label_png(arrays[2][1], pred_dir / "2008_000002.png")
    _fails(base[:-2] + ["--classes", "4"], capsys, str(gt_dir), "label", "--classes 4")
    Image.new("RGB", (40, 30)).save(pred_dir / "2008_000000.png")
    _fails(base, capsys, str(pred_dir / "2008_000000.png"), "mode RGB")
    assert not png.exists()
    assert not list(tmp.glob(".conf.png*"))
