"""reproduce/score.py against score.py's formulas (FCN_FACTS §4): hand-made confusion matrices
with their metrics worked out by hand, and the accumulator against an independent transcription
of compute_hist's per-image loop on random label maps."""
import warnings

import numpy as np
import pytest
from PIL import Image

from fcn_port.port.errors import UserInputError
from fcn_port.reproduce.score import Confusion, confusion_png, fast_hist, metrics


def _check(hist, overall, mean_acc, mean_iu, fw, iu, acc):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaNs stay, numpy's warnings do not leak
        m = metrics(np.array(hist))
    assert m["overall_acc"] == pytest.approx(overall, rel=1e-15)
    assert m["mean_acc"] == pytest.approx(mean_acc, rel=1e-15)
    assert m["mean_iu"] == pytest.approx(mean_iu, rel=1e-15)
    assert m["fwavacc"] == pytest.approx(fw, rel=1e-15)
    np.testing.assert_allclose(m["iu"], iu, rtol=1e-15)     # NaNs must match as NaNs
    np.testing.assert_allclose(m["acc"], acc, rtol=1e-15)
    assert m["iu"].dtype == np.float64


def test_every_class_present():
    # rows gt sums 4 4 2, columns pred sums 4 3 3, diagonal 3 2 1, 10 pixels
    _check([[3, 1, 0], [0, 2, 2], [1, 0, 1]],
           overall=6 / 10, mean_acc=(3 / 4 + 2 / 4 + 1 / 2) / 3,
           mean_iu=(3 / 5 + 2 / 5 + 1 / 4) / 3,
           fw=0.4 * 3 / 5 + 0.4 * 2 / 5 + 0.2 * 1 / 4,
           iu=[3 / 5, 2 / 5, 1 / 4], acc=[3 / 4, 1 / 2, 1 / 2])


def test_class_absent_from_ground_truth_and_predictions_is_left_out():
    nan = float("nan")
    _check([[2, 1, 0], [1, 4, 0], [0, 0, 0]],
           overall=6 / 8, mean_acc=(2 / 3 + 4 / 5) / 2, mean_iu=(2 / 4 + 4 / 6) / 2,
           fw=3 / 8 * 2 / 4 + 5 / 8 * 4 / 6,
           iu=[1 / 2, 2 / 3, nan], acc=[2 / 3, 4 / 5, nan])


def test_predicted_class_absent_from_ground_truth_counts_zero_in_mean_iu():
    # class 2 never in the ground truth, predicted once: IU 0/(0+1-0) = 0, accuracy 0/0 = NaN
    nan = float("nan")
    _check([[2, 1, 1], [1, 4, 0], [0, 0, 0]],
           overall=6 / 9, mean_acc=(2 / 4 + 4 / 5) / 2, mean_iu=(2 / 5 + 4 / 6 + 0) / 3,
           fw=4 / 9 * 2 / 5 + 5 / 9 * 4 / 6,
           iu=[2 / 5, 2 / 3, 0.0], acc=[1 / 2, 4 / 5, nan])
    # and its false positives lower the IU of the class they were taken from
    assert metrics(np.array([[2, 1, 1], [1, 4, 0], [0, 0, 0]]))["iu"][0] == 2 / 5


