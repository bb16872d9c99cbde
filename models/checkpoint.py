"""Caffemodel to checkpoint: which FCN the weights are, conversion, and one-line loading.

:func:`detect` reads the family from the layer names of a caffemodel (``score_fr`` and its
skips ``score_pool4`` / ``score_pool3``, ``scale_pool4`` for at-once, ``score_fr_sem`` for SIFT
Flow, ``conv1_1_bgrd`` / ``conv1_1color`` for NYUD, ``conv1`` for AlexNet) and the class
count and widths from the blob shapes, so fine-tuned and reduced-width nets convert too.
:func:`convert` checks every blob against the model's shapes (:func:`.shapes.param_shapes`, the
same as the module's own, set up on the ``meta`` device) and writes one checkpoint::

    {"format": "fcn-port/1", "meta": {...}, "state_dict": {"conv1_1.0": ..., ...}}

``meta`` holds the config (model name, classes, mean, inputs, widths), the source file and its
sha256, and the fcn-port version. A caffemodel that is no FCN converts with its prototxt into an
*interpreter* checkpoint (``meta["kind"] == "caffenet"``, the net's text inside). :func:`load`
gives back a ready module in eval mode for either kind.

An output named ``*.safetensors`` holds the same state dict and meta as a safetensors file
(:mod:`.portable`): no pickle, and an FCN's convert imports no torch (:mod:`.shapes` has the
detection and the shapes). :func:`load` tells the formats apart by their first bytes (a
``.safetensors`` name decides for a file that is neither) and checks both alike.
"""
import os

from fcn_port.port.errors import CaffeFormatError, FcnPortError, NetError, UserInputError
from fcn_port.port.fileio.hashing import in_background, sha256
from fcn_port.port.formats.records import refuse_nonfinite

from .shapes import ConvertError, detect, match_arrays  # noqa: F401  (public here too)
from .zoo import FCNConfig

FORMAT = "fcn-port/1"
SAFETENSORS = ".safetensors"


def _on_meta(cfg):
    """The FCN of ``cfg`` set up on the ``meta`` device: shapes only, nothing allocated."""
    import torch

    from .fcn import FCN

    with torch.device("meta"):
        return FCN(cfg)


def _shapes(net):
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def expected_shapes(cfg):
    """{state_dict key: shape} of the model, set up without allocating anything."""
    return _shapes(_on_meta(cfg))


def match(cfg, weights, want=None):
    """The state dict (tensors) for ``cfg`` from ``weights`` (a Weights), or ConvertError
    listing every missing, unexpected and mis-shaped blob (:func:`.shapes.match_arrays`).
    ``want``: the model's shapes, if already known."""
    import torch

    return {k: torch.from_numpy(a) for k, a in match_arrays(cfg, weights, want).items()}


def _input_layer(weights):
    """``{"input_layer": name}`` of the source net's Input layer where it has one and the name
    is not the official deploy net's ``input`` (Caffe's own files call it ``data``), so that
    ``export`` writes the net back with the source's name."""
    names = [lp.name for lp in weights.net.layer if lp.type == "Input"]
    return {"input_layer": names[0]} if len(names) == 1 and names[0] != "input" else {}


def _meta_common(path, digest):
    from fcn_port import __version__

    return {"source": os.path.basename(path), "sha256": digest, "fcn_port": __version__}


def convert(path, out=None, *, model=None, prototxt=None, digest=None):
    """Convert caffemodel ``path`` (binary or HDF5) into a checkpoint at ``out`` (default:
    ``path`` with ``.pt``). Returns (out, meta). Nothing is written if anything mismatches.
    ``prototxt``: the net of weights that are no FCN (an interpreter checkpoint); given with an
    FCN's weights it is refused rather than ignored.
    An ``out`` ending in ``.safetensors`` is a safetensors checkpoint (:mod:`.portable`); an
    FCN's is written without importing torch. ``digest``: :func:`hash_early`'s result, where
    the caller started the source's sha256 before its imports."""
    from fcn_port.port.formats.caffemodel import read_weights

    path = os.fspath(path)
    weights = read_weights(path)
    if digest is None:  # the source's sha256, while the rest goes on
        digest = in_background(sha256, path)
    out = out or os.path.splitext(path[:-3] if path.endswith(".h5") else path)[0] + ".pt"
    # NaN/Inf: a .pt scans off the main thread; a safetensors file counts while it copies
    finite = weights.nonfinite if _is_safetensors(out) else in_background(weights.nonfinite)
    try:
        cfg = detect(weights.params, model)
    except ConvertError as e:  # FCN-like names, other layers: with a prototxt, any net
        if prototxt is None or model is not None:
            raise ConvertError(f"{path}: {e}") from None
        cfg = None
    if cfg is None:
        if prototxt is None:
            raise ConvertError(f"{path}: no FCN layers (score_fr, score_fr_sem, ...) in these "
                               f"weights; give --prototxt to convert any Caffe net for the "
                               f"interpreter, or --model NAME")
        refuse_nonfinite(path, finite())
        return _convert_caffenet(weights, path, out, prototxt, digest)
    if prototxt is not None:
        raise UserInputError(f"--prototxt {prototxt}: {path} holds {cfg.name} (found from its "
                             "layer names and shapes), which convert writes as the FCN model "
                             "with no prototxt; --prototxt is for nets that are no FCN (drop "
                             "it; --model forces a family)")
    sd = match_arrays(cfg, weights)  # numpy views of the mapped file: no torch needed here
    if _is_safetensors(out):  # the copy runs beside the sha256, which fills the header last
        from .portable import write_checkpoint

        meta = {"kind": "fcn", **cfg.meta(), **_input_layer(weights),
                **_meta_common(path, "0" * 64)}
        return out, write_checkpoint(
            out, meta, sd, late_meta=lambda: {"sha256": digest()}, helpers=0,  # 1 core each
            refuse_nonfinite=lambda bad: refuse_nonfinite(
                path, [(*k.rsplit(".", 1), n) for k, n in bad]))
    refuse_nonfinite(path, finite())
    meta = {"kind": "fcn", **cfg.meta(), **_input_layer(weights), **_meta_common(path, digest())}
    save({"format": FORMAT, "meta": meta, "state_dict": sd}, out)
    return out, meta


