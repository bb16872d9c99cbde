"""Inference as the official infer.py: preprocess, forward, argmax over classes, save.

infer.py loads one image, preprocesses it like the data layers (see models/preprocess.py),
reshapes the net's input to the image size, runs forward, takes ``score[0].argmax(axis=0)``
(the first maximal class wins ties) and saves the labels coloured with the VOC palette and a
blend of them over the image (vis_seg, alpha 0.5).

``infer_files`` does that for many images and writes, per image ``<stem>``:
``<stem>.png`` (a paletted label PNG like VOC SegmentationClass, VOC palette) and
``<stem>_overlay.png`` (or ``.jpg``). A net with several outputs (SIFT Flow: score_sem,
score_geo) gets the first output under those names and each further one as
``<stem>_<name>.png`` / ``<stem>_<name>_overlay.png`` (``score_`` dropped from the name).
Every input is decoded and checked before the first file is written; each file is written
atomically, so a failure leaves no partial file. The model only needs ``model(*inputs)`` and,
optionally, ``model.meta`` (see fcn_port.models.load).

Where we differ from infer.py, on request only: ``max_size`` downscales every input of an
example alike (bilinear with antialiasing, ``F.interpolate``) so the longer side is at most
``max_size``, and the label map comes back to the image's size by nearest neighbour (output
pixel ``i`` takes label ``floor((i + 0.5) * h / H)``, the centre rule). Before any forward
pass, each input's peak memory is estimated (:mod:`.memory`) and a run the device cannot hold
is refused with the estimate and a ``max_size`` that fits (``check_memory=False`` skips it).
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..port.errors import CaffeFormatError, NetError, UserInputError
from ..port.fileio import atomic_output
from . import memory, preprocess, vis


def _device_of(model):
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def predict(model, inputs, device=None):
    """Argmax labels of ``model(*inputs)``: an (N, H, W) int64 tensor, or a tuple of them
    (one per output) when the model returns a tuple. ``inputs``: a tensor or a sequence of
    tensors in ``meta['inputs']`` order. Runs under ``torch.inference_mode()``; the inputs are
    moved to ``device`` (default: the device of the model's parameters), the model is not moved
    and its train/eval mode is left alone. Labels come back on the CPU."""
    tensors = [inputs] if torch.is_tensor(inputs) else list(inputs)
    device = torch.device(device) if device is not None else _device_of(model)
    with torch.inference_mode():
        outs = model(*(t.to(device) for t in tensors))
        if isinstance(outs, dict):
            raise NetError(f"the model returned blobs {list(outs)[:8]} by name (an interpreter "
                           "net); predict takes a model returning score tensors (an FCN)")
        labels = []
        for i, score in enumerate(_as_tuple(outs)):
            if score.dim() != 4:
                raise NetError(f"output {i} has shape {tuple(score.shape)}; expected (N, C, H, W)")
            labels.append(score.argmax(dim=1).cpu())
    return tuple(labels) if isinstance(outs, (tuple, list)) else labels[0]


def _suffixes(meta, n):
    names = list(meta.get("outputs") or ["score"])
    if len(names) != n:
        names = [f"out{i}" for i in range(n)]
    tags = [""]
    for name in names[1:]:
        tag = name[len("score_"):] if name.startswith("score_") else name
        tags.append("_" + tag)
    return tags


def _targets(images, out_dir, tags, overlay_format):
    """Per image, its (label path, overlay path) per output; two images may not share a file."""
    owner, targets = {}, []
    for image in images:
        stem, pairs = Path(image).stem, []
        for tag in tags:
            pair = tuple(os.path.join(out_dir, f"{stem}{tag}{end}")
                         for end in (".png", f"_overlay.{overlay_format}"))
            for target in pair:
                if target in owner:
                    raise CaffeFormatError(image, "", f"would write {target} as {owner[target]} "
                                           "does; give the images different names")
                owner[target] = image
            pairs.append(pair)
        targets.append(pairs)
    return targets


def downscale(tensors, max_size):
    """The input tensors (N x C x H x W) scaled alike so the longer side is at most
    ``max_size`` (antialiased bilinear); unchanged when they already fit or ``max_size`` is
    None."""
    h, w = tensors[0].shape[2:]
    size = memory.scaled_size(h, w, max_size)
    if size == (h, w):
        return list(tensors)
    return [torch.nn.functional.interpolate(t.float(), size=size, mode="bilinear",
                                            align_corners=False, antialias=True)
            for t in tensors]


def upscale_labels(labels, size):
    """N x h x w labels to N x H x W (``size``) by nearest neighbour, centre rule: output
    row ``i`` takes row ``floor((i + 0.5) * h / H)`` (columns alike)."""
    h, w = labels.shape[1:]
    if (h, w) == tuple(size):
        return labels
    rows = ((torch.arange(size[0], dtype=torch.float64) + 0.5) * (h / size[0])).long()
    cols = ((torch.arange(size[1], dtype=torch.float64) + 0.5) * (w / size[1])).long()
    return labels[:, rows.clamp_(max=h - 1)][:, :, cols.clamp_(max=w - 1)]


def check_fits_memory(meta, image, size, max_size, device):
    """Refuse (UserInputError) an input whose estimated peak memory exceeds what ``device``
    has available, naming the estimate and a --max-size that fits in :data:`memory.HEADROOM`
    of it (all of it would leave nothing to the rest of the machine)."""
    h, w = memory.scaled_size(*size, max_size)
    need, have = memory.peak_bytes(meta, h, w), memory.available_bytes(device or "cpu")
    if need is None or have is None or need <= have:
        return
    fits = memory.fitting_size(meta, *size, int(have * memory.HEADROOM))
    hint = (f"give --max-size {fits} (or smaller) to downscale it" if fits else
            "it does not fit even at --max-size 32")
    raise UserInputError(f"{image}: {w} x {h} pixels with {meta.get('model', 'this model')} "
                         f"needs about {memory.gb(need)} of memory at its peak (estimated), "
                         f"{memory.gb(have)} is available on {device or 'cpu'}; {hint}, or "
                         "--force to try anyway")


def check_paired_inputs(meta, hha=None, depth=None):
    """``--hha`` / ``--depth`` given for a model that has no such input: one UserInputError
    naming the option, the model's inputs and which models take that option."""
    kinds = preprocess.input_kinds(meta)
    takers = {"hha": "NYUD color-HHA models (nyud-fcn32s-color-hha)",
              "depth": "NYUD color-D models (nyud-fcn32s-color-d)"}
    for kind, given in (("hha", hha), ("depth", depth)):
        if given and kind not in kinds[1:]:
            inputs = ", ".join(f"{n} ({k})" for n, k in zip(meta.get("inputs") or ["data"], kinds))
            files = " ".join(map(os.fspath, given))
            raise UserInputError(f"--{kind} {files}: {meta.get('model', 'the model')} takes only "
                                 f"{inputs}; --{kind} is only for {takers[kind]}")


def _check_out_dir(out_dir):
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CaffeFormatError(out_dir, "", "exists and is not a folder; expected an output folder")


def infer_files(model, image_paths, out_dir, *, hha=None, depth=None, device=None, alpha=0.5,
                palette=vis.VOC_PALETTE, overlay_format="png", log=None, max_size=None,
                check_memory=True, progress=False, legend=False):
    """Segment each image and write its label PNG and overlay into ``out_dir`` (created).

    ``hha`` / ``depth``: lists paired with ``image_paths`` for NYUD nets that take them.
    ``device``: move the model there (default: leave it where it is). The model is put in
    eval mode. Returns the written paths, in order. ``log``: optional callable given one
    line per image. ``max_size``: run on inputs downscaled to that longer side, labels
    scaled back. ``check_memory``: refuse inputs the device cannot hold (estimated).
    ``progress``: a tqdm bar over the images on stderr. ``legend``: a strip below each overlay
    naming the classes in it (:func:`.vis.with_legend`; the image part is vis_seg's, unchanged;
    the CLI's default)."""
    meta = dict(getattr(model, "meta", None) or {})
    images = [os.fspath(p) for p in image_paths]
    extras = {"hha": hha, "depth": depth}
    for kind, paths in extras.items():
        if paths is not None and len(paths) != len(images):
            raise CaffeFormatError(f"--{kind}", "", f"{len(paths)} {kind} files for "
                                   f"{len(images)} images; expected one per image")
    check_paired_inputs(meta, hha, depth)
    if overlay_format not in ("png", "jpg"):
        raise UserInputError(f"overlay_format must be 'png' or 'jpg'; got {overlay_format!r}")
    if max_size is not None and max_size < 1:
        raise UserInputError(f"max_size must be >= 1; got {max_size}")
    if not 0.0 <= alpha <= 1.0:
        raise NetError(f"--alpha must be in [0, 1]; got {alpha}")
    out_dir = os.fspath(out_dir)
    _check_out_dir(out_dir)
    targets = _targets(images, out_dir, _suffixes(meta, len(meta.get("outputs") or ["score"])),
                       overlay_format)

    def example(i):
        return dict(image=images[i], **{k: (v[i] if v is not None else None)
                                        for k, v in extras.items()})

    # Pass 1: decode and check every input before anything is written.
    inputs_all = set()
    for i in range(len(images)):
        ex = example(i)
        if check_memory:  # from the header, before any pixel is decoded
            check_fits_memory(meta, images[i], preprocess.image_size(images[i]), max_size,
                              device)
        preprocess.load_inputs(meta, **ex)
        preprocess.open_rgb(images[i])
        inputs_all.update(os.path.realpath(p) for p in ex.values() if p is not None)
    for pairs in targets:
        for target in (t for pair in pairs for t in pair):
            if os.path.realpath(target) in inputs_all:
                raise CaffeFormatError(target, "", "is an input; choose another output folder")

    # Pass 2: predict and write.
    if device is not None:
        model.to(device)
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    written = []
    bar = tqdm(targets, desc="infer", unit="image", file=sys.stderr, disable=not progress)
    for i, pairs in enumerate(bar):
        tensors = preprocess.load_inputs(meta, **example(i))
        size = tuple(tensors[0].shape[2:])
        small = downscale(tensors, max_size)
        run = tuple(small[0].shape[2:])
        labels = _as_tuple(predict(model, small, device))
        if len(labels) != len(pairs):
            raise NetError(f"the model returned {len(labels)} outputs; its meta names {len(pairs)}")
        for lab in labels:
            if tuple(lab.shape[1:]) != run:
                raise NetError(f"model output is {tuple(lab.shape[1:])} (H, W) for {images[i]}; "
                               f"expected the input size {run}")
        labels = tuple(upscale_labels(lab, size) for lab in labels)
        shown = np.asarray(preprocess.open_rgb(images[i]))
        heads = [int(n) for _, n in meta.get("heads") or []] or [0] * len(pairs)
        for (label_path, over_path), lab, n in zip(pairs, labels, heads):
            lab = lab[0].numpy()
            if lab.max() > 255:
                raise NetError(f"class {lab.max()} predicted; a label PNG holds classes 0..255")
            vis.save_label_png(lab, label_path, palette)
            blend = vis.overlay(shown, lab, palette, alpha)
            if legend:
                blend = vis.with_legend(blend, vis.present(lab), vis.names_for(n) if n else [],
                                        palette)
            blend = Image.fromarray(blend)
            with atomic_output(over_path) as f:
                if overlay_format == "png":
                    blend.save(f, format="PNG")
                else:
                    blend.save(f, format="JPEG", quality=95)
            written += [label_path, over_path]
        if log:
            log(f"{images[i]} -> {', '.join(t for pair in pairs for t in pair)}")
    return written
