"""``fcn-port eval``: a trained FCN scored on its dataset's test split, as score.py's seg_tests.

How the official code computes it (``score.py`` ``compute_hist`` / ``seg_tests``, driven from
each model's ``solve.py``; facts in ``shared/FCN_FACTS.md`` §4 and §1): the model's ``val`` /
``test`` net, whose first layer is its dataset's Python data layer (VOC ``VOCSegDataLayer`` on
``seg11valid``, SIFT Flow / NYUD ``test``, PASCAL-Context ``val``), is run one image per forward
over the whole split; each image's argmax over the score channels is added into one confusion
matrix per head and the ``loss`` blob into a running sum; see :mod:`.segtests` for the details
and :mod:`.score` for the metrics.

Here: the checkpoint (or caffemodel) is loaded by :func:`fcn_port.models.load` as the
hand-written FCN module (the same Caffe layers, so the same scores as the prototxt net); the
data layer is the one of :func:`fcn_port.models.net_param` for the model's config and its test
split, with its official ``param_str`` (mean, split, seed), except that its folder is the
``--root`` given (PASCAL-Context's second folder, ``voc_dir``, is ``--voc-root``) and ``--split``
replaces its split; it is read sequentially. The heads and their loss layers are the val net's
``SoftmaxWithLoss`` layers (``normalize: false``, ``ignore_label: 255``), computed by fcn-port's
one implementation of that layer (:mod:`fcn_port.port.layers.loss`).

Where we differ: ``compute_hist`` can save each prediction as an unpaletted PNG named by the
list index; ``--save-pred`` writes VOC-paletted PNGs named by image id (so ``fcn-port score``
re-scores them), a second head's as ``<id>_<head>.png``. A dataset that does not match the
model's, a missing folder or split, an unloadable checkpoint: one error before anything is
written or run.
"""
import os
from pathlib import Path

import numpy as np
import torch

from ..port.errors import UnsupportedError, UserInputError
from .segtests import SegTest, head_name, heads_of

DATASETS = ("voc", "pascalcontext", "siftflow", "nyud")
TEST_SPLIT = "val"  # net_param's name for the test net of train/val datasets


class Evaluation:
    """Everything ``fcn-port eval`` needs, checked: the model, the reader, the heads.

    ``run(limit=None, on_image=None, progress=True)`` scores the images and returns the
    :class:`~.segtests.SegTest`; ``on_image(k, batch, preds)`` sees each image (saving,
    grids)."""

    def __init__(self, checkpoint, dataset, root, *, split=None, voc_root=None, device="cpu",
                 mean=None):
        from ..models import net_param
        from ..models.verbs import load_checkpoint
        from ..models.zoo import FCNConfig
        from . import datasets

        if dataset not in DATASETS:
            raise UserInputError(f"--dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
        if not os.path.isdir(root):
            raise UserInputError(f"--root {root}: no such folder")
        if voc_root is not None and not os.path.isdir(voc_root):
            raise UserInputError(f"--voc-root {voc_root}: no such folder")
        self.checkpoint = str(checkpoint)
        self.model = load_checkpoint(self.checkpoint, device)
        meta = getattr(self.model, "meta", {}) or {}
        if meta.get("kind") == "caffenet" or "dataset" not in meta:
            raise UnsupportedError(f"{checkpoint}: not an FCN of the official family (a net "
                                   "from --prototxt); fcn-port eval needs one")
        self.meta, self.dataset = meta, dataset
        if meta["dataset"] != dataset:
            raise UserInputError(f"--dataset {dataset}: {checkpoint} holds {meta['model']}, a "
                                 f"{meta['dataset']} model; give --dataset {meta['dataset']}")
        cfg = FCNConfig.from_meta(meta)
        splits = tuple(cfg.solver.get("splits", ("train", TEST_SPLIT)))
        val = net_param(cfg, splits[1])
        data = val.layer[0]
        keys = datasets.folder_keys(data)
        if not keys:
            raise UnsupportedError(f"{meta['model']}: no reader for its data layer "
                                   f"{data.python_param.module}.{data.python_param.layer} yet")
        folders = {keys[0]: root}
        for key in keys[1:]:
            if key != "voc_dir":
                raise UnsupportedError(f"{meta['model']}: data layer folder {key!r} has no option")
            if voc_root is None:
                raise UserInputError(f"--voc-root: {meta['model']}'s data layer also reads the "
                                     "PASCAL VOC folder (voc_dir); give it")
            folders[key] = voc_root
        self.reader = datasets.reader_for(data, root=root, folders=folders, split=split,
                                          randomize=False, mean=mean)
        self.split = self.reader.split
        self.inputs = list(meta.get("inputs") or ["data"])
        missing = [t for t in self.inputs if t not in self.reader.tops]
        if missing:
            raise UnsupportedError(f"{meta['model']}: inputs {missing} are not tops "
                                   f"{list(self.reader.tops)} of its data layer")
        self.heads = heads_of(val.layer, set(data.top[1:]))
        outputs = list(meta.get("outputs") or ["score"])
        if sorted(h.score for h in self.heads) != sorted(outputs):
            raise UnsupportedError(f"{meta['model']}: outputs {outputs} do not match the val "
                                   f"net's scored blobs {[h.score for h in self.heads]}")
        self.outputs, self.device = outputs, device
        self.classes = {"score" + sfx: int(n) for sfx, n in cfg.heads}
        self.model.to(device)

    @property
    def ids(self):
        return list(self.reader.ids)

    def run(self, limit=None, on_image=None, progress=True):
        from tqdm import tqdm

        test = SegTest(self.heads)
        n = len(self.ids) if limit is None else min(limit, len(self.ids))
        with torch.inference_mode():
            for k in tqdm(range(n), desc="eval", unit="img", leave=False,
                          disable=None if progress else True):
                batch = self.reader[k]
                x = [torch.from_numpy(np.ascontiguousarray(batch[t])).to(self.device)
                     for t in self.inputs]
                out = self.model(*x)
                out = out if isinstance(out, (tuple, list)) else (out,)
                preds = test.add(dict(zip(self.outputs, out)), batch)
                if on_image is not None:
                    on_image(k, batch, preds)
        return test

    def image_rgb(self, batch):
        """The first input back as an RGB uint8 image (the mean added back, BGR -> RGB; NYUD's
        HHA is not channel-flipped)."""
        x = np.asarray(batch[self.inputs[0]], dtype=np.float64)[0]
        means = self.meta.get("means") or {}
        mean = np.asarray(means.get(self.inputs[0], self.meta.get("mean", (0, 0, 0))))
        if x.shape[0] != 3:
            x = np.repeat(x[:1], 3, axis=0)
            mean = np.zeros(3)
        x = x + mean.reshape(-1, 1, 1)[: x.shape[0]]
        if not self.meta.get("model", "").endswith("-hha"):
            x = x[::-1]
        return np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def pred_paths(folder, ident, heads):
    """Where ``--save-pred`` puts each head's prediction of image ``ident``."""
    out = {}
    for i, h in enumerate(heads):
        name = head_name(h, i)
        out[h.score] = Path(folder) / (f"{ident}_{name}.png" if name else f"{ident}.png")
    return out


def image_iu(gt, pred, n):
    """Mean IU of one image (score.py's formula on its own matrix), NaN when nothing counts."""
    from .score import fast_hist, metrics

    return metrics(fast_hist(gt, pred, n))["mean_iu"]
