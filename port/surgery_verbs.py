"""port/'s ``surgery`` verbs (the official FCN weight surgery, :mod:`.surgery`): ``transplant``,
``interp``, ``expand-score``, ``color-d``.

Each prints what it did per layer and blob (copied / coerced / expanded / dropped / not
initialised / interpolated) and writes the result all or nothing: a binary caffemodel, or HDF5
when the output ends in .h5. ``--net`` takes a prototxt or an official model name, which the
top module resolves (``net_by_name``: port/ knows no model names).
"""
import argparse

from .errors import UserInputError
from .outputs import check_output_file
from .parsers import examples


# surgery

TARGET_HELP = ("the target net: a prototxt (train, val or deploy; Python data layers get "
               "nominal 500x500 inputs) or an official model name such as voc-fcn16s")


def _input_shape(text):
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive dims like 1,3,500,500, not {text!r}")
    return dims


def _names(text):
    """LAYER or LAYER,LAYER,... (the option may also be repeated)."""
    return [n for n in text.split(",") if n]


def _finish(args, params, report, net=None):
    from .surgery import save

    print(report.format())
    digest = save(params, args.output, net=net)
    n = sum(a.size for blobs in (params.params if hasattr(params, "params") else params).values()
            for a in blobs)
    print(f"wrote {args.output}: {n:,} values" + (f", sha256 {digest}" if digest else ""))


def _transplant(args):
    from .surgery import resolve_net, transplant_net

    net = resolve_net(args.net, by_name=args.net_by_name)
    params, report = transplant_net(
        args.source, net, args.suffix, init=args.init,
        interp_layers=None if args.no_interp else (args.interp_layers or "auto"),
        expand=args.expand, skip=args.skip, input_shape=args.input_shape)
    suffix = f" (suffix '{args.suffix}')" if args.suffix else ""
    print(f"transplant {args.source} -> {args.net}{suffix}")
    _finish(args, params, report, net)


def _color_d(args):
    from .surgery import color_depth_transplant, resolve_net

    net = resolve_net(args.net, by_name=args.net_by_name)
    params, report = color_depth_transplant(
        args.source, net, layer=args.layer, base_layer=args.base_layer,
        interp_layers=None if args.no_interp else "auto", input_shape=args.input_shape)
    print(f"color-d {args.source} -> {args.net}")
    _finish(args, params, report, net)


def _interp(args):
    from .surgery import interp_weights

    weights, report = interp_weights(args.source, args.layers)
    print(f"interp {args.source}")
    _finish(args, weights, report)


def _expand(args):
    from .surgery import expand_weights, resolve_net, transplant_net

    if bool(args.net) == (args.classes is not None):
        args.expand_parser.error("give either --classes K (expand in the file) or --net NET")
    if args.classes is not None and args.classes < 1:
        raise UserInputError(f"--classes {args.classes}: expected a class count >= 1")
    if args.net:
        if not args.layer:
            args.expand_parser.error("with --net, name the score layer(s): --layer score_fr")
        net = resolve_net(args.net, by_name=args.net_by_name)
        params, report = transplant_net(args.source, net, expand=args.layer, skip=args.skip,
                                        interp_layers=None if args.no_interp else "auto",
                                        input_shape=args.input_shape)
        print(f"expand-score {args.source} -> {args.net} (layers {', '.join(args.layer)})")
        _finish(args, params, report, net)
    else:
        weights, report = expand_weights(args.source, args.layer or None, args.classes)
        layers = ", ".join(report.layers("expanded"))
        print(f"expand-score {args.source} ({layers} to {args.classes} classes)")
        _finish(args, weights, report)


def _output_checked(run):
    """``run`` after the -o check: a path that cannot be written is refused before any work."""
    def checked(args):
        check_output_file(args.output, "-o", "a caffemodel file name (.h5 for HDF5)",
                          inputs=(args.source, getattr(args, "net", None)))
        return run(args)
    return checked


def _common(p, net=True, required=True):
    p.add_argument("source", metavar="SRC", help="source weights (.caffemodel or .caffemodel.h5)")
    if net:
        p.add_argument("--net", required=required, metavar="NET", help=TARGET_HELP)
        p.add_argument("--input-shape", type=_input_shape, metavar="N,C,H,W",
                       help="shape for the net's data tops (default: their own, or 1,3,500,500)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output caffemodel (.h5: HDF5); written only if everything succeeds")


