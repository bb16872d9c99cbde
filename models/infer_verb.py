"""``fcn-port infer``: segment images with a converted checkpoint (:mod:`.infer` does the work).

Before anything is read, the output folder is checked
(:func:`fcn_port.port.verbs.check_output_dir`); then :func:`.infer.infer_files` checks
``--hha`` / ``--depth`` against the model's inputs (a model without that input is one line
naming its inputs) and decodes every input. Before the first forward pass, each image's peak
memory is estimated (:mod:`.memory`) and a run the machine cannot hold is refused with the
estimate and a ``--max-size`` that fits, unless ``--force``.
A progress bar over the images goes to stderr when there is more than one image or stderr is
a terminal. :mod:`.verbs` adds the verb, passing its checkpoint loader down.
"""
import glob
import os
import sys

from ..port.errors import UserInputError
from ..port.verbs import check_device, check_output_dir, device_arg, examples


def _run(args, load_checkpoint, demo_image, keep_freed_memory):
    from .infer import infer_files

    args.device = check_device(args.device)
    if not 0.0 <= args.alpha <= 1.0:
        raise UserInputError(f"--alpha must be in [0, 1]; got {args.alpha}")
    if args.max_size is not None and args.max_size < 32:
        raise UserInputError(f"--max-size must be at least 32 pixels; got {args.max_size}")
    check_output_dir(args.out, "-o")
    if args.backend != "torch":
        from .deploy.peers import require

        if args.device != "cpu":
            raise UserInputError(f"--backend {args.backend} runs on the CPU; --device "
                                 f"{args.device} takes --backend torch")
        if args.backend != "fast":
            require(args.backend)
    model = load_checkpoint(args.checkpoint, args.device, fcn_for="infer")
    if args.mean_file:
        _use_mean_file(model, args.mean_file)
    if args.backend != "torch":
        from .deploy.backend import open_backend

        model = open_backend(model, args.backend)
        if not args.quiet:
            path = f" ({model.path})" if model.path else ""
            print(f"backend {args.backend}{path}: agrees with fcn-port within "
                  f"{max(c['error'] for c in model.checks):.1e} (checked at "
                  f"{', '.join('x'.join(map(str, c['size'])) for c in model.checks)})")
    args.images = expand_images(args.images) or [str(demo_image)]  # default: the demo image
    if len(args.images) > 1 and keep_freed_memory:  # later passes reuse the first one's
        keep_freed_memory()                           # pages (~25% faster on CPU)
    infer_files(model, args.images, args.out, hha=args.hha, depth=args.depth,
                device=args.device, alpha=args.alpha, overlay_format=args.overlay_format,
                log=None if args.quiet else lambda line: print(line, file=sys.stdout),
                max_size=args.max_size, check_memory=not args.force,
                progress=len(args.images) > 1 or sys.stderr.isatty(), legend=not args.no_legend)


def _use_mean_file(model, path):
    """``--mean-file``: the mean image's per-channel means replace the model's colour mean."""
    from ..port.errors import CaffeFormatError
    from ..port.formats.blobproto import channel_means, read_blob_file
    from .preprocess import input_kinds

    meta = model.meta
    mean = channel_means(read_blob_file(path), path)
    if input_kinds(meta)[0] != "color" or len(mean) != 3:
        raise CaffeFormatError(path, "", f"holds a {len(mean)}-channel mean; --mean-file "
                               f"replaces the 3-channel colour mean of a model whose first "
                               f"input is a colour image ({meta.get('model', 'this model')})")
    meta["mean"] = mean


IMAGE_ENDINGS = (".jpg", ".jpeg", ".png")


def expand_images(items):
    """The image files an IMAGE list names: a file as it is; a folder, its ``.jpg``/``.jpeg``/
    ``.png`` files (sorted; links leading out of the folder skipped); a pattern the shell did
    not expand (``'photos/*.jpg'``), its matches, sorted. A folder or pattern with no image is
    one UserInputError line."""
    out = []
    for item in items:
        if os.path.isdir(item):
            root = os.path.realpath(item)
            found = [os.path.join(item, n) for n in sorted(os.listdir(item))
                     if n.lower().endswith(IMAGE_ENDINGS) and os.path.isfile(os.path.join(item, n))
                     and os.path.dirname(os.path.realpath(os.path.join(item, n))) == root]
            what = f"folder {item} holds no .jpg or .png image"
        elif not os.path.lexists(item) and glob.has_magic(item):
            found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            what = f"no file matches {item}"
        else:
            out.append(item)
            continue
        if not found:
            raise UserInputError(f"IMAGE: {what}")
        out += found
    return out


