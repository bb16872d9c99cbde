"""PASCAL-Context reader: what the official ``pascalcontext_layers.PASCALContextSegDataLayer``
gives.

How the official layer computes it (``pascalcontext_layers.py``,
``PASCALContextSegDataLayer``; facts in ``shared/FCN_FACTS.md`` §5):

* param_str keys ``voc_dir``, ``context_dir`` and ``split`` (required), ``randomize`` (default
  True), ``seed`` (default None); no ``mean`` key: the mean is fixed,
  ``np.array((104.007, 116.669, 122.679), dtype=np.float32)`` (B, G, R). Two tops, data and
  label. The nets pass ``voc_dir='../../data/pascal'`` and
  ``context_dir='../../data/pascal-context'``.
* The images are VOC 2010's: ``setup`` appends ``'/VOC2010'`` to ``voc_dir``, so the split is
  ``{voc_dir}/VOC2010/ImageSets/Main/{split}.txt`` (train 4,998 ids, val 5,105) and the images
  ``{voc_dir}/VOC2010/JPEGImages/{id}.jpg`` (float32, RGB->BGR, minus the float32 mean, CHW).
  Order as the VOC layers (see :mod:`.voc`).
* Labels: ``scipy.io.loadmat('{context_dir}/trainval/{id}.mat')['LabelMap']``, the full label
  ids (1-459 in the dataset's ``labels.txt``), mapped to the 59-class task. ``setup`` reads
  ``{context_dir}/labels.txt`` and ``{context_dir}/59_labels.txt`` (lines ``id: name``, via
  ``np.genfromtxt(delimiter=':')``) into two lists of names with every space removed
  (``'air conditioner'`` -> ``'airconditioner'``), then renames three task names to the full
  list's: ``diningtable`` -> ``table``, ``bedcloth`` -> ``bedclothes``, ``clothes`` -> ``cloth``.
  ``load_label`` starts from zeros (uint8) and, for the ``k``-th task name (from 0), sets every
  pixel whose LabelMap value is that name's **position** in labels.txt plus 1 to ``k + 1``. So
  the 59 classes are 1-59 in 59_labels.txt order, everything else (unlabelled 0 and the other
  400-odd labels) is background 0, and no 255 (void) is ever produced. 1 x H x W.

Where we differ, besides :mod:`.voc`'s (replayed order, Python 2's ``randint``, files checked up
front): the two label lists are parsed here (one ``id: name`` a line, blank lines skipped) and
their ids must count 1, 2, 3, ... in order, so that the layer's position rule and the file's
own ids agree (for the real files they do); a task name missing from labels.txt, or a list
without one of the three renamed names, is an error naming the file (the official fails with a
bare ``ValueError``); the label map's size is checked against the image's.
"""
from pathlib import Path

import numpy as np

from ..port.errors import CaffeFormatError, UserInputError
from .voc import SegReader, mat_plane

# (name in labels.txt, name in 59_labels.txt), as the layer's setup renames them
RENAMES = (("table", "diningtable"), ("bedclothes", "bedcloth"), ("cloth", "clothes"))
FULL_LIST, TASK_LIST = "labels.txt", "59_labels.txt"


def read_label_list(path):
    """The names of an ``id: name`` list, spaces removed, in file order; the ids must be
    1, 2, 3, ... (errors name the file and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such label list (PASCAL-Context's context_dir holds "
                             f"{FULL_LIST}, and {TASK_LIST} from the dataset site)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CaffeFormatError(path, "", f"cannot read the label list ({e})") from None
    names = []
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(":")
        if len(fields) != 2 or not fields[0].strip().isdigit() or not fields[1].strip():
            raise CaffeFormatError(path, f"line {k}", f"{line.strip()!r}; expected 'id: name'")
        if int(fields[0]) != len(names) + 1:
            raise CaffeFormatError(path, f"line {k}", f"id {int(fields[0])} where "
                                   f"{len(names) + 1} was expected: the official layer numbers "
                                   "the labels by their position (1, 2, 3, ...)")
        names.append(fields[1].strip().replace(" ", ""))
    if not names:
        raise CaffeFormatError(path, "", "the label list is empty")
    return names


def task_label_ids(context_dir):
    """The labels.txt id (position + 1) of each of 59_labels.txt's classes, in task order, as
    the layer's ``setup`` and ``load_label`` work them out (module doc)."""
    full_path, task_path = Path(context_dir) / FULL_LIST, Path(context_dir) / TASK_LIST
    full, task = read_label_list(full_path), read_label_list(task_path)
    for main, renamed in RENAMES:
        if renamed not in task:
            raise CaffeFormatError(task_path, "", f"no class {renamed!r}; the official layer "
                                   f"renames it to {main!r} and fails without it")
        task[task.index(renamed)] = main
    ids = []
    for name in task:
        if name not in full:
            raise CaffeFormatError(full_path, "", f"no label {name!r}, which {TASK_LIST} "
                                   "lists; expected the full PASCAL-Context label list")
        ids.append(full.index(name) + 1)
    return ids


def map_labels(label_map, ids):
    """Full label ids -> task classes: pixels equal to ``ids[k]`` become ``k + 1``, all others 0
    (uint8), in the layer's order (a later class wins a tie)."""
    label = np.zeros(np.shape(label_map), dtype=np.uint8)
    for k, full_id in enumerate(ids):
        label[label_map == full_id] = k + 1
    return label


class ContextSeg(SegReader):
    """``pascalcontext_layers.PASCALContextSegDataLayer``: ``{context_dir}/trainval/<id>.mat``
    labels mapped to the 59 classes (0 background) and VOC 2010 images under
    ``{voc_dir}/VOC2010``. The reader's folder is ``context_dir`` (the dataset's own files);
    ``voc_dir`` is the folder holding ``VOC2010``, as the layer's param_str key."""

    kind = "PASCAL-Context (context_dir)"
    dataset = "pascalcontext"

    def __init__(self, folder, split, *, voc_dir, **kw):
        self.voc_dir = Path(voc_dir)
        self.voc2010 = self.voc_dir / "VOC2010"
        super().__init__(folder, split, **kw)

    @property
    def context_dir(self):
        return self.folder

    def setup(self):
        if not self.voc2010.is_dir():
            raise UserInputError(f"{self.voc2010}: no such folder (the layer reads VOC 2010 from "
                                 "voc_dir/VOC2010)")
        self.label_ids = task_label_ids(self.context_dir)

    def split_file(self):
        return self.voc2010 / "ImageSets" / "Main" / f"{self.split}.txt"

    def image_path(self, name):
        return self.voc2010 / "JPEGImages" / f"{name}.jpg"

    def label_path(self, name):
        return self.context_dir / "trainval" / f"{name}.mat"

    def read_label(self, path):
        expected = "expected PASCAL-Context's trainval/<id>.mat with a variable LabelMap"
        return map_labels(mat_plane(path, "LabelMap", expected), self.label_ids)
