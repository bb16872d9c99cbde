"""Verb ``export``: checkpoint -> caffemodel (+ deploy prototxt) for real Caffe, or -> ONNX."""
import json
import os

from ..errors import CaffeFormatError, NetError


def _load(path):
    from ...models import load

    if not os.path.isfile(path):
        why = "is a folder" if os.path.isdir(path) else "does not exist"
        raise CaffeFormatError(path, "", f"{why}; expected a checkpoint from fcn-port convert")
    return load(path)


def _stem(path):
    base = os.path.basename(path)
    for ext in (".caffemodel.h5", ".caffemodel", ".pt", ".pth", ".h5"):
        if base.endswith(ext):
            return base[:-len(ext)]
    return os.path.splitext(base)[0]


def _export(args):
    model = _load(args.checkpoint)
    reports = []
    out = args.output
    if out is None and args.onnx is None:
        out = _stem(args.checkpoint) + (".caffemodel.h5" if args.h5 else ".caffemodel")
    if out is not None:
        from ...models.export import export

        if os.path.isdir(out):
            raise NetError(f"-o {out}: is a folder; give the caffemodel's file name")
        r = export(model, out, h5=args.h5, prototxt=args.prototxt)
        reports.append(r)
        if not args.json:
            print(f"{r['caffemodel']}: {r['format']} caffemodel, {r['layers']} layers "
                  f"({r['param_layers']} with params, {r['values']:,} values)"
                  + (f", sha256 {r['sha256'][:12]}..." if r["sha256"] else ""))
            if r["prototxt"]:
                print(f"{r['prototxt']}: deploy net")
    if args.onnx is not None:
        from ...models.onnx import export_onnx

        r = export_onnx(model, args.onnx, size=tuple(args.size), dynamic=not args.static,
                        dynamo=args.dynamo)
        reports.append(r)
        if not args.json:
            axes = "height/width dynamic" if r["dynamic"] else \
                f"fixed {r['size'][0]} x {r['size'][1]}"
            print(f"{r['onnx']}: ONNX opset {r['opset']} ({r['exporter']} exporter), "
                  f"{', '.join(r['inputs'])} -> {', '.join(r['outputs'])}, {axes}")
            for why in r.get("static_because", ()):
                print(f"  static because {why}")
            if r["checks"] is None:
                print("  not checked: onnxruntime is not installed")
            for c in r["checks"] or ():
                print(f"  onnxruntime vs PyTorch at {c['size'][0]} x {c['size'][1]}: "
                      f"max error {c['error']:.2g} (relative)")
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports))


def add_verbs(verbs):
    p = verbs.add_parser("export", help="checkpoint -> caffemodel for Caffe, or ONNX",
                         description=(
        "Write a checkpoint's weights as a caffemodel real Caffe loads: a V2 NetParameter "
        "with every layer of the TEST-phase deploy net in order (as Net::ToProto writes it), "
        "params as blobs. --prototxt also writes the deploy net (FCN checkpoints: the official "
        "deploy.prototxt of the model; interpreter checkpoints: their own net). --onnx writes "
        "ONNX instead (or as well, with -o), checked against PyTorch where onnxruntime is "
        "installed. With neither -o nor --onnx: CKPT's name with .caffemodel."))
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint (or caffemodel) to export")
    p.add_argument("-o", "--output", metavar="X.caffemodel", help="caffemodel to write")
    p.add_argument("--h5", action="store_true", help=(
        "write Caffe's HDF5 weights (Net::ToHDF5) instead of binary protobuf; Caffe tells "
        "them apart by content, snapshots name them .caffemodel.h5"))
    p.add_argument("--prototxt", metavar="deploy.prototxt", help="also write the deploy net")
    p.add_argument("--onnx", metavar="OUT.onnx", help="write ONNX")
    p.add_argument("--size", nargs=2, type=int, default=[500, 500], metavar=("H", "W"),
                   help="ONNX: input size to trace and check at (default 500 500)")
    p.add_argument("--static", action="store_true",
                   help="ONNX: fixed height/width instead of dynamic axes")
    p.add_argument("--dynamo", action="store_true", help=(
        "ONNX: use the torch.export-based exporter (needs onnxscript; slower) instead of "
        "the TorchScript one"))
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(run=_export)
