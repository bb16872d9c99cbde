"""Evaluation during training, as the official ``solve.py`` scripts do it (``fcn-port train
--eval-every N``).

How the official code does it (``solve.py`` of each model, ``score.py`` ``seg_tests``; facts in
``shared/FCN_FACTS.md`` §1 and §4): the solver never tests by itself (``test_interval:
999999999``); ``solve.py`` loops ``solver.step(N)`` then ``score.seg_tests(solver, ...)`` (VOC:
25 x ``step(4000)``; SIFT Flow: ``seg_tests`` twice, for ``score_sem``/``sem`` and
``score_geo``/``geo``). So the weights scored at iteration ``k * N`` are those after ``k * N``
updates, the same as the snapshot written at that iteration, and ``seg_tests`` prints
(with the date and the iteration) the mean per-image loss, overall accuracy, mean accuracy, mean
IU and frequency-weighted IU.

:class:`SegTestHook` is that loop as a :class:`~.train.Trainer` hook: after every iteration it
scores when ``N`` divides the iteration count, and once more at the end of the run when the last
iteration was not scored (a stop, or ``max_iter`` not a multiple of ``N``; solve.py has no end
but its loop). The scoring itself is the ``evaluate()`` of an evaluator the caller builds (the
CLI passes reproduce/'s :func:`~fcn_port.reproduce.segtests.solver_evaluator` down: solvers/
does not import reproduce/); it returns one dict per head. Each evaluation is logged as one
line per head in score.py's words, and written to ``<snapshot_prefix>_eval.csv`` (a row per
iteration and head, flushed as it goes; its header and kept rows are written whole first,
:func:`~.log.open_csv_log`, so a crash can only cut its last row), ``_eval.json`` (every evaluation, per-class IU and
accuracy and the confusion matrix included; rewritten whole after each) and ``_eval.png`` (the
four metrics over the iterations, one panel per head) at the end.

Where we differ: the official loop evaluates only after full ``step(N)`` calls and has no
evaluation at the end; a resumed run rewrites the CSV/JSON, keeping the old evaluations up to the resume point
(the one taken at a stop included: it scored the very weights the run resumes from).
"""
import csv
import datetime
import json
import os
from pathlib import Path

METRICS = ("overall_acc", "mean_acc", "mean_iu", "fwavacc")
TITLES = {"overall_acc": "overall accuracy", "mean_acc": "mean accuracy", "mean_iu": "mean IU",
          "fwavacc": "fwavacc"}
FIELDS = ("iter", "score", "label", "images", "loss") + METRICS