def add_surgery_verbs(verbs, net_by_name):
    top = verbs.add_parser("surgery", help="transplant, interp, expand-score, color-d",
                           description=(
        "The official FCN weight surgery (surgery.py + solve.py) on files. A copy between "
        "blobs of different element counts is an error, never a silent repeat."))
    top.set_defaults(net_by_name=net_by_name)
    sub = top.add_subparsers(dest="surgery_verb", required=True, metavar="SURGERY")

    p = sub.add_parser("transplant", help="start a net from another net's weights", description=(
        "Copy each source layer's blobs into the same-named layer (+ SUFFIX) of the target by "
        "flat element order (fc -> conv when counts agree), drop what has no place, keep the "
        "target's filler values elsewhere, then set the 'up' layers to bilinear."))
    _common(p)
    p.add_argument("--suffix", default="", help="target layer = source layer + SUFFIX "
                                                "(color-HHA: color, hha)")
    p.add_argument("--init", metavar="WEIGHTS", help="start the target from these weights (of the "
                   "same net) instead of its fillers, e.g. to chain two --suffix transplants")
    p.add_argument("--expand", action="extend", type=_names, default=[], metavar="LAYER",
                   help="score layers to copy into a layer with more classes (expand_score)")
    p.add_argument("--skip", action="extend", type=_names, default=[], metavar="LAYER",
                   help="source layers to drop")
    p.add_argument("--no-interp", action="store_true", help="leave the 'up' layers as they are")
    p.add_argument("--interp-layers", action="extend", type=_names, metavar="LAYER",
                   help="bilinear-initialise these instead of every layer whose name has 'up'")
    p.epilog = examples(
        "fcn-port surgery transplant VGG_ILSVRC_16_layers.caffemodel --net voc-fcn32s -o "
        "vgg16-fcn.caffemodel",
        "fcn-port surgery transplant voc-fcn32s.caffemodel --net voc-fcn16s -o start16s.caffemodel")
    p.set_defaults(run=_output_checked(_transplant))

    p = sub.add_parser("interp", help="set upsampling layers to bilinear", description=(
        "Set each layer's weight W[i, i] (or W[i, 0]) to the bilinear kernel; other entries "
        "are kept. Default layers: every param layer whose name contains 'up'."))
    _common(p, net=False)
    p.add_argument("--layers", action="extend", type=_names, metavar="LAYER")
    p.set_defaults(run=_output_checked(_interp))

    p = sub.add_parser("expand-score", help="copy a score layer into one with more classes",
                       description=(
        "Copy score layers' k' classes into the first k' outputs of layers with more. With "
        "--classes K, in the file itself: every score layer with score_fr's class count "
        "(FCN-16s/8s: also score_pool4/score_pool3) gets K outputs, the new ones 0, and the "
        "upsampling ('up') layers become K-to-K (old block kept, new classes bilinear), so "
        "the result converts as a K-class FCN. With --net, a transplant into that net (new "
        "classes keep its fillers; other layers are transplanted)."))
    _common(p, required=False)
    p.add_argument("--layer", action="extend", type=_names, metavar="LAYER", help=(
        "the score layer(s), e.g. score_fr (default with --classes: every score layer with "
        "score_fr's class count; needed with --net)"))
    p.add_argument("--classes", type=int, metavar="K", help="new number of classes")
    p.add_argument("--skip", action="extend", type=_names, default=[], metavar="LAYER",
                   help="with --net: source layers to drop (e.g. old-size upscore layers)")
    p.add_argument("--no-interp", action="store_true", help="with --net: no bilinear 'up' layers")
    p.epilog = examples(
        "fcn-port surgery expand-score voc-fcn8s.caffemodel --classes 25 -o wide.caffemodel")
    p.set_defaults(run=_output_checked(_expand), expand_parser=p)

    p = sub.add_parser("color-d", help="NYUD color-D: VGG16 into a 4-channel (BGR-D) net",
                       description=(
        "Transplant VGG16 weights into the color-D net, then its first conv from VGG conv1_1: "
        "channels 0-2 copied, channel 3 their mean, bias copied."))
    _common(p)
    p.add_argument("--layer", default="conv1_1_bgrd",
                   help="the 4-channel conv (default %(default)s)")
    p.add_argument("--base-layer", default="conv1_1", help="source conv (default %(default)s)")
    p.add_argument("--no-interp", action="store_true", help="leave the 'up' layers as they are")
    p.epilog = examples(
        "fcn-port surgery color-d VGG_ILSVRC_16_layers.caffemodel --net "
        "nyud-fcn32s-color-d -o color-d.caffemodel")
    p.set_defaults(run=_output_checked(_color_d))
