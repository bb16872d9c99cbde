"""Scoring as the official ``score.py``: one confusion matrix over a whole split, and its metrics.

How the official code computes it (facts in ``shared/FCN_FACTS.md`` §4):

* ``fast_hist(a, b, n)`` takes the ground truth ``a`` and the prediction ``b`` of one image,
  keeps the pixels whose ground truth is in ``[0, n)`` (so void 255 and any other out-of-range
  label drop out) and counts them with ``bincount(n * a + b, minlength=n*n)`` reshaped to
  ``(n, n)``: rows are ground truth, columns prediction.
* ``compute_hist`` runs the test net over the split one image at a time, adds each image's
  ``fast_hist`` (ground truth blob against the argmax over the score channels) into one float64
  matrix, and sums the net's ``loss`` output; it returns the matrix and the loss divided by the
  number of images, i.e. the mean per-image loss (with ``normalize: false`` that is each image's
  loss summed over its pixels).
* ``seg_tests`` (through ``do_seg_tests``) prints that loss and four numbers from the matrix, in
  float64: overall accuracy ``diag.sum() / hist.sum()``; mean accuracy ``nanmean(diag /
  hist.sum(1))``; mean IU ``nanmean(diag / (hist.sum(1) + hist.sum(0) - diag))``; and
  frequency-weighted IU, ``freq = hist.sum(1) / hist.sum()`` then ``(freq[freq > 0] *
  iu[freq > 0]).sum()``. One global matrix, never a per-image average.

An empty matrix (every pixel void) gives NaN for the first three and 0.0 for frequency-weighted
IU (an empty sum), as score.py prints them.

Consequences kept here on purpose: a class absent from the ground truth has accuracy NaN and
is left out of the mean accuracy; its IU is NaN (left out of the mean IU) only if it is also
never predicted, while a class that is predicted but absent from the ground truth has IU 0 and
pulls the mean IU down (the SIFT Flow solve.py's "missing classes" remark).

Where we differ: the counts are kept as int64 (exact at any split size; score.py's float64 sum
is exact below 2**53 pixels, so the metrics are the same) and converted to float64 for the
metrics; numpy's divide-by-zero and empty-nanmean warnings are silenced (the NaNs stay); a
prediction outside ``[0, n)`` where the ground truth counts is an error rather than a count
in another cell (an argmax never makes one, a PNG from elsewhere can); per-class IU and
accuracy, the count of ignored pixels and a heat map of the matrix (:func:`confusion_png`) are
additions. :class:`Confusion` is the accumulator: ``add`` an image at a time, ``merge`` partial
matrices (one per process), then ``metrics()``.
"""
import os
import warnings
from pathlib import Path

import numpy as np

from ..models.vis import VOC_CLASSES, names_for  # noqa: F401  (score's names, re-exported)
from ..port.errors import CaffeFormatError, UserInputError


METRICS = ("overall_acc", "mean_acc", "mean_iu", "fwavacc")
METRIC_TITLES = {"overall_acc": "pixel acc", "mean_acc": "mean acc", "mean_iu": "mean IU",
                 "fwavacc": "fw IU"}


def fast_hist(gt, pred, n):
    """The (n, n) int64 confusion counts of one image: rows ground truth, columns prediction.
    Ground-truth labels outside [0, n) (void 255 among them) are ignored, tested on the values
    as given before they become integers, as score.py masks then casts (a float label -0.5 is
    dropped, not counted as class 0; 20.5 of 21 classes counts as 20)."""
    gt = np.asarray(gt).reshape(-1)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if gt.shape != pred.shape:
        raise UserInputError(f"ground truth has {gt.size} pixels, prediction {pred.size}")
    keep = (gt >= 0) & (gt < n)
    g, p = gt[keep].astype(np.int64), pred[keep]
    if p.size and (p.min() < 0 or p.max() >= n):
        bad = int(p[(p < 0) | (p >= n)][0])
        raise UserInputError(f"prediction holds label {bad} where the ground truth counts; "
                             f"predictions must lie in [0, {n})")
    return np.bincount(n * g + p, minlength=n * n).reshape(n, n)


