"""Which FCN a caffemodel's weights are, and the blob shapes each FCN needs, without torch.

What ``fcn-port convert`` needs before it writes anything, kept free of torch so that a
safetensors convert (:mod:`.portable`) starts and runs in numpy alone:

* :func:`detect` reads the family from the layer names (``score_fr`` and its skips
  ``score_pool4`` / ``score_pool3``, ``scale_pool4`` for at-once, ``score_fr_sem`` for SIFT Flow,
  ``conv1_1_bgrd`` / ``conv1_1color`` for NYUD, ``conv1`` for AlexNet) and the class count and
  widths from the blob shapes, so fine-tuned and reduced-width nets convert too;
* :func:`param_shapes` gives ``{"<layer>.<i>": shape}`` for a config by walking its net
  (:func:`.spec.net_param`, the layer list :class:`.fcn.FCN` is built from) with Caffe's rules
  for blob shapes: Convolution ``(num_output, channels / group, kh, kw)`` and bias
  ``(num_output,)`` (``BaseConvolutionLayer::LayerSetUp``), Deconvolution ``(channels,
  num_output / group, kh, kw)``, a one-bottom Scale ``(channels,)`` (``ScaleLayer::LayerSetUp``,
  axis 1, num_axes 1); tests check it against the FCN module's own state dict for every
  official model;
* :func:`match_arrays` pairs a caffemodel's blobs with those shapes: every missing,
  unexpected and mis-shaped blob in one :class:`ConvertError`.
"""
from fcn_port.port.errors import NetError

from .zoo import OFFICIAL, official


class ConvertError(NetError):
    """The weights do not fit the model: names the file and every mismatch."""


def _out(params, layer):
    """The output count of ``layer``'s weights: its first dim (a blob without dims, or a layer
    without blobs, is no FCN layer: ConvertError naming it)."""
    blobs = params[layer]
    if not blobs or not blobs[0].shape:
        raise ConvertError(f"layer '{layer}' has {'a weight of shape ()' if blobs else 'no blobs'}"
                           "; expected the 4-D weights of a convolution")
    return int(blobs[0].shape[0])


def detect(params, name=None):
    """The :class:`FCNConfig` of ``params`` ({layer: [blob, ...]}); ``name`` forces the family."""
    have = set(params)
    if name is not None:
        base = official(name)
    elif "conv1_1color" in have:
        base = OFFICIAL["nyud-fcn32s-color-hha"]
    elif "conv1_1_bgrd" in have:
        base = OFFICIAL["nyud-fcn32s-color-d"]
    elif "conv1" in have and "score_fr" in have:
        base = OFFICIAL["voc-fcn-alexnet"]
    else:
        sift = "score_fr_sem" in have
        if not sift and "score_fr" not in have:
            return None
        h = "_sem" if sift else ""
        stride = 8 if f"score_pool3{h}" in have else 16 if f"score_pool4{h}" in have else 32
        dataset = "siftflow" if sift else {60: "pascalcontext"}.get(_out(params, "score_fr"), "voc")
        if not sift and _out(params, "score_fr") == 40 and stride == 32:
            base = OFFICIAL["nyud-fcn32s-color"]
        else:
            base = OFFICIAL[f"{dataset}-fcn{stride}s" + ("-atonce" if "scale_pool4" in have else "")]
    return _fit(base, params)


def _fit(cfg, params):
    """``cfg`` with classes, widths and input channels read from the blob shapes."""
    t = cfg.towers[0]
    try:
        heads = tuple((h, _out(params, f"score_fr{h}{t}")) for h, _ in cfg.heads)
        if cfg.arch == "alexnet":
            widths = tuple(_out(params, f"conv{i}") for i in range(1, 6))
        else:
            widths = tuple(_out(params, cfg.conv1 if s == 1 and not t else f"conv{s}_1{t}")
                           for s in range(1, 6))
        conv1 = cfg.conv1 if not t else f"conv1_1{t}"
        in_ch = int(params[conv1][0].shape[1])
        return cfg.replace(heads=heads, widths=widths, fc=_out(params, f"fc6{t}"),
                           in_channels=in_ch if len(cfg.towers) == 1 else cfg.in_channels)
    except (KeyError, IndexError) as e:
        raise ConvertError(f"weights lack layer {e} of {cfg.name}") from None


