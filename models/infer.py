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
"""
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..port.errors import CaffeFormatError, NetError, UserInputError
from ..port.fileio import atomic_output
from . import preprocess, vis


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


def _check_out_dir(out_dir):
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CaffeFormatError(out_dir, "", "exists and is not a folder; expected an output folder")


def infer_files(model, image_paths, out_dir, *, hha=None, depth=None, device=None, alpha=0.5,
                palette=vis.VOC_PALETTE, overlay_format="png", log=None):
    """Segment each image and write its label PNG and overlay into ``out_dir`` (created).

    ``hha`` / ``depth``: lists paired with ``image_paths`` for NYUD nets that take them.
    ``device``: move the model there (default: leave it where it is). The model is put in
    eval mode. Returns the written paths, in order. ``log``: optional callable given one
    line per image."""
    meta = dict(getattr(model, "meta", None) or {})
    images = [os.fspath(p) for p in image_paths]
    extras = {"hha": hha, "depth": depth}
    for kind, paths in extras.items():
        if paths is not None and len(paths) != len(images):
            raise CaffeFormatError(f"--{kind}", "", f"{len(paths)} {kind} files for "
                                   f"{len(images)} images; expected one per image")
    if overlay_format not in ("png", "jpg"):
        raise UserInputError(f"overlay_format must be 'png' or 'jpg'; got {overlay_format!r}")
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
    for i, pairs in enumerate(targets):
        tensors = preprocess.load_inputs(meta, **example(i))
        labels = _as_tuple(predict(model, tensors, device))
        if len(labels) != len(pairs):
            raise NetError(f"the model returned {len(labels)} outputs; its meta names {len(pairs)}")
        size = tuple(tensors[0].shape[2:])
        shown = np.asarray(preprocess.open_rgb(images[i]))
        for (label_path, over_path), lab in zip(pairs, labels):
            if tuple(lab.shape[1:]) != size:
                raise NetError(f"model output is {tuple(lab.shape[1:])} (H, W) for {images[i]}; "
                               f"expected the input size {size}")
            lab = lab[0].numpy()
            if lab.max() > 255:
                raise NetError(f"class {lab.max()} predicted; a label PNG holds classes 0..255")
            vis.save_label_png(lab, label_path, palette)
            blend = Image.fromarray(vis.overlay(shown, lab, palette, alpha))
            with atomic_output(over_path) as f:
                if overlay_format == "png":
                    blend.save(f, format="PNG")
                else:
                    blend.save(f, format="JPEG", quality=95)
            written += [label_path, over_path]
        if log:
            log(f"{images[i]} -> {', '.join(t for pair in pairs for t in pair)}")
    return written
