"""reproduce/'s verbs: ``score`` (PNG label maps in, score.py's metrics out) and ``eval`` (a
checkpoint run over its dataset's test split, score.py's seg_tests; see :mod:`.evaluate`).

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

from fcn_port.port.verbs import examples


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
    _add_eval(verbs)
    _add_synthetic(verbs)


def _add_synthetic(verbs):
    p = verbs.add_parser("synthetic", help="write a small generated VOC 2011 + SBD dataset "
                         "(and a random VGG16-layout base) for smoke runs", description=(
        "Write a small generated PASCAL-VOC-like dataset in the official layouts: "
        "DATA_DIR/sbdd/dataset (train: img/*.jpg, cls/*.mat, train.txt) and "
        "DATA_DIR/pascal/VOC2011 (held out: JPEGImages, SegmentationClass, "
        "ImageSets/Segmentation/seg11valid.txt), for fcn-port train --data-root DATA_DIR. "
        "--base also writes a random VGG16-layout ILSVRC caffemodel to transplant from "
        "(reproduce/synthetic.py says what is generated and how)."))
    p.add_argument("data_dir", metavar="DATA_DIR")
    p.add_argument("--train", type=int, default=200, metavar="N", help="train images (200)")
    p.add_argument("--val", type=int, default=20, metavar="N", help="held-out images (20)")
    p.add_argument("--size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"),
                   help="image height and width (96 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes and the base net (0)")
    p.add_argument("--void", type=int, default=1, metavar="PX",
                   help="VOC labels: void pixels each side of a boundary (1)")
    p.add_argument("--base", metavar="BASE.caffemodel",
                   help="also write the VGG16-layout base net here")
    p.add_argument("--widths", type=int, nargs=5, default=[64, 128, 256, 512, 512],
                   help="base net: the five conv widths (VGG16's 64 128 256 512 512)")
    p.add_argument("--fc", type=int, default=4096, help="base net: fc6/fc7 width (4096)")
    p.set_defaults(run=_synthetic)


def _synthetic(args):
    from fcn_port.port.verbs import check_output_dir, check_output_file

    from . import synthetic

    check_output_dir(args.data_dir, "DATA_DIR")
    check_output_file(args.base, "--base", "a caffemodel name")
    ids = synthetic.make_dataset(args.data_dir, args.train, args.val, args.size, args.seed,
                                 void=args.void, progress=sys.stderr.isatty())
    print(f"{args.data_dir}: {len(ids['train'])} train images (sbdd/dataset), "
          f"{len(ids['val'])} held out (pascal/VOC2011 seg11valid), "
          f"{args.size[0]} x {args.size[1]}, seed {args.seed}")
    if args.base:
        digest = synthetic.make_base_net(args.base, args.widths, args.fc, args.seed)
        print(f"{args.base}: VGG16-layout base net, widths {args.widths}, fc {args.fc} "
              f"(sha256 {digest[:12]}...)")


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
    from fcn_port.port.verbs import check_output_file

    from . import score

    if args.classes < 1 or args.classes > 255:
        raise UserInputError(f"--classes must be in 1..255 (8-bit PNGs; 255 is void), "
                             f"not {args.classes}")
    check_output_file(args.png, "--png", "a .png file name")
    names = score.names_for(args.classes, _read_names(args.names, args.classes))
    conf, extra = score.score_folders(args.pred, args.gt, args.classes)
    result = conf.metrics()
    if args.png:
        score.confusion_png(conf.hist, args.png, names)
    if extra:
        print(f"fcn-port: note: {extra} prediction(s) in {args.pred} have no ground truth "
              "and were not scored", file=sys.stderr)
    if args.json:
        out = {k: score.json_number(result[k]) for k in score.METRICS}
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


# --------------------------------------------------------------------------- eval

def _add_eval(verbs):
    from fcn_port.port.verbs import device_arg

    p = verbs.add_parser("eval", help="score a checkpoint on its dataset's test split "
                         "(score.py's seg_tests)", description=(
        "Run a trained FCN over its dataset's test split as the official score.py does: the "
        "model's official val/test data layer (VOC seg11valid, SIFT Flow and NYUD test, "
        "PASCAL-Context val) read sequentially from --root, one image at a time, argmax over "
        "the classes, one confusion matrix per score head (SIFT Flow: score_sem vs sem, "
        "score_geo vs geo) and the mean per-image loss; prints overall and mean accuracy, "
        "mean IU and fw IU in percent, and per-class IU and accuracy."))
    p.add_argument("checkpoint", metavar="CKPT",
                   help="a checkpoint from fcn-port convert / train, or an FCN caffemodel")
    p.add_argument("--dataset", required=True, choices=("voc", "pascalcontext", "siftflow",
                                                         "nyud"),
                   help="must be the model's dataset")
    p.add_argument("--root", required=True, metavar="DIR", help=(
        "the dataset folder the data layer reads (VOC: the VOC2011 folder with JPEGImages, "
        "SegmentationClass, ImageSets/Segmentation/seg11valid.txt)"))
    p.add_argument("--voc-root", metavar="DIR",
                   help="PASCAL-Context: the PASCAL VOC folder its layer also reads (voc_dir)")
    p.add_argument("--split", metavar="NAME",
                   help="another split than the official test split (e.g. seg11valid, val)")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N images")
    p.add_argument("--save-pred", metavar="DIR", help=(
        "write each prediction as a VOC-paletted label PNG <id>.png (a second head: "
        "<id>_<head>.png), which fcn-port score --pred DIR re-scores"))
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the "
                   "tables (fractions, not percent; NaN as null)")
    p.add_argument("--png", metavar="CONF.png", help="draw the confusion matrix (rows "
                   "normalized) into this PNG; a second head's into CONF_<head>.png")
    p.add_argument("--grid", metavar="GRID.png", help=(
        "draw sample predictions: one row per image (image | ground truth | prediction), "
        "titled with its id and mean IU"))
    p.add_argument("--grid-images", type=int, default=4, metavar="K",
                   help="images in --grid, the first K scored (default 4)")
    p.add_argument("--device", type=device_arg, default="cpu",
                   help="cpu (default), cuda, cuda:N, or auto (CUDA when available)")
    p.add_argument("--mean-file", metavar="MEAN.binaryproto", help=(
        "subtract this mean image's per-channel means (BGR) instead of the data layer's"))
    p.epilog = examples(
        "fcn-port eval voc-fcn8s.pt --dataset voc --root data/pascal/VOC2011",
        "fcn-port eval fcn8s-heavy-pascal.caffemodel --dataset voc --root VOC2011 --json "
        "--grid grid.png")
    p.set_defaults(run=_eval)


def _suffixed(path, name):
    stem, ext = os.path.splitext(path)
    return f"{stem}_{name}{ext or '.png'}" if name else path


def _eval(args):
    import json

    import numpy as np

    from fcn_port.port.errors import UserInputError
    from fcn_port.port.verbs import check_device, check_output_dir, check_output_file

    from . import evaluate, score
    from .segtests import head_name

    if args.limit is not None and args.limit < 1:
        raise UserInputError(f"--limit must be >= 1, not {args.limit}")
    if args.grid_images < 1:
        raise UserInputError(f"--grid-images must be >= 1, not {args.grid_images}")
    check_output_dir(args.save_pred, "--save-pred", parents=False)
    check_output_file(args.png, "--png", "a .png file name")
    check_output_file(args.grid, "--grid", "a .png file name")
    args.device = check_device(args.device)
    mean = None
    if args.mean_file:
        from fcn_port.port.formats.blobproto import channel_means, read_blob_file

        mean = channel_means(read_blob_file(args.mean_file), args.mean_file)
    ev = evaluate.Evaluation(args.checkpoint, args.dataset, args.root, split=args.split,
                             voc_root=args.voc_root, device=args.device, mean=mean)
    samples, first = [], ev.heads[0]

    def on_image(k, batch, preds):
        ident = ev.ids[k]
        if args.save_pred:
            from fcn_port.models.vis import save_label_png

            for blob, path in evaluate.pred_paths(args.save_pred, ident, ev.heads).items():
                save_label_png(preds[blob], path)
        if args.grid and len(samples) < args.grid_images:
            gt = np.asarray(batch[first.label])[0, 0].astype(np.int64)
            pred = preds[first.score]
            samples.append((ident, ev.image_rgb(batch), gt, pred,
                            evaluate.image_iu(gt, pred, ev.classes[first.score])))

    if args.save_pred:
        os.makedirs(args.save_pred, exist_ok=True)
    test = ev.run(args.limit, on_image if (args.save_pred or args.grid) else None)
    results = test.results()
    if args.png:
        for i, (h, r) in enumerate(zip(ev.heads, results)):
            score.confusion_png(np.asarray(r["confusion"]), _suffixed(args.png, head_name(h, i)),
                                [c["class"] for c in r["per_class"]],
                                title=f"{ev.meta['model']} {h.score} on {ev.split}")
    if args.grid:
        from .grid import draw_grid

        draw_grid(args.grid, samples, title=f"{ev.meta['model']} on {args.dataset} {ev.split}",
                  names=[c["class"] for c in results[0]["per_class"]] if results else None)
    images = results[0]["images"] if results else 0
    if args.json:
        heads = [{k: v for k, v in r.items() if k != "confusion"} for r in results]
        print(json.dumps({"checkpoint": args.checkpoint, "model": ev.meta["model"],
                          "dataset": args.dataset, "split": ev.split, "images": images,
                          "heads": heads}))
        return 0
    print(f"{ev.meta['model']} ({args.checkpoint}) on {args.dataset} {ev.split}")
    for h, r in zip(ev.heads, results):
        print(f"\n{h.score} vs {h.label}:")
        print(score.format_table(test.conf[h.score].metrics(),
                                 [c["class"] for c in r["per_class"]]))
    for path in (args.png, args.grid):
        if path:
            print(f"wrote {path}")
    if args.save_pred:
        print(f"wrote {images * len(ev.heads)} prediction PNGs to {args.save_pred}")
    return 0
