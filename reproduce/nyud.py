"""NYUDv2 reader: what the official ``nyud_layers.NYUDSegDataLayer`` gives.

How the official layer computes it (``nyud_layers.py``, ``NYUDSegDataLayer``; facts in
``shared/FCN_FACTS.md`` §5):

* param_str keys ``nyud_dir``, ``split`` and ``tops`` (required), ``randomize`` (default True),
  ``seed`` (default None); no ``mean`` key: the means are fixed float32 arrays, ``mean_bgr``
  (116.190, 97.203, 92.318), ``mean_hha`` (132.431, 94.076, 118.477), ``mean_logd`` (7.844,).
* ``tops`` lists what each of the layer's tops is, in order, from ``color``, ``depth``, ``hha``,
  ``label``; ``setup`` refuses a layer whose number of tops differs. The top *names* are the
  net's: a single-modality net calls its image top ``data`` (``tops: ['color', 'label']`` or
  ``['hha', 'label']``), color-d has ``color, depth, label``, color-hha ``color, hha, label``.
* split ``{nyud_dir}/{split}.txt``; order as the VOC layers (see :mod:`.voc`).
* color ``{nyud_dir}/data/images/img_{id}.png``: float32, RGB->BGR, minus ``mean_bgr``, CHW;
* depth ``data/depth/img_{id}.png`` (16-bit, millimetres): ``np.array(im, dtype=np.float32)``,
  ``np.log``, minus ``mean_logd``, 1 x H x W (float32 throughout);
* hha ``data/hha/img_{id}.png``: float32 minus ``mean_hha``, CHW, **no** channel flip;
* label ``segmentation/img_{id}.mat``, variable ``segmentation``, ``astype(np.uint8)`` then
  ``-= 1``: classes 1-40 become 0-39 and void 0 wraps to 255. 1 x H x W.

trainval. The nets train on split ``trainval`` (795 images) but the repository ships only
``train.txt`` (381), ``val.txt`` (414) and ``test.txt`` (654). When ``trainval.txt`` is missing
and ``train.txt`` and ``val.txt`` are both there, this reader uses the ids of train.txt followed
by those of val.txt (``cat train.txt val.txt``); the official layer fails without the file. The
released models' random order depends on that list's order, which the repository does not
record: train-then-val is our assumption. A real ``trainval.txt`` always wins.

Where we differ, besides :mod:`.voc`'s (replayed order, Python 2's ``randint``, files checked up
front): a depth pixel <= 0 is an error naming the file (the official ``np.log`` gives -inf, with
only a numpy warning, and the net's loss becomes NaN); an unknown kind in ``tops`` is an error at
setup (the official fails at the first ``reshape``); HHA must be 8-bit RGB and depth a
single-channel 16-bit/32-bit/float image (:mod:`fcn_port.models.preprocess`); a label value that
is not a whole number in 0-255 is an error instead of a silent wrap.
"""
from ..models.preprocess import (NYUD_HHA_MEAN, NYUD_LOGD_MEAN, preprocess_depth, preprocess_hha,
                                 preprocess_image)
from ..port.errors import UserInputError
from .voc import SegReader, mat_plane, read_split, to_uint8

KINDS = ("color", "depth", "hha", "label")
FOLDERS = {"color": ("data", "images"), "depth": ("data", "depth"), "hha": ("data", "hha")}


def read_nyud_label(path):
    """``loadmat(path)['segmentation']`` as uint8 minus 1 (void 0 -> 255): (H, W) uint8."""
    expected = "expected NYUD's segmentation/img_<id>.mat with a variable segmentation"
    label = to_uint8(mat_plane(path, "segmentation", expected), path, "segmentation")
    label -= 1
    return label


class NYUDSeg(SegReader):
    """``nyud_layers.NYUDSegDataLayer``: one top per entry of ``kinds`` (param_str ``tops``),
    each 1 x C x H x W float32 (color and hha 3 channels, depth and label 1)."""

    kind = "NYUDv2 (nyud_dir)"
    dataset = "nyud"

    def __init__(self, folder, split, *, kinds=("color", "label"), **kw):
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in KINDS]
        if not kinds or unknown:
            raise UserInputError(f"NYUD tops {list(kinds)}: expected a list of kinds from "
                                 f"{', '.join(KINDS)}" + (f" ({unknown[0]!r} is none)"
                                                          if unknown else ""))
        self.kinds = kinds
        super().__init__(folder, split, **kw)

    @property
    def default_tops(self):
        """Without names from a net, the tops are named after their kinds."""
        return self.kinds

    def split_file(self):
        return self.folder / f"{self.split}.txt"

    def read_ids(self):
        path = self.split_file()
        parts = [self.folder / "train.txt", self.folder / "val.txt"]
        if self.split == "trainval" and not path.exists() and all(p.is_file() for p in parts):
            self.path = f"{parts[0]} + {parts[1].name} (no trainval.txt)"
            return read_split(parts[0]) + read_split(parts[1])
        self.path = str(path)
        return read_split(path)

    def path_of(self, kind, name):
        """The file of ``kind`` for id ``name``."""
        if kind == "label":
            return self.folder / "segmentation" / f"img_{name}.mat"
        return self.folder.joinpath(*FOLDERS[kind]) / f"img_{name}.png"

    def files(self, name):
        return [self.path_of(k, name) for k in self.kinds]

    def load(self, kind, i):
        """The blob of ``kind`` for ``ids[i]`` (1 x C x H x W float32), as the official ``load``."""
        path = self.path_of(kind, self.ids[i])
        if kind == "color":
            return preprocess_image(path, self.mean).numpy()
        if kind == "hha":
            return preprocess_hha(path, NYUD_HHA_MEAN).numpy()
        if kind == "depth":
            return preprocess_depth(path, NYUD_LOGD_MEAN).numpy()
        return read_nyud_label(path)[None, None].astype("float32")

    def arrays(self, i):
        return [self.load(k, i) for k in self.kinds]

    def __repr__(self):
        return super().__repr__()[:-1] + f", tops {list(self.kinds)})"

