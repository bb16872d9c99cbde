"""The reproduction report of ``reproduce/voc2011.sh``: the results table next to the paper's.

Each stage of the recipe (FCN-32s, then 16s, then 8s; or 8s at once) ends with ``fcn-port eval
... --json`` on seg11valid. ``fcn-port report`` gathers those JSON files into

* ``results.md``: one row per stage, the four numbers of score.py in percent (pixel accuracy,
  mean accuracy, mean IU, frequency-weighted IU), the paper's mean IU for that model (the
  official README's: 63.6 / 65.0 / 65.5 / 65.4 on seg11valid) and the difference; then, for
  reference, what the released FCN-8s caffemodel scores on seg11valid (91.22 / 77.61 / 65.51 /
  84.54, the converted official model's figures in wkentaro/fcn's README; ``voc2011.sh
  --eval-official`` measures it here);
* ``results.json``: the same rows with every number (fractions, as ``eval --json`` gives them),
  the per-class IU, and the paper's values;
* ``curves.png``: the training loss of every stage on one axis of iterations (each stage
  continues where the last ended), from the ``<snapshot_prefix>_log.csv`` files ``fcn-port
  train`` writes, with the mean IU of each evaluation (``_eval.csv``, when trained with
  ``--eval-every``) on a second panel.

A stage is named ``NAME=EVAL.json[,LOG.csv[,EVAL.csv]]``: ``NAME`` an official model name (the
paper's number is looked up by it) or any label. Everything is read and checked before anything
is written; the outputs are written atomically.
"""
import csv
import json
import os
from pathlib import Path

from ..port.errors import CaffeFormatError, UserInputError

# mean IU on seg11valid, percent: the official repository's README (shared/FCN_FACTS.md §6)
PAPER_MEAN_IU = {"voc-fcn32s": 63.6, "voc-fcn16s": 65.0, "voc-fcn8s": 65.5,
                 "voc-fcn8s-atonce": 65.4, "voc-fcn-alexnet": 48.0}
# the released fcn8s-heavy-pascal.caffemodel on seg11valid, percent (wkentaro/fcn's README)
OFFICIAL_FCN8S = {"overall_acc": 91.2212, "mean_acc": 77.6146, "mean_iu": 65.5126,
                  "fwavacc": 84.5445}


def parse_stage(text):
    """``NAME=EVAL.json[,LOG.csv[,EVAL.csv]]`` -> dict(name, eval, log, evals)."""
    name, sep, files = text.partition("=")
    parts = files.split(",") if sep else []
    if not name or not parts or not parts[0] or len(parts) > 3:
        raise UserInputError(f"--stage {text!r}: expected NAME=EVAL.json[,LOG.csv[,EVAL.csv]]")
    parts += [None] * (3 - len(parts))
    return {"name": name, "eval": parts[0], "log": parts[1] or None, "evals": parts[2] or None}


EVAL_JSON = "the output of 'fcn-port eval --json'"
MAX_CSV = 64 << 20  # bytes: a 1M-iteration train log is about 40 MB


def _read_eval(path):
    """The first head of an ``fcn-port eval --json`` file: its four metrics and per-class rows,
    each of the type eval writes (a hostile file is one line, not an error deep in the table)."""
    from ..port.fileio import read_json
    from .score import METRICS  # score's numpy stays out of fcn-port's start-up

    try:
        doc = read_json(path, EVAL_JSON)
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file (the stage's 'fcn-port eval --json' "
                             "output)") from None
    heads = doc.get("heads") if isinstance(doc, dict) else None
    if not (isinstance(heads, list) and heads and isinstance(heads[0], dict)
            and all(k in heads[0] for k in METRICS)):
        raise CaffeFormatError(path, "", f"no 'heads' with the four metrics; expected {EVAL_JSON}")
    head = heads[0]

    def need(where, value, ok, what):
        if value is not None and not ok(value):
            raise CaffeFormatError(path, where, f"{str(value)[:40]!r}, not {what}; expected "
                                   f"{EVAL_JSON}")
    for k in METRICS + ("loss",):
        need(k, head.get(k), _is_number, "a number")
    for k in ("model", "split", "checkpoint"):
        need(k, doc.get(k), lambda v: isinstance(v, str), "a string")
    need("images", doc.get("images"), lambda v: type(v) is int, "a count")
    need("per_class", head.get("per_class"), lambda v: isinstance(v, list), "a list")
    for row in head.get("per_class") or ():
        need("per_class", row, lambda r: isinstance(r, dict) and isinstance(r.get("class"), str)
             and all(r.get(k) is None or _is_number(r.get(k)) for k in ("iu", "acc")),
             "a row of class, iu and acc")
    return doc, head