def metrics(hist):
    """score.py's four numbers and the per-class IU and accuracy of a confusion matrix, in
    float64 (fractions, not percent). Keys: overall_acc, mean_acc, mean_iu, fwavacc, iu, acc."""
    hist = np.asarray(hist, dtype=np.float64)
    if hist.ndim != 2 or hist.shape[0] != hist.shape[1]:
        raise UserInputError(f"a confusion matrix is n x n; got shape {hist.shape}")
    diag = np.diag(hist)
    gt_count, pred_count, total = hist.sum(1), hist.sum(0), hist.sum()
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN
        acc = diag / gt_count
        iu = diag / (gt_count + pred_count - diag)
        freq = gt_count / total
        return {
            "overall_acc": float(diag.sum() / total),
            "mean_acc": float(np.nanmean(acc)),
            "mean_iu": float(np.nanmean(iu)),
            "fwavacc": float((freq[freq > 0] * iu[freq > 0]).sum()),  # 0.0 when empty
            "iu": iu, "acc": acc}


class Confusion:
    """One confusion matrix over a split, as compute_hist builds it, plus the mean loss.

    ``add(gt, pred, loss=None)`` counts one image (label arrays of one shape; ``loss`` the net's
    loss on it, if known); ``merge(other)`` adds another accumulator's counts (eval split over
    processes); ``metrics()`` gives :func:`metrics` of the matrix plus ``loss`` (the mean over
    the images that gave one, None if none did), ``images``, ``pixels`` and ``ignored``."""

    def __init__(self, n):
        if int(n) != n or n < 1:
            raise UserInputError(f"the number of classes must be a positive integer, not {n!r}")
        self.n = int(n)
        self.hist = np.zeros((self.n, self.n), dtype=np.int64)
        self.images = self.ignored = self.loss_images = 0
        self.loss_sum = 0.0

    def add(self, gt, pred, loss=None):
        gt, pred = np.asarray(gt), np.asarray(pred)
        if gt.shape != pred.shape:
            raise UserInputError(f"ground truth shape {gt.shape} != prediction shape {pred.shape}")
        h = fast_hist(gt, pred, self.n)
        self.hist += h
        self.ignored += gt.size - int(h.sum())
        self.images += 1
        if loss is not None:
            self.loss_sum += float(loss)
            self.loss_images += 1
        return self

    def merge(self, other):
        if other.n != self.n:
            raise UserInputError(f"cannot merge a {other.n}-class matrix into a {self.n}-class one")
        self.hist += other.hist
        self.images += other.images
        self.ignored += other.ignored
        self.loss_sum += other.loss_sum
        self.loss_images += other.loss_images
        return self

    @property
    def loss(self):
        return self.loss_sum / self.loss_images if self.loss_images else None

    def metrics(self):
        out = metrics(self.hist)
        out.update(loss=self.loss, images=self.images, pixels=int(self.hist.sum()),
                   ignored=self.ignored)
        return out


# --------------------------------------------------------------------------- label PNGs

def read_labels(path):
    """A label PNG as an (H, W) uint8 array of its indices: paletted ('P', the VOC
    SegmentationClass files, score.py's saved predictions) or 8-bit grayscale ('L')."""
    from ..models.preprocess import open_image

    im = open_image(path, expected="a paletted or 8-bit grayscale label PNG")
    if im.mode not in ("P", "L"):
        raise CaffeFormatError(path, "", f"image mode {im.mode}; expected a paletted (P) or "
                               "8-bit grayscale (L) label PNG whose values are class indices")
    return np.asarray(im, dtype=np.uint8)


def _pngs(folder, flag):
    if not os.path.isdir(folder):
        raise UserInputError(f"{flag} {folder}: no such directory")
    found = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() == ".png" and os.path.isfile(os.path.join(folder, name)):
            found.setdefault(stem, os.path.join(folder, name))
    return found


def pair_folders(pred_dir, gt_dir):
    """``[(stem, pred_path, gt_path)]`` for every ground-truth PNG, matched by file stem, and
    the number of predictions with no ground truth. A missing prediction is an error."""
    gts, preds = _pngs(gt_dir, "--gt"), _pngs(pred_dir, "--pred")
    if not gts:
        raise UserInputError(f"--gt {gt_dir}: no .png label maps in it")
    missing = [s for s in gts if s not in preds]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserInputError(f"no prediction for {gts[missing[0]]}{more}: expected "
                             f"{os.path.join(pred_dir, missing[0] + '.png')}")
    pairs = [(s, preds[s], gts[s]) for s in gts]
    return pairs, len(preds) - len(pairs)