def convert_to_safetensors(path, out=None, *, model=None, prototxt=None):
    """``fcn-port convert path -o out.safetensors``: :func:`convert` into a safetensors
    checkpoint (default: ``path`` with ``.safetensors``); no torch import for an FCN."""
    path = os.fspath(path)
    if out is None:
        out = os.path.splitext(path[:-3] if path.endswith(".h5") else path)[0] + SAFETENSORS
    if not _is_safetensors(out):
        raise UserInputError(f"-o {out}: a safetensors checkpoint's name must end in "
                             f"{SAFETENSORS}")
    return convert(path, out, model=model, prototxt=prototxt)


def _convert_caffenet(weights, path, out, prototxt, digest):
    import torch

    from fcn_port.port.net import CaffeNet
    from fcn_port.port.formats.text import read_net, to_text

    from fcn_port.port.formats.netcheck import check_net
    from fcn_port.port.layers import types

    net_param, _ = read_net(prototxt)
    problems = check_net(net_param, set(types()))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise NetError(f"{prototxt}: {problems[0]}{more}; expected a net Caffe can build")
    try:
        with torch.device("meta"):
            net = CaffeNet(net_param, "TEST")
            net.load_caffemodel(weights, strict=True)  # names, counts and shapes; copies nothing
    except NetError as e:
        raise NetError(f"{prototxt}: {e}") from None
    # each blob in the net's own shape: a V1 file's legacy 4-D dims are gone from the checkpoint
    shapes = {lp.name: [tuple(layer.blob(i).shape) for i in range(layer.n_blobs)]
              for lp, layer in zip(net.layer_params, net.layers.values()) if layer.n_blobs}
    sd = {f"{k}.{i}": weights.shaped(k, i, shapes[k][i]) if k in shapes else a
          for k, blobs in weights.params.items() for i, a in enumerate(blobs)}
    meta = {"kind": "caffenet", "model": net_param.name or os.path.basename(prototxt),
            "prototxt": to_text(net_param), **_meta_common(path, digest())}
    save({"format": FORMAT, "meta": meta, "state_dict": sd}, out)
    return out, meta


def save(obj, out):
    """Write checkpoint ``obj`` ({"format", "meta", "state_dict"}; tensors or numpy arrays) to
    ``out``, atomically: ``torch.save`` (:mod:`fcn_port.port.fileio.torchsave`), or safetensors
    for a name ending in ``.safetensors`` (:mod:`.portable`). Either way a caffemodel's floats go
    file to file."""
    if _is_safetensors(out):
        from .portable import write_checkpoint

        return write_checkpoint(out, obj["meta"], obj["state_dict"])
    import torch

    from fcn_port.port.fileio.torchsave import save as save_file

    save_file({**obj, "state_dict": {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(v)
                                     for k, v in obj["state_dict"].items()}}, out)


def _is_safetensors(path):
    return os.fspath(path).endswith(SAFETENSORS)


def load(path, map_location="cpu", *, model=None):
    """The module a checkpoint (or a caffemodel of an FCN) holds, in eval mode, with ``.meta``.
    FCNs are set up on the ``meta`` device and the loaded tensors assigned: no zeros first.
    ``model`` (an official name) forces the family of a caffemodel, and must be a checkpoint's."""
    path = os.fspath(path)
    kind = _kind(path)
    if kind == "caffemodel":
        net, meta = _from_caffemodel(path, model)
    else:
        meta, sd = _read_checkpoint(path, map_location, kind)
        if model is not None and meta.get("model") != model:
            raise ConvertError(f"{path}: holds {meta.get('model')!r}, not {model!r}")
        net = _from_checkpoint(path, meta, sd)
    net.meta = meta
    return net.eval()


