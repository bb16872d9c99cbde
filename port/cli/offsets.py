"""Verb ``offsets``: check every Crop layer's offset against Caffe's coord_map derivation."""
import json


def _cell(offsets):
    return "-" if offsets is None else ",".join(str(o) for o in offsets or [0])


def format_table(path, results):
    """The people-readable report of :func:`fcn_port.port.coord_map.net_offsets` results."""
    if not results:
        return f"{path}: no Crop layers"
    phased = any(r["phase"] for r in results)
    head = ["layer", "bottoms", "axis", "file", "derived", "status"] + (["phase"] if phased else [])
    rows = []
    for r in results:
        status = "OK" if r["ok"] else ("MISMATCH" if r["offsets"] is not None else "UNKNOWN")
        axis = str(r["file_axis"])
        if r["axis"] is not None and r["axis"] != r["file_axis"]:
            axis += f" (derived {r['axis']})"
        rows.append([r["name"], ", ".join(r["bottoms"]), axis, _cell(r["file_offsets"]),
                     _cell(r["offsets"]), status] + ([r["phase"] or ""] if phased else []))
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = [f"{path}: {len(results)} Crop layer{'s' * (len(results) != 1)}"]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip()
              for row in [head] + rows]
    lines += [f"  {r['name']}: {r['reason']}" for r in results if r["reason"]]
    lines += [f"  {r['name']}: note: {r['note']}" for r in results if r["note"]]
    return "\n".join(lines)


def _offsets(args):
    from ..coord_map import load_net, net_offsets

    results = net_offsets(load_net(args.file))
    ok = all(r["ok"] for r in results)
    if args.json:
        print(json.dumps({"file": args.file, "ok": ok, "crops": results}))
    else:
        print(format_table(args.file, results))
    return 0 if ok else 1


def add_verbs(verbs):
    p = verbs.add_parser("offsets", help="check Crop offsets against Caffe's coord_map",
                         description=(
        "For each Crop layer of a net prototxt or binary caffemodel: its bottoms, the offset in "
        "the file, and the offset Caffe's coord_map derives (pycaffe's crop(bottom, reference), "
        "as FCN's net.py uses it). Exit 1 if any crop's offset differs (MISMATCH) or cannot be "
        "derived (UNKNOWN, with the reason)."))
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: file, ok, and crops (one object per Crop layer)")
    p.set_defaults(run=_offsets)