def score_folders(pred_dir, gt_dir, n=21, *, void=255, progress=True):
    """Score the PNG predictions in ``pred_dir`` against the ground truth in ``gt_dir``.

    Every ground-truth value must be a class in [0, n) or ``void``; every prediction a class
    (where the ground truth is not void). Returns (Confusion, number of unmatched predictions).
    Errors name the file."""
    from tqdm import tqdm

    pairs, extra = pair_folders(pred_dir, gt_dir)
    conf = Confusion(n)
    for stem, pred_path, gt_path in tqdm(pairs, desc="scoring", unit="img", leave=False,
                                         disable=None if progress else True):
        gt, pred = read_labels(gt_path), read_labels(pred_path)
        if gt.shape != pred.shape:
            raise UserInputError(f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} (WxH) != "
                                 f"its ground truth {gt_path} {gt.shape[1]}x{gt.shape[0]}")
        bad_gt = (gt >= n) & (gt != void)
        if bad_gt.any():
            raise UserInputError(f"{gt_path}: label {int(gt[bad_gt][0])} is not a class of "
                                 f"--classes {n} nor void {void}")
        counted = gt != void
        bad_pred = pred[counted] >= n
        if bad_pred.any():
            raise UserInputError(f"{pred_path}: label {int(pred[counted][bad_pred][0])} is not a "
                                 f"class of --classes {n}")
        conf.add(gt, pred)
    return conf, extra


# --------------------------------------------------------------------------- report

def json_number(x):
    """A metric for JSON: a float, or None for NaN or no value (JSON has no NaN)."""
    return None if x is None or x != x else float(x)


def percent(x):
    """A metric as the paper prints it: percent with two decimals, '-' for NaN or no value."""
    return "-" if x is None or x != x else f"{100 * x:.2f}"


def rows(result, names):
    """Per-class rows ``{"class", "iu", "acc"}`` with NaN as None (JSON has no NaN)."""
    return [{"class": c, "iu": json_number(i), "acc": json_number(a)}
            for c, i, a in zip(names, result["iu"], result["acc"])]


def format_table(result, names):
    """The readable report: the four metrics in percent as the paper gives them, then per class."""
    lines = [f"{result['images']} images, {len(names)} classes, {result['pixels']} pixels "
             f"scored, {result['ignored']} void or out-of-range pixels ignored", ""]
    lines.append("  ".join(f"{METRIC_TITLES[k]:>9}" for k in METRICS))
    lines.append("  ".join(f"{percent(result[k]):>9}" for k in METRICS))
    if result.get("loss") is not None:
        lines.append(f"loss (mean per image): {result['loss']:.6g}")
    width = max(9, *(len(c) for c in names))
    lines += ["", f"{'class':<{width}}  {'IU':>6}  {'acc':>6}"]
    for row in rows(result, names):
        lines.append(f"{row['class']:<{width}}  {percent(row['iu']):>6}  {percent(row['acc']):>6}")
    lines.append("(percent; acc '-': the class is absent from the ground truth; IU '-': "
                 "absent and never predicted; IU 0 with acc '-': predicted though absent, which "
                 "lowers the mean IU as in score.py)")
    return "\n".join(lines)


def confusion_png(hist, path, class_names=None, *, title="confusion matrix"):
    """Draw ``hist`` as a heat map into the PNG ``path`` (written whole or not at all): each row
    (ground truth class) normalized to sum to 1, so the diagonal is the per-class accuracy;
    rows with no ground truth pixels are left blank. Class names on both axes (VOC's for 21
    classes by default). Returns the path."""
    import matplotlib

    from ..port.fileio.figures import png_figure

    hist = np.asarray(hist, dtype=np.float64)
    n = hist.shape[0]
    names = names_for(n, class_names)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = hist / hist.sum(1, keepdims=True)
    side = max(5.0, 0.32 * n + 2.5)
    with png_figure(path, figsize=(side + 1.2, side), dpi=100) as (fig, ax):
        cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#eeeeee")
        im = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0.0, vmax=1.0,
                       interpolation="nearest")
        ticks = np.arange(n) if n <= 60 else np.arange(0, n, max(1, n // 30))
        ax.set_xticks(ticks, [names[k] for k in ticks], rotation=90, fontsize=8)
        ax.set_yticks(ticks, [names[k] for k in ticks], fontsize=8)
        if n <= 25:
            for i in range(n):
                for j in range(n):
                    v = norm[i, j]
                    if v == v and v >= 0.005:
                        ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6,
                                color="white" if v > 0.5 else "black")
        ax.set_xlabel("prediction")
        ax.set_ylabel("ground truth")
        ax.set_title(f"{title} (rows normalized" + (", cells in percent)" if n <= 25 else ")"))
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the ground-truth row")
    return Path(path)