def _from_checkpoint(path, meta, sd):
    """The module of a checkpoint's (meta, state dict); a meta or state dict that does not make
    one (edited, or from another program) is one CaffeFormatError naming the file."""
    from fcn_port.port.formats.torchfile import nonfinite

    bad = nonfinite(sd)
    if bad:
        listed = ", ".join(f"'{k}': {n}" for k, n in bad[:5])
        raise CaffeFormatError(path, "state_dict", f"NaN/Inf values in {len(bad)} tensors "
                               f"({listed}); expected finite weights")
    try:
        if meta.get("kind") == "caffenet":
            return _load_caffenet(meta, sd, path)
        net = _on_meta(FCNConfig.from_meta(meta))
        want, have = _shapes(net), {k: tuple(v.shape) for k, v in sd.items()}
        wrong = [f"{k}: {have.get(k, 'missing')} in the file, {s} in the model" for k, s in
                 want.items() if have.get(k) != s] + [f"unexpected {k}" for k in have if k not in want]
        if wrong:
            raise CaffeFormatError(path, "state_dict", f"does not fit its metadata "
                                   f"({meta.get('model')}, classes {meta.get('classes')}): "
                                   + "; ".join(wrong[:4]) + (" ..." if len(wrong) > 4 else "")
                                   + "; expected a checkpoint from fcn-port convert")
        net.load_state_dict(sd, strict=True, assign=True)
        return net
    except FcnPortError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise CaffeFormatError(path, "", f"its metadata and tensors do not make a model "
                               f"({type(e).__name__}: {first}); expected a checkpoint from "
                               "fcn-port convert") from None


def _from_caffemodel(path, model):
    """(FCN, meta) straight from a caffemodel: one set-up on ``meta`` serves for the shape
    check and as the module the file's tensors are assigned to."""
    from fcn_port.port.formats.caffemodel import read_weights

    weights = read_weights(path).check_finite()
    try:
        cfg = detect(weights.params, model)
    except ConvertError as e:
        raise ConvertError(f"{path}: {e}") from None
    if cfg is None:
        raise ConvertError(f"{path}: no FCN layers (score_fr, score_fr_sem, ...); load "
                           f"other nets with fcn_port.port.net.from_prototxt")
    net = _on_meta(cfg)
    net.load_state_dict(match(cfg, weights, _shapes(net)), strict=True, assign=True)
    return net, {"kind": "fcn", **cfg.meta(), **_input_layer(weights),
                 "source": os.path.basename(path)}


def _kind(path):
    """How ``path`` is read: "torch" (a PyTorch zip or pickle), "safetensors" (by its first
    bytes, or by its name when they are no file format at all), else "caffemodel" (a folder,
    a missing file: the caffemodel reader names it)."""
    from fcn_port.port.fileio.safetensors import is_safetensors
    from fcn_port.port.formats.sniff import sniff

    kind = sniff(path)
    if kind in ("zip", "pickle"):
        return "torch"
    if is_safetensors(path) or (_is_safetensors(path) and kind not in ("hdf5", "folder")):
        return "safetensors"
    return "caffemodel"


def _is_caffemodel(path):
    return _kind(path) == "caffemodel"


def _read_checkpoint(path, map_location, kind="torch"):
    """(meta, state dict). A ``.pt`` is loaded with ``weights_only=True`` only: a pickle that
    would run code is refused in one line (:mod:`fcn_port.port.formats.torchfile`); a
    safetensors file holds no code, its tensors are views of the mapped file (:mod:`.portable`)."""
    if kind == "safetensors":
        from .portable import read_checkpoint

        return read_checkpoint(path, map_location)
    from fcn_port.port.formats.torchfile import read_checkpoint

    return read_checkpoint(path, map_location)


def _load_caffenet(meta, sd, path="checkpoint"):
    """The interpreter net of a checkpoint, loaded strictly (every param layer, every shape),
    checked on the ``meta`` device first: an embedded prototxt declaring a huge layer the state
    dict does not fill is refused before the net is built."""
    import torch

    from fcn_port.port.formats.caffemodel import Weights
    from fcn_port.port.net import CaffeNet
    from fcn_port.port.formats.proto import caffe_pb2
    from fcn_port.port.formats.text import parse_text

    net_param, _ = parse_text(meta["prototxt"], caffe_pb2.NetParameter, f"{path} (meta prototxt)")
    params = {}
    for key, t in sd.items():
        layer, i = key.rsplit(".", 1)
        params.setdefault(layer, []).append((int(i), t.numpy()))
    params = {k: [a for _, a in sorted(v)] for k, v in params.items()}
    # checkpoints of older fcn-ports kept V1 files' 4-D dims
    weights = Weights(net_param, params, legacy=Weights.legacy_like(params))
    try:  # every param layer filled, each blob's shape right, before anything is allocated
        with torch.device("meta"):
            CaffeNet(net_param, "TEST").load_caffemodel(weights, strict=True)
    except NetError as e:
        raise CaffeFormatError(path, "state_dict", f"does not fill its prototxt's net ({e}); "
                               "expected a checkpoint from fcn-port convert") from None
    net = CaffeNet(net_param, "TEST")
    net.load_caffemodel(weights, strict=True)
    return net
