"""The training log: one CSV row per iteration and loss-curve PNGs.

Caffe writes its progress only as glog lines (``Solver::Step``: ``Iteration N (... iter/s),
loss = X`` every ``display`` iterations; ``SGDSolver::ApplyUpdate``: ``Iteration N, lr = Y``),
and users recover curves by parsing them (``tools/extra/parse_log.py``,
``plot_training_log.py``). fcn-port also records every iteration, whatever ``display`` is:
``<snapshot_prefix>_log.csv`` with ``iter, loss, smoothed_loss, lr`` (``iter``: the iteration
whose forward passes gave ``loss``, i.e. Caffe's ``iter_`` before ``ApplyUpdate``; ``lr``: the
rate that update used), flushed as it goes, and at the end ``<snapshot_prefix>_loss.png``.
A resumed run keeps the rows before its start iteration and continues the file.

The CSV is the one output appended to as training goes (every other file is written whole
under a temporary name and renamed): its header and kept rows are written whole that way
first (:func:`open_csv_log`), so a crash can only cut its last row, which a resumed run drops.

PNGs are drawn with matplotlib's Agg backend (no display needed).
"""
import csv
import os
from pathlib import Path

FIELDS = ("iter", "loss", "smoothed_loss", "lr")


class TrainLog:
    """``<prefix>_log.csv``, appended per iteration; ``rows`` holds what it holds."""

    def __init__(self, prefix, start_iter=0):
        self.csv_path = Path(f"{os.fspath(prefix)}_log.csv")
        self.png_path = Path(f"{os.fspath(prefix)}_loss.png")
        self.rows = []
        if start_iter and self.csv_path.is_file():  # resumed: keep the earlier iterations
            self.rows = [r for r in read_rows(self.csv_path) if r["iter"] < start_iter]
        self._file = open_csv_log(self.csv_path, FIELDS, self.rows)
        self._writer = csv.DictWriter(self._file, FIELDS)

    def add(self, it, loss, smoothed, lr):
        row = {"iter": it, "loss": loss, "smoothed_loss": smoothed, "lr": lr}
        self.rows.append(row)
        self._writer.writerow(row)
        self._file.flush()

    def close(self, title=""):
        """Close the CSV and draw the PNG (when there are rows); returns the PNG path or None."""
        if not self._file.closed:
            self._file.close()
        if not self.rows:
            return None
        its = [r["iter"] for r in self.rows]
        curves = [("loss", its, [r["loss"] for r in self.rows]),
                  ("smoothed loss (average_loss)", its, [r["smoothed_loss"] for r in self.rows])]
        plot_curves(self.png_path, curves, title=title or "training loss")
        return self.png_path


def read_rows(path, fields=FIELDS):
    """The rows of a CSV log an earlier run wrote, numbers parsed; a row that does not parse
    (the last, cut by a crash; one with bytes that are not UTF-8) is skipped, and reading
    stops at anything csv refuses (a field over its 128 KB limit)."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                try:
                    rows.append({k: (int(row[k]) if k == "iter" else float(row[k]))
                                 for k in fields})
                except (KeyError, TypeError, ValueError):
                    continue
    except (OSError, csv.Error):
        pass
    return rows


def open_csv_log(path, fields, rows=()):
    """The CSV ``path`` with its header and ``rows`` written whole (atomically: a crash leaves
    the old file or the new one, never a file cut inside its header), then open for appending.
    The one kind of output fcn-port appends to as it goes; a crash can cut only the last row
    (readers skip a row that does not parse)."""
    import io

    from fcn_port.port.fileio import atomic_output

    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fields)
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as f:
        f.write(text.getvalue().encode("utf-8"))
    return open(path, "a", newline="", encoding="utf-8")


def plot_curves(path, curves, *, title="", ylabel="loss", logy=None):
    """Draw ``[(label, x, y)]`` into the PNG ``path`` (written whole or not at all). ``logy``:
    a log y axis; by default when every value is positive and they span over 100x."""
    from fcn_port.port.fileio.figures import png_figure

    ys = [v for _, _, y in curves for v in y if v == v and abs(v) != float("inf")]
    if logy is None:
        logy = bool(ys) and min(ys) > 0 and max(ys) / min(ys) > 100
    with png_figure(path, figsize=(7, 4), dpi=100) as (fig, ax):
        styles = ["-", "--", ":", "-."]
        for k, (label, x, y) in enumerate(curves):
            ax.plot(x, y, styles[k % len(styles)], label=label, linewidth=1.5,
                    marker="." if len(x) <= 50 else None)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    return Path(path)


def plot_case_losses(folder, row):
    """``--plot DIR`` of ``fcn-port parity``: ``DIR/<case>_loss.png`` with fcn-port's loss per
    step against Caffe's (a solver case's row: ``losses``, ``caffe_losses``). Returns the path,
    or None for a row without losses (a forward case, a failed case)."""
    ours, caffe = row.get("losses"), row.get("caffe_losses")
    if not ours:
        return None
    curves = [("fcn-port", list(range(len(ours))), ours)]
    if caffe:
        curves.insert(0, ("Caffe", list(range(len(caffe))), caffe))
    verdict = {True: "pass", False: "FAIL"}.get(row.get("pass"), "")
    worst = row.get("worst")
    title = f"{row['case']}: loss per step" + (f" (worst param error {worst:.2e}, {verdict})"
                                               if worst is not None else "")
    return plot_curves(Path(folder) / f"{row['case']}_loss.png", curves, title=title)