def _kernel(cp):
    """(kh, kw) of a ConvolutionParameter: kernel_h/kernel_w, else kernel_size (1 or 2 values)."""
    if cp.kernel_h or cp.kernel_w:
        return int(cp.kernel_h), int(cp.kernel_w)
    ks = list(cp.kernel_size)
    return (int(ks[0]), int(ks[-1])) if ks else (1, 1)


def param_shapes(cfg):
    """``{"<layer>.<i>": shape}`` of every learnable blob of ``cfg``'s FCN, in the net's order."""
    from .spec import net_param

    channels, shapes = {}, {}
    for lp in net_param(cfg, "model").layer:
        if lp.type == "Input":
            channels.update((top, int(s.dim[1])) for top, s in zip(lp.top, lp.input_param.shape))
            continue
        c = [channels[b] for b in lp.bottom]
        out = c[0] if c else 0
        if lp.type in ("Convolution", "Deconvolution"):
            cp = lp.convolution_param
            n, g, (kh, kw) = int(cp.num_output), int(cp.group), _kernel(cp)
            weight = (n, c[0] // g, kh, kw) if lp.type == "Convolution" else (c[0], n // g, kh, kw)
            shapes[f"{lp.name}.0"] = weight
            if cp.bias_term:
                shapes[f"{lp.name}.1"] = (n,)
            out = n
        elif lp.type == "Scale" and len(lp.bottom) == 1:
            shapes[f"{lp.name}.0"] = (c[0],)
            if lp.scale_param.bias_term:
                shapes[f"{lp.name}.1"] = (c[0],)
        elif lp.type == "Concat":
            out = sum(c)
        channels.update((top, out) for top in lp.top)
    return shapes


def fits(weights, layer, i, shape):
    """Whether blob ``i`` of ``layer`` loads as ``shape`` (:meth:`Weights.fits`, or the same
    shape for a plain ``{layer: [arrays]}``)."""
    if hasattr(weights, "fits"):
        return weights.fits(layer, i, shape)
    return tuple(weights.params[layer][i].shape) == tuple(shape)


def match_arrays(cfg, weights, want=None):
    """``{"<layer>.<i>": float32 numpy array in the model's shape}`` from ``weights`` (a
    Weights), or ConvertError listing every missing, unexpected and mis-shaped blob. The arrays
    are views of the weights' (of the mapped file) wherever they already are float32.
    ``want``: the model's shapes, if already known."""
    import numpy as np

    want, problems, out = want or param_shapes(cfg), [], {}
    for layer, blobs in weights.params.items():
        for i, a in enumerate(blobs):
            key = f"{layer}.{i}"
            if key not in want:
                problems.append(f"unexpected blob {key} {tuple(a.shape)} (no such layer/blob in "
                                f"{cfg.name})")
                continue
            if not fits(weights, layer, i, want[key]):
                problems.append(f"{key}: shape {tuple(a.shape)} in the file, {cfg.name} "
                                f"needs {want[key]}")
                continue
            a = a.reshape(want[key])  # legacy num/channels/height/width dims
            out[key] = a if a.dtype == np.float32 else a.astype(np.float32)
    problems += [f"missing blob {k} {s}" for k, s in want.items() if k not in out and
                 not any(p.startswith(k + ":") for p in problems)]
    if problems:
        where = weights.path or "weights"
        raise ConvertError(f"{where}: does not fit {cfg.name} (classes "
                           f"{[n for _, n in cfg.heads]}, widths {list(cfg.widths)}, fc {cfg.fc}): "
                           + "; ".join(problems))
    return out
