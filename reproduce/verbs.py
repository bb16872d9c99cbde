"""reproduce/'s verbs: ``score`` (PNG label maps in, score.py's metrics out).

``fcn-port score --pred DIR --gt DIR`` is what the official ``score.py`` computes in
``compute_hist`` and prints in ``seg_tests``, but from label PNGs already on disk rather than
from a net run (see :mod:`.score` for the formulas and where we differ): one confusion matrix
over every ground-truth PNG in ``--gt`` and the prediction of the same file stem in ``--pred``.
``--classes`` defaults to 21 (PASCAL VOC); ground-truth values must be classes or void 255
(score.py would silently drop any other value; a wrong ``--classes`` should not pass
unnoticed). Everything is checked before anything is printed or written: an error is one line
and exit status 2, with no table and no ``--png``.
"""
import os
import sys


def add_verbs(verbs):
    from . import download, report

    download.add_verbs(verbs)
    report.add_verbs(verbs)
    p = verbs.add_parser("score", help="score predicted label PNGs against ground truth "
                         "(score.py's metrics)", description=(
        "Score predicted label maps against ground truth as the official score.py does: one "
        "confusion matrix over all images (rows ground truth, columns prediction; void 255 "
        "ignored), then overall (pixel) accuracy, mean accuracy, mean IU and frequency-"
        "weighted IU, printed in percent as the FCN paper reports them, with per-class IU "
        "and accuracy. PNGs are paletted (as VOC's SegmentationClass) or 8-bit grayscale, "
        "their values class indices; files are matched by stem."))
    p.add_argument("--pred", required=True, metavar="DIR", help="predicted label PNGs")
    p.add_argument("--gt", required=True, metavar="DIR",
                   help="ground-truth label PNGs; each needs a prediction of the same stem")
    p.add_argument("--classes", type=int, default=21, metavar="N", help=(
        "number of classes (default 21, PASCAL VOC with background; PASCAL-Context 60, "
        "SIFT Flow semantic 33, geometric 3, NYUDv2 40)"))
    p.add_argument("--names", metavar="FILE",
                   help="class names, one a line (default: VOC's for 21 classes, else indices)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the "
                   "table (fractions, not percent; NaN as null; the confusion matrix included)")
    p.add_argument("--png", metavar="CONF.png",
                   help="also draw the confusion matrix, rows normalized, into this PNG")
    p.set_defaults(run=_score)


def _read_names(path, n):
    from fcn_port.port.errors import UserInputError

    if path is None:
        return None
    if not os.path.isfile(path):
        raise UserInputError(f"--names {path}: no such file")
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != n:
        raise UserInputError(f"--names {path}: {len(names)} names for --classes {n}")
    return names


def _score(args):
    import json

    from fcn_port.port.errors import UserInputError

    from . import score

    if args.classes < 1 or args.classes > 255:
        raise UserInputError(f"--classes must be in 1..255 (8-bit PNGs; 255 is void), "
                             f"not {args.classes}")
    if args.png and not os.path.isdir(os.path.dirname(os.path.abspath(args.png))):
        raise UserInputError(f"--png {args.png}: its folder does not exist")
    names = score.names_for(args.classes, _read_names(args.names, args.classes))
    conf, extra = score.score_folders(args.pred, args.gt, args.classes)
    result = conf.metrics()
    if args.png:
        score.confusion_png(conf.hist, args.png, names)
    if extra:
        print(f"fcn-port: note: {extra} prediction(s) in {args.pred} have no ground truth "
              "and were not scored", file=sys.stderr)
    if args.json:
        def num(x):
            return None if x is None or x != x else x
        out = {k: num(result[k]) for k in score.METRICS}
        out.update(loss=result["loss"], images=result["images"], classes=args.classes,
                   pixels=result["pixels"], ignored=result["ignored"],
                   per_class=score.rows(result, names), confusion=conf.hist.tolist(),
                   png=args.png)
        print(json.dumps(out))
    else:
        print(score.format_table(result, names))
        if args.png:
            print(f"wrote {args.png}")
    return 0