def _is_number(v):
    return type(v) in (int, float)


def _read_csv(path, fields, what):
    """Rows of a CSV written by ``fcn-port train`` (numbers as floats, iterations as ints)."""
    try:
        if not os.path.isfile(path) and os.path.exists(path):  # a FIFO would block the read
            raise CaffeFormatError(path, "", f"not a regular file; expected {what}")
        if os.path.getsize(path) > MAX_CSV:
            raise CaffeFormatError(path, "", f"over {MAX_CSV >> 20} MB; expected {what}")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [k for k in fields if k not in (reader.fieldnames or ())]
            if missing:
                raise CaffeFormatError(path, "", f"no column {missing[0]!r}; expected {what}")
            rows = []
            for row in reader:
                try:
                    rows.append({f: int(row[f]) if f == "iter" else float(row[f]) for f in fields})
                except (TypeError, ValueError):
                    raise CaffeFormatError(path, f"line {reader.line_num}", "not a number; "
                                           f"expected {what}") from None
            return rows
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file ({what})") from None
    except csv.Error as e:  # a field over csv's limit (128 KB), a NUL byte
        raise CaffeFormatError(path, f"after line {reader.line_num}", f"{e}; expected "
                               f"{what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CaffeFormatError(path, "", f"cannot read ({e}); expected {what}") from None


def collect(stages):
    """Read every stage's files (dicts from :func:`parse_stage`); the report's rows."""
    from .score import METRICS

    rows = []
    for st in stages:
        doc, head = _read_eval(st["eval"])
        row = {"stage": st["name"], "model": doc.get("model"), "split": doc.get("split"),
               "images": doc.get("images"), "checkpoint": doc.get("checkpoint"),
               "paper_mean_iu": PAPER_MEAN_IU.get(st["name"], PAPER_MEAN_IU.get(doc.get("model"))),
               "per_class": head.get("per_class"), "loss": head.get("loss")}
        row.update({k: head[k] for k in METRICS})
        if st["log"]:
            row["losses"] = _read_csv(st["log"], ("iter", "loss"), "a train log CSV "
                                      "(<snapshot_prefix>_log.csv)")
        if st["evals"]:
            row["evals"] = _read_csv(st["evals"], ("iter", "mean_iu"), "an eval CSV "
                                     "(<snapshot_prefix>_eval.csv)")
        rows.append(row)
    return rows


def markdown(rows, title="FCN on PASCAL VOC 2011 seg11valid"):
    """The results table: ours in percent, the paper's mean IU, the difference."""
    from .score import METRIC_TITLES, METRICS, percent

    titles = [METRIC_TITLES[k] for k in METRICS]
    out = [f"# {title}", "", "| stage | images | " + " | ".join(titles) +
           " | paper mean IU | difference |", "|---" * 8 + "|"]
    for r in rows:
        paper = r["paper_mean_iu"]
        diff = "-" if paper is None or r["mean_iu"] is None else \
            f"{100 * r['mean_iu'] - paper:+.2f}"
        out.append(f"| {r['stage']} | {r['images'] if r['images'] is not None else '-'} | " +
                   " | ".join(percent(r[k]) for k in METRICS) +
                   f" | {paper if paper is not None else '-'} | {diff} |")
    out += ["", "Percent, as score.py prints them (one confusion matrix over the split). The "
            "paper's mean IU is the official README's for the same model on seg11valid.",
            "The released FCN-8s caffemodel scores " +
            " / ".join(f"{OFFICIAL_FCN8S[k]:.2f}" for k in METRICS) +
            f" ({' / '.join(titles)}) on seg11valid."]
    return "\n".join(out) + "\n"


def curves_png(rows, path):
    """Loss of every stage over one axis of iterations, and the mean IU of each evaluation."""
    from ..port.fileio.figures import png_figure

    evals = any(r.get("evals") for r in rows)
    with png_figure(path, nrows=2 if evals else 1, figsize=(8, 6 if evals else 4), dpi=100,
                    squeeze=False) as (fig, axes):
        offset = 0
        for r in rows:
            its = [x["iter"] + offset for x in r.get("losses") or ()]
            if its:
                axes[0][0].plot(its, [x["loss"] for x in r["losses"]], linewidth=1,
                                label=r["stage"])
            if evals and r.get("evals"):
                axes[1][0].plot([x["iter"] + offset for x in r["evals"]],
                                [100 * x["mean_iu"] for x in r["evals"]], marker="o",
                                label=r["stage"])
            offset = max(its, default=offset - 1) + 1
        axes[0][0].set_ylabel("training loss")
        axes[0][0].set_title("training loss per stage (iterations run on from stage to stage)")
        if evals:
            axes[1][0].set_ylabel("mean IU (%)")
            axes[1][0].set_title("evaluation during training")
        for (ax,) in axes:
            ax.set_xlabel("iteration")
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend()
    return Path(path)


def write_report(stages, out_dir, title=None):
    """Read the stages, then write results.md, results.json and (with logs) curves.png into
    ``out_dir``. Returns the paths written."""
    from ..port.fileio import atomic_output

    rows = collect(stages)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"-o {out_dir}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, *(title,) if title else ())
    written = []
    with atomic_output(out / "results.md") as f:
        f.write(md.encode())
    written.append(out / "results.md")
    doc = {"rows": [{k: v for k, v in r.items() if k not in ("losses", "evals")} for r in rows],
           "paper_mean_iu": PAPER_MEAN_IU, "official_fcn8s_seg11valid": OFFICIAL_FCN8S}
    with atomic_output(out / "results.json") as f:
        f.write(json.dumps(_nan_null(doc), indent=1, allow_nan=False).encode())
    written.append(out / "results.json")
    if any(r.get("losses") or r.get("evals") for r in rows):
        written.append(curves_png(rows, out / "curves.png"))
    return written, md


def _nan_null(x):
    """``x`` with every NaN or infinite float as None (JSON has no NaN)."""
    from .score import json_number

    if isinstance(x, float):
        return None if x in (float("inf"), float("-inf")) else json_number(x)
    if isinstance(x, dict):
        return {k: _nan_null(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_null(v) for v in x]
    return x


def add_verbs(verbs):
    p = verbs.add_parser("report", help="the reproduction's results table next to the paper's",
                         description=(
        "Gather the 'fcn-port eval --json' results of each training stage (and their train/eval "
        "CSV logs) into results.md and results.json, the four score.py numbers next to the "
        "paper's mean IU, and curves.png. reproduce/voc2011.sh runs it at the end."))
    p.add_argument("--stage", action="append", required=True, metavar="NAME=EVAL.json[,LOG.csv"
                   "[,EVAL.csv]]", help="one per stage, in training order; NAME an official model "
                   "name (e.g. voc-fcn32s) to show the paper's number")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the report")
    p.add_argument("--title", help="the table's title")
    p.set_defaults(run=_report)


def _report(args):
    from ..port.verbs import check_output_dir

    check_output_dir(args.output, "-o")
    stages = [parse_stage(s) for s in args.stage]
    written, md = write_report(stages, args.output, args.title)
    print(md, end="")
    print("wrote " + ", ".join(os.fspath(p) for p in written))
    return 0
