"""What a downloaded file must be before ``fcn-port download`` keeps it.

The official workflow trusts whatever ``wget`` saved: a moved URL that answers with an HTML
page gives a ``.caffemodel`` that Caffe rejects only at ``Net::CopyTrainedLayersFrom`` (a
protobuf parse failure), and a file of the wrong model fails later still, in ``copy_from`` with
"Cannot copy param 0 weights from layer ...; shape mismatch". Here each kind is checked at
once, and a file that fails is not kept:

* an official FCN caffemodel is read (:func:`fcn_port.port.formats.caffemodel.read_weights`,
  V1 files upgraded as Caffe does), its family detected from the layer names
  (:func:`fcn_port.models.checkpoint.detect`), its class count compared with the official
  model's, and every blob matched against the model's shapes (``checkpoint.match``);
  ``nyud-fcn32s-hha`` has exactly the layers of ``nyud-fcn32s-color``, so either name fits it.
  Other widths than the released 64...512 / fc 4096 are accepted and reported;
* the VGG16 caffemodel needs conv1_1 ... conv5_3, fc6, fc7 and fc8 with 1000 outputs and no
  FCN score layer; the VGG16 prototxt must parse and name the same layers;
* a tar archive must open (any compression) with its first member under the expected folder;
* a split file must hold the expected number of VOC ids (``YYYY_NNNNNN``), one a line.

Every failure is a :class:`~fcn_port.port.errors.CaffeFormatError` naming the file.
"""
import re

from fcn_port.port.errors import CaffeFormatError, FcnPortError

VGG16_LAYERS = [f"conv{s}_{i}" for s, n in enumerate((2, 2, 3, 3, 3), 1)
                for i in range(1, n + 1)] + ["fc6", "fc7", "fc8"]


def _head(path):
    with open(path, "rb") as f:
        return f.read(512)


def _not_html(path, shown, kind):
    head = _head(path).lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        raise CaffeFormatError(shown, "", f"is an HTML/XML page, not a {kind}")


def _fcn(entry, path, shown):
    from fcn_port.models import official
    from fcn_port.models.checkpoint import detect, match
    from fcn_port.port.formats.caffemodel import read_weights

    weights = read_weights(path)
    weights.path = shown
    try:
        cfg = detect(weights.params)
    except FcnPortError as e:
        raise CaffeFormatError(shown, "", f"not {entry.model}: {e}") from None
    if cfg is None:
        raise CaffeFormatError(shown, "", f"no FCN layers (score_fr, score_fr_sem, ...): not "
                                          f"{entry.model}")
    fits = {entry.model} | ({"nyud-fcn32s-color"} if entry.model == "nyud-fcn32s-hha" else set())
    if cfg.name not in fits:
        raise CaffeFormatError(shown, "", f"holds {cfg.name}, not {entry.model}")
    cfg = detect(weights.params, entry.model)
    want = official(entry.model)
    classes = [n for _, n in cfg.heads]
    if classes != [n for _, n in want.heads]:
        raise CaffeFormatError(shown, "score_fr", f"{classes} classes, {entry.model} has "
                                                  f"{[n for _, n in want.heads]}")
    match(cfg, weights)  # every blob: names and shapes
    info = {"model": cfg.name, "classes": classes, "widths": list(cfg.widths), "fc": cfg.fc}
    if (cfg.widths, cfg.fc) != (want.widths, want.fc):
        info["note"] = (f"widths {list(cfg.widths)} / fc {cfg.fc}, not the released "
                        f"{list(want.widths)} / {want.fc}")
    return info


def _vgg16(path, shown):
    from fcn_port.port.formats.caffemodel import read_weights

    w = read_weights(path)
    missing = [n for n in VGG16_LAYERS if n not in w.params]
    if missing:
        raise CaffeFormatError(shown, "", f"not VGG16: no layer(s) {', '.join(missing)}")
    if "score_fr" in w.params or "score_fr_sem" in w.params:
        raise CaffeFormatError(shown, "score_fr", "an FCN, not the VGG16 classifier")
    fc8 = w.params["fc8"][0].shape  # (1000, 4096), or V1's legacy (1, 1, 1000, 4096)
    if len(fc8) < 2 or int(fc8[-2]) != 1000:
        raise CaffeFormatError(shown, "fc8", f"shape {tuple(fc8)}: VGG16 ILSVRC has 1000 "
                                             f"outputs")
    return {"model": "vgg16", "format": w.version,
            "widths": [int(w.params[f"conv{s}_1"][0].shape[0]) for s in range(1, 6)]}


def _prototxt(path, shown):
    from fcn_port.port.formats.text import read_net

    net, _ = read_net(path)
    names = {layer.name for layer in net.layer}
    missing = [n for n in VGG16_LAYERS if n not in names]
    if missing:
        raise CaffeFormatError(shown, "", f"not VGG16's prototxt: no layer(s) "
                                          f"{', '.join(missing)}")
    return {"model": "vgg16", "layers": len(net.layer)}


def _tar(entry, path, shown):
    from .archive import first_member

    first = first_member(path).lstrip("./")
    top = entry.extract[0].split("/")[0]
    if first.split("/")[0] != top:
        raise CaffeFormatError(shown, "", f"first member {first!r} is not under {top}/: not "
                                          f"the {entry.name} archive")
    return {"first": first}


def _text(entry, path, shown):
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError:
        raise CaffeFormatError(shown, "", "not a text file (not UTF-8)") from None
    for i, line in enumerate(lines, 1):
        if not re.fullmatch(r"\d{4}_\d{6}", line):
            raise CaffeFormatError(shown, f"line {i}", f"{line[:40]!r} is not a VOC id "
                                                       f"(YYYY_NNNNNN)")
    if entry.lines is not None and len(lines) != entry.lines:
        raise CaffeFormatError(shown, "", f"{len(lines)} ids, the official file has "
                                          f"{entry.lines}")
    return {"ids": len(lines)}


def check(entry, path, shown=None):
    """What ``path`` holds (a dict for the manifest) if it is what ``entry`` promises; else
    CaffeFormatError. ``shown``: the name to put in messages (the final file name)."""
    shown = str(shown or path)
    _not_html(path, shown, entry.kind)
    try:
        if entry.kind == "caffemodel":
            from fcn_port.port.formats.report import detect

            if detect(path) == "text":
                raise CaffeFormatError(shown, "", "is text, not a caffemodel (an error page?)")
            if entry.model == "vgg16":
                return _vgg16(path, shown)
            return _fcn(entry, path, shown)
        if entry.kind == "prototxt":
            return _prototxt(path, shown)
        if entry.kind == "tar":
            return _tar(entry, path, shown)
        return _text(entry, path, shown)
    except CaffeFormatError as e:
        if e.path == shown:
            raise
        raise CaffeFormatError(shown, e.where, e.what) from None
    except FcnPortError as e:
        raise CaffeFormatError(shown, "", str(e).replace(str(path), shown)) from None