def add_infer_verb(verbs, load_checkpoint, demo_image, keep_freed_memory=None):
    """Add ``infer``; ``load_checkpoint(path, device)`` gives the model (models/verbs.py's),
    ``keep_freed_memory()`` (models/deploy/bench.py's) is called before several images."""
    p = verbs.add_parser("infer", help="segment images with a converted checkpoint", description=(
        "Preprocess each IMAGE as the official data layers (BGR, mean subtracted, no resizing), "
        "run the net, take the argmax and write DIR/<stem>.png (paletted label PNG, VOC colours) "
        "and DIR/<stem>_overlay.png (labels blended over the image, background unchanged). "
        "Nets with two outputs (SIFT Flow) also write <stem>_geo.png and its overlay. For NYUD "
        "nets IMAGE is the colour PNG (the HHA PNG for nyud-fcn32s-hha) and --hha / --depth give "
        "the paired files in the same order. All inputs are checked before anything is written; "
        "an image whose estimated peak memory exceeds what is available is refused (see "
        "--max-size, --force)."))
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by fcn-port convert")
    p.add_argument("images", nargs="*", metavar="IMAGE", help=(
        "image files, folders (their .jpg/.png files) or quoted patterns ('photos/*.jpg'); "
        "default: the bundled demo image (models/data/demo.jpg)"))
    p.add_argument("-o", "--out", default=".", metavar="DIR",
                   help="output folder (created; default: the current folder)")
    p.add_argument("--device", type=device_arg, default="cpu",
                   help="cpu (default), cuda, cuda:N, or auto (CUDA when available)")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="opacity of the labels in the overlay (default 0.5, as vis_seg)")
    p.add_argument("--hha", nargs="+", metavar="FILE",
                   help="HHA PNGs, one per IMAGE (NYUD color-hha)")
    p.add_argument("--depth", nargs="+", metavar="FILE",
                   help="16-bit depth PNGs in mm, one per IMAGE (NYUD color-d)")
    p.add_argument("--overlay-format", choices=("png", "jpg"), default="png",
                   help="png (default, lossless) or jpg (as infer.py's visualization.jpg)")
    p.add_argument("--max-size", type=int, metavar="N", help=(
        "downscale each input (antialiased bilinear, all paired inputs alike) so its longer "
        "side is at most N pixels, run the net on that, and scale the label map back to the "
        "image's size with nearest neighbour; not the official code's behaviour (it never "
        "resizes), but a phone photo fits in memory and runs in seconds (500: the VOC size)"))
    p.add_argument("--force", action="store_true",
                   help="run even when the estimated peak memory exceeds what is available")
    p.add_argument("--no-legend", action="store_true", help=(
        "write the overlay exactly as the official vis_seg (by default a strip below it names "
        "the classes shown, VOC's names for 21 classes)"))
    p.add_argument("--mean-file", metavar="MEAN.binaryproto", help=(
        "subtract this mean image's per-channel means (BGR, as Caffe wrote it) instead of the "
        "model's"))
    p.add_argument("--backend", choices=("torch", "fast", "onnxruntime", "openvino"),
                   default="torch", help=(
                       "run the net in fcn-port (torch, default: every layer as Caffe computes "
                       "it), in fcn-port's fast CPU path (fast: fused, channels-last, the blank "
                       "margins once per size; 1.5x on voc-fcn8s), or, exported to ONNX, in ONNX "
                       "Runtime or OpenVINO (CPU, float32; pip install 'fcn-port[bench]'); all "
                       "but torch are checked at start-up to agree with it within 1e-5"))
    p.add_argument("-q", "--quiet", action="store_true", help="do not list the files written")
    p.epilog = examples(
        "fcn-port infer voc-fcn8s-demo.pt",
        "fcn-port infer voc-fcn8s.pt image.jpg -o out/",
        "fcn-port infer voc-fcn8s-demo.pt --backend fast -o out/",
        "fcn-port infer voc-fcn8s-demo.pt --backend openvino -o out/")
    p.set_defaults(run=lambda args: _run(args, load_checkpoint, demo_image, keep_freed_memory))
