"""SIFT Flow reader: what the official ``siftflow_layers.SIFTFlowSegDataLayer`` gives.

How the official layer computes it (``siftflow_layers.py``, ``SIFTFlowSegDataLayer``; facts in
``shared/FCN_FACTS.md`` §5):

* param_str keys ``siftflow_dir`` and ``split`` (required), ``randomize`` (default True) and
  ``seed`` (default None); there is no ``mean`` key: ``setup`` fixes the mean at
  ``np.array((114.578, 115.294, 108.353), dtype=np.float32)`` (B, G, R). ``setup`` refuses a
  layer without exactly **three tops**: data, semantic label, geometric label (the nets call
  them ``data``, ``sem``, ``geo``).
* split ``{siftflow_dir}/{split}.txt`` (``read().splitlines()``); order as the VOC layers
  (``random.randint`` with replacement when ``'train'`` is in the split, else sequential; see
  :mod:`.voc`).
* image ``{siftflow_dir}/Images/spatial_envelope_256x256_static_8outdoorcategories/{id}.jpg``:
  float32, RGB->BGR, minus the float32 mean, CHW (1 x 3 x 256 x 256).
* semantic label ``SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/{id}.mat``,
  variable ``S``; geometric ``GeoLabels/<same>/{id}.mat``, variable ``S``, where first
  ``label[label == -1] = 0`` (void is -1 there). Both then ``astype(np.uint8)`` and
  ``label -= 1``: the classes 1-33 (semantic) / 1-3 (geometric) become 0-32 / 0-2 and void 0
  wraps to 255, the nets' ``ignore_label``. Each label is 1 x H x W.

The two unannotated images (highway_bost181, street_urb506; data/sift-flow/classes.txt) are
left out by the **split files**, not by code: the repository's ``trainval.txt`` (2,486 ids) and
``test.txt`` (200) together list 2,686 of the dataset's 2,688 images, all but those two. The
layer itself reads whatever its split lists, and so does this reader: with the official split
files the two are never read; a split that names them gets their (void) labels.

Where we differ: the same as :mod:`.voc` (``reader[d]`` replays forward pass ``d`` from the
seed, Python 2's ``randint`` by default, every id's three files checked up front, non-RGB images
converted), and a label value that is not a whole number in 0-255 after the -1 -> 0 step is an
error naming the file (the official cast would wrap it silently). The three tops must agree in
H x W (the official layer would fail later, in the loss).
"""
from .voc import SegReader, mat_plane, to_uint8

SUBDIR = "spatial_envelope_256x256_static_8outdoorcategories"
LABEL_KINDS = {"semantic": "SemanticLabels", "geometric": "GeoLabels"}


def read_siftflow_label(path, kind="semantic"):
    """``loadmat(path)['S']`` as the official ``load_label``: geometric -1 -> 0, then uint8 and
    ``-= 1`` (void 0 -> 255). (H, W) uint8."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"label kind {kind!r}: expected semantic or geometric")
    expected = f"expected SIFT Flow's {LABEL_KINDS[kind]}/<id>.mat with a variable S"
    label = mat_plane(path, "S", expected).copy()
    if kind == "geometric":
        label[label == -1] = 0
    label = to_uint8(label, path, "S")
    label -= 1
    return label


class SIFTFlowSeg(SegReader):
    """``siftflow_layers.SIFTFlowSegDataLayer``: three tops, the image and the semantic and
    geometric labels (1 x 1 x H x W each, 255 void)."""

    kind = "SIFT Flow (siftflow_dir)"
    dataset = "siftflow"
    default_tops = ("data", "sem", "geo")

    def split_file(self):
        return self.folder / f"{self.split}.txt"

    def image_path(self, name):
        return self.folder / "Images" / SUBDIR / f"{name}.jpg"

    def label_path(self, name, kind="semantic"):
        return self.folder / LABEL_KINDS[kind] / SUBDIR / f"{name}.mat"

    def read_label(self, path, kind="semantic"):
        return read_siftflow_label(path, kind)

    def files(self, name):
        return [self.image_path(name), self.label_path(name, "semantic"),
                self.label_path(name, "geometric")]

    def label(self, i, kind="semantic"):
        """``kind`` label of ``ids[i]``: (1, 1, H, W) float32, 255 void."""
        lab = self.read_label(self.label_path(self.ids[i], kind), kind)
        return lab[None, None].astype("float32")

    def arrays(self, i):
        return [self.image(i), self.label(i, "semantic"), self.label(i, "geometric")]

