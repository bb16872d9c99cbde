"""Verb ``infer``: segment images with a converted checkpoint, as the official infer.py."""
import os
import re
import sys

from ..errors import CaffeFormatError, NetError


def _load(path, device):
    from ...models import load  # lazily: the model zoo is only needed by this verb

    if not os.path.isfile(path):
        why = "is a folder" if os.path.isdir(path) else "does not exist"
        raise CaffeFormatError(path, "", f"{why}; expected a checkpoint from fcn-port convert")
    try:
        return load(path, map_location=device)
    except (CaffeFormatError, NetError) as e:
        if "\n" not in str(e).strip():
            raise
        raise NetError(str(e).strip().splitlines()[0]) from None  # the CLI prints one line
    except (OSError, RuntimeError, EOFError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CaffeFormatError(path, "", f"cannot load ({first}); "
                               "expected a checkpoint from fcn-port convert") from None


def _infer(args):
    import torch

    from ...models.infer import infer_files

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise NetError(f"--device {args.device}: CUDA is not available on this machine")
    if not 0.0 <= args.alpha <= 1.0:
        raise NetError(f"--alpha must be in [0, 1]; got {args.alpha}")
    model = _load(args.checkpoint, args.device)
    if len(args.images) > 1:  # later passes reuse the first one's pages (~25% faster on CPU)
        from ...models.bench import keep_freed_memory

        keep_freed_memory()
    infer_files(model, args.images, args.out, hha=args.hha, depth=args.depth,
                device=args.device, alpha=args.alpha, overlay_format=args.overlay_format,
                log=None if args.quiet else lambda line: print(line, file=sys.stdout))


def _device(text):
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        import argparse
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N; got {text!r}")
    return text


def add_verbs(verbs):
    p = verbs.add_parser("infer", help="segment images with a converted checkpoint", description=(
        "Preprocess each IMAGE as the official data layers (BGR, mean subtracted, no resizing), "
        "run the net, take the argmax and write DIR/<stem>.png (paletted label PNG, VOC colours) "
        "and DIR/<stem>_overlay.png (labels blended over the image, background unchanged). "
        "Nets with two outputs (SIFT Flow) also write <stem>_geo.png and its overlay. For NYUD "
        "nets IMAGE is the colour PNG (the HHA PNG for nyud-fcn32s-hha) and --hha / --depth give "
        "the paired files in the same order. All inputs are checked before anything is written."))
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by fcn-port convert")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--device", type=_device, default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="opacity of the labels in the overlay (default 0.5, as vis_seg)")
    p.add_argument("--hha", nargs="+", metavar="FILE", help="HHA PNGs, one per IMAGE (NYUD color-hha)")
    p.add_argument("--depth", nargs="+", metavar="FILE",
                   help="16-bit depth PNGs in mm, one per IMAGE (NYUD color-d)")
    p.add_argument("--overlay-format", choices=("png", "jpg"), default="png",
                   help="png (default, lossless) or jpg (as infer.py's visualization.jpg)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not list the files written")
    p.set_defaults(run=_infer)
