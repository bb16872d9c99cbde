"""``fcn-port codegen NET.prototxt [WEIGHTS] -o net.py [--weights-out net.safetensors]``: a
Caffe net as one standalone PyTorch file (:mod:`.codegen`), and its weights as safetensors."""
import os

from .errors import UnsupportedError, UserInputError
from .outputs import check_output_file
from .parsers import examples


def add_codegen_verb(verbs):
    p = verbs.add_parser("codegen", help="write a Caffe net as one standalone PyTorch file",
                         description=(
        "Write NET.prototxt (TEST phase) as one Python file that imports only torch: class Net "
        "with one attribute per Caffe layer under its name, forward in Caffe's order, Caffe's "
        "semantics (pooling geometry, crop offsets, ...) as small functions in the file. "
        "--weights-out writes WEIGHTS (or the net's fillers) as safetensors with keys "
        "<layer>.<i>, which Net().load_state_dict takes."))
    p.add_argument("net", metavar="NET.prototxt")
    p.add_argument("weights", nargs="?", metavar="WEIGHTS.caffemodel")
    p.add_argument("-o", "--output", required=True, metavar="NET.py")
    p.add_argument("--weights-out", metavar="W.safetensors")
    p.epilog = examples(
        "fcn-port codegen tests/data/oracle/fcn/voc-fcn8s/net.prototxt "
        "tests/data/oracle/fcn/voc-fcn8s/weights.caffemodel -o fcn8s.py "
        "--weights-out fcn8s.safetensors")
    p.set_defaults(run=_codegen)


def _codegen(args):
    inputs = tuple(x for x in (args.net, args.weights) if x)
    check_output_file(args.output, "-o", "a .py file name", inputs=inputs)
    if not args.output.endswith(".py"):
        raise UserInputError(f"-o {args.output}: the generated module's name ends in .py")
    if args.weights_out:
        check_output_file(args.weights_out, "--weights-out", "a .safetensors file name",
                          inputs=inputs)
        if not args.weights_out.endswith(".safetensors"):
            raise UserInputError(f"--weights-out {args.weights_out}: ends in .safetensors")
    from .codegen import generate, state_dict
    from .fileio import atomic_output
    from .net import from_prototxt

    net = from_prototxt(args.net, "TEST", weights=args.weights, splits=False,  # no fan-outs
                        input_shapes=_data_layer_shapes(args.net))
    if not net.layer_params:
        raise UserInputError(f"{args.net}: no layer is in the TEST phase (codegen writes the "
                             "TEST net)")
    dotted = [lp.name for lp in net.layer_params if "." in lp.name]
    if dotted:
        raise UnsupportedError(f"layer '{dotted[0]}': a name with '.' cannot be a module "
                               "attribute (its state dict key would be ambiguous)")
    text = generate(net, os.path.basename(args.net),
                    os.path.basename(args.weights_out or "weights.safetensors"))
    if args.weights_out:
        from .fileio import safetensors

        state = {k: v.cpu().numpy() for k, v in state_dict(net).items()}
        safetensors.write(args.weights_out, state, {"format": "fcn-port codegen weights"})
    with atomic_output(args.output, mode="w") as f:
        f.write(text)
    from .formats.protoutil import printable

    n = len(net.layer_params)
    print(f"{printable(args.output, 200)}: class Net ({n} layer{'s' * (n != 1)}, inputs "
          f"{printable(', '.join(net.inputs), 200)}; outputs "
          f"{printable(', '.join(net.outputs), 200)})"
          + (f"\n{args.weights_out}: {len(state)} tensors" if args.weights_out else ""))


def _data_layer_shapes(path):
    """The tops' shapes of the net's Caffe data layers (``datalayers.TYPES``), from one batch as
    Caffe's ``DataLayerSetUp`` reads one datum: paths from the working folder, else from the
    net's folder. The generated net takes these tops as inputs."""
    from .datalayers import TYPES, source_for
    from .formats.text import read_net
    from .net import filter_layers

    param, _ = read_net(path)
    shapes = {}
    for lp in filter_layers(param, "TEST"):
        if lp.type in TYPES:
            batch = source_for(lp, "TEST", os.path.dirname(path) or ".")[0]
            shapes.update((top, tuple(v.shape)) for top, v in batch.items())
    return shapes