class SegTestHook:
    """Score every ``every`` iterations with ``evaluator.evaluate()``; files under ``prefix``.
    ``echo(line)``: where the log lines go (the trainer's). ``evaluations``: what was scored,
    ``[{"iter", "heads": [...]}]``."""

    def __init__(self, every, evaluator, prefix, *, start_iter=0, echo=print):
        if int(every) != every or every < 1:
            from fcn_port.port.errors import UserInputError

            raise UserInputError(f"--eval-every must be >= 1, not {every}")
        self.every, self.evaluator, self.echo = int(every), evaluator, echo
        prefix = os.fspath(prefix)
        self.csv_path = Path(f"{prefix}_eval.csv")
        self.json_path = Path(f"{prefix}_eval.json")
        self.png_path = Path(f"{prefix}_eval.png")
        self.evaluations, self._last, self._file, self._drawn = [], None, None, False
        if start_iter and self.json_path.exists():
            # the resumed weights at start_iter are the snapshot's, so an evaluation taken
            # there (at a stop) holds; later ones were of a run now replaced
            self.evaluations = [e for e in _earlier(self.json_path)
                                if e["iter"] <= start_iter]
            if self.evaluations and self.evaluations[-1]["iter"] == start_iter:
                self._last = start_iter

    # ---- files --------------------------------------------------------------------------

    def _open(self):
        from .log import open_csv_log

        rows = [_row(e["iter"], h) for e in self.evaluations for h in e["heads"]]
        self._file = open_csv_log(self.csv_path, FIELDS, rows)
        self._writer = csv.DictWriter(self._file, FIELDS)

    def _rows(self, evaluation):
        for h in evaluation["heads"]:
            self._writer.writerow(_row(evaluation["iter"], h))
        self._file.flush()

    def _write_json(self):
        from fcn_port.port.fileio import atomic_output

        body = json.dumps({"every": self.every, "evaluations": self.evaluations})
        with atomic_output(self.json_path, "w") as f:
            f.write(body)

    # ---- the schedule -------------------------------------------------------------------

    def evaluate(self, it):
        """Score now (iteration ``it``); log, append to the files; returns the heads."""
        if self._file is None:
            self._open()
        heads = self.evaluator.evaluate()
        evaluation = {"iter": int(it), "heads": heads}
        self.evaluations.append(evaluation)
        self._last = it
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for h in heads:
            loss = "-" if h.get("loss") is None else f"{h['loss']:g}"
            self.echo(f"{stamp} Iteration {it} {h['score']} vs {h['label']} ({h['images']} "
                      f"images): loss {loss}, " + ", ".join(
                          f"{TITLES[k]} {_pct(h[k])}" for k in METRICS))
        self._rows(evaluation)
        self._write_json()
        return heads

    def after_iter(self, trainer):
        """Called by the trainer after each iteration (its counter already advanced). At every
        multiple of ``every`` the next ``solver.step(N)`` of solve.py begins, and Caffe's
        ``Step`` restarts the smoothed loss (``losses_.clear()``): so does the solver here."""
        it = trainer.solver.iter
        if it % self.every == 0 and it != self._last:
            self.evaluate(it)
        if it % self.every == 0:
            trainer.solver.begin()

    def at_end(self, trainer):
        """Called once when training ends (not after a failure; the trainer calls :meth:`close`
        in any case): score the final weights unless that iteration was scored; then close the
        CSV and draw the PNG."""
        it = trainer.solver.iter
        if it != self._last and (it > 0 or not self.evaluations):
            self.evaluate(it)
        return self.close()

    def close(self):
        """Close the CSV and draw the PNG (once; None when nothing was scored)."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        if not self.evaluations or self._drawn:
            return None
        self._drawn = True
        return plot_evaluations(self.png_path, self.evaluations)


def _earlier(path):
    """The evaluations an earlier run wrote to ``path`` that are of the shape this hook writes
    (an unreadable file, or an entry of another shape, is dropped: the CSV is rewritten)."""
    from fcn_port.port.errors import CaffeFormatError
    from fcn_port.port.fileio import read_json

    def number(v):
        return v is None or type(v) in (int, float)

    def head(h):
        return (isinstance(h, dict) and isinstance(h.get("score"), str)
                and all(number(h.get(k)) for k in METRICS + ("loss",)))
    try:
        old = read_json(path, "an eval JSON written by fcn-port train")
    except (OSError, CaffeFormatError):
        return []
    found = old.get("evaluations") if isinstance(old, dict) else None
    return [e for e in found if isinstance(e, dict) and type(e.get("iter")) is int
            and isinstance(e.get("heads"), list) and all(head(h) for h in e["heads"])] \
        if isinstance(found, list) else []


def _row(it, head):
    return {"iter": it, **{k: head.get(k) for k in FIELDS[1:]}}


def _pct(x):
    return "-" if x is None or x != x else f"{100 * x:.2f}%"


def plot_evaluations(path, evaluations, *, title="evaluation during training"):
    """The four metrics (percent) over the iterations, one panel per head; returns the path."""
    from fcn_port.port.fileio.figures import png_figure

    heads = []
    for e in evaluations:
        for h in e["heads"]:
            if h["score"] not in heads:
                heads.append(h["score"])
    with png_figure(path, ncols=len(heads), figsize=(6 * len(heads), 4), dpi=100,
                    squeeze=False) as (fig, axes):
        for ax, name in zip(axes[0], heads):
            pts = [(e["iter"], h) for e in evaluations for h in e["heads"] if h["score"] == name]
            its = [i for i, _ in pts]
            for k in METRICS:
                ys = [float("nan") if h.get(k) is None else 100 * h[k] for _, h in pts]
                ax.plot(its, ys, marker="o" if len(its) <= 50 else None, label=TITLES[k])
            label = pts[0][1].get("label", "") if pts else ""
            ax.set_title(f"{name} vs {label}")
            ax.set_xlabel("iteration")
            ax.set_ylabel("percent")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(title)
    return Path(path)