def test_empty_matrix_is_nan_and_an_empty_fw_sum_without_warnings():
    """score.py on an empty histogram: 0/0 for the first three; freq is all NaN, so
    freq[freq > 0] is empty and fwavacc is the empty sum 0.0 (issue 17: it was NaN here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = metrics(np.zeros((4, 4)))
    assert all(m[k] != m[k] for k in ("overall_acc", "mean_acc", "mean_iu"))
    assert m["fwavacc"] == 0.0


def test_float_labels_are_masked_before_they_become_integers():
    """score.py's fast_hist masks a (float) label blob, then casts: -0.5 is dropped and 20.5 of
    21 classes counts as 20 (cast first, -0.5 became class 0; issue 17)."""
    def score_py(a, b, n):  # the official function, transcribed
        k = (a >= 0) & (a < n)
        return np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)
    gt = np.array([-0.5, 0.0, 20.5, 21.0, 3.7, np.nan, -1.0], np.float32)
    pred = np.array([1, 0, 20, 2, 3, 4, 5])
    with np.errstate(invalid="ignore"):
        want = score_py(gt, pred, 21)
    assert np.array_equal(fast_hist(gt, pred, 21), want) and want.sum() == 3


def test_fast_hist_rows_are_ground_truth_and_out_of_range_labels_are_ignored():
    gt = np.array([0, 1, 255, 3, -1, 2, 2, 1])
    pred = np.array([0, 1, 2, 0, 1, 2, 0, 2])
    h = fast_hist(gt, pred, 3)
    assert h.dtype == np.int64
    np.testing.assert_array_equal(h, [[1, 0, 0], [0, 1, 1], [1, 0, 1]])
    c = Confusion(3).add(gt.reshape(2, 4), pred.reshape(2, 4))
    assert (c.images, c.ignored, int(c.hist.sum())) == (1, 3, 5)
    # uint8 labels (as read from PNGs) must not overflow in n * gt + pred
    g8 = np.full((2, 2), 20, np.uint8)
    assert fast_hist(g8, g8, 21)[20, 20] == 4


def test_bad_predictions_and_shapes_are_errors():
    with pytest.raises(UserInputError, match="prediction holds label 5"):
        fast_hist(np.array([0, 1]), np.array([0, 5]), 3)
    fast_hist(np.array([0, 255]), np.array([0, 5]), 3)           # void gt: not counted, fine
    with pytest.raises(UserInputError, match="shape"):
        Confusion(3).add(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(UserInputError, match="merge"):
        Confusion(3).merge(Confusion(4))
    with pytest.raises(UserInputError):
        Confusion(0)


def _transcribed_compute_hist(gts, preds, losses, n):
    """compute_hist and do_seg_tests as FCN_FACTS §4 describes them, written out independently:
    a float64 matrix summed image by image, then the four formulas."""
    hist = np.zeros((n, n))
    for a, b in zip(gts, preds):
        a, b = a.flatten(), b.flatten()
        k = (a >= 0) & (a < n)
        hist += np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        acc = np.diag(hist).sum() / hist.sum()
        per_class = np.diag(hist) / hist.sum(1)
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        freq = hist.sum(1) / hist.sum()
        return hist, {"overall_acc": acc, "mean_acc": np.nanmean(per_class),
                      "mean_iu": np.nanmean(iu), "fwavacc": (freq[freq > 0] * iu[freq > 0]).sum(),
                      "loss": sum(losses) / len(gts), "iu": iu, "acc": per_class}


@pytest.mark.parametrize("n,seed", [(21, 0), (5, 1), (33, 2)])
def test_accumulator_matches_the_transcribed_loop(n, seed):
    rng = np.random.default_rng(seed)
    gts, preds, losses = [], [], []
    for _ in range(9):
        h, w = rng.integers(5, 40, 2)
        gt = rng.integers(0, n, (h, w))
        gt[rng.random((h, w)) < 0.1] = 255                   # void
        if seed == 2:
            gt[gt == n - 1] = 255           # class n-1 absent from the gt, yet predicted
        pred = np.where(rng.random((h, w)) < 0.6, np.where(gt == 255, 0, gt),
                        rng.integers(0, n, (h, w)))
        gts.append(gt.astype(np.uint8))
        preds.append(pred)
        losses.append(float(rng.random() * 1e4))
    ref_hist, ref = _transcribed_compute_hist(gts, preds, losses, n)
    first, second = Confusion(n), Confusion(n)           # two halves merged, as eval over procs
    for k, (g, p, loss) in enumerate(zip(gts, preds, losses)):
        (first if k < 4 else second).add(g, p, loss=loss)
    got = first.merge(second).metrics()
    np.testing.assert_array_equal(first.hist, ref_hist)
    for key in ("overall_acc", "mean_acc", "mean_iu", "fwavacc"):
        assert got[key] == ref[key], key                 # same float64 operations: bit-equal
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-15)
    np.testing.assert_array_equal(got["iu"], ref["iu"])
    np.testing.assert_array_equal(got["acc"], ref["acc"])
    assert got["images"] == 9 and got["pixels"] + got["ignored"] == sum(g.size for g in gts)


def test_confusion_png(tmp_path):
    rng = np.random.default_rng(0)
    hist = rng.integers(0, 50, (21, 21)) + np.diag(rng.integers(100, 900, 21))
    hist[7] = 0                                           # a class absent from the ground truth
    path = confusion_png(hist, tmp_path / "conf.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) > 400
    with pytest.raises(UserInputError, match="3 class names for 21"):
        confusion_png(hist, tmp_path / "bad.png", ["a", "b", "c"])
    assert not (tmp_path / "bad.png").exists()
    confusion_png(np.eye(60, dtype=int) * 5, tmp_path / "sixty.png")   # no labels per cell
