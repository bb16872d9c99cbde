"""What ``fcn-port download`` can fetch: the official weights, the VGG16 base and the VOC data.

The official code names its released weights in one file per model folder, ``caffemodel-url``
(a single URL on ``dl.caffe.berkeleyvision.org``; ``nyud-fcn32s-color-d`` has no such file, so
there is no released early-fusion net). The base classifier is not in the repository at all:
``ilsvrc-nets/README.md`` links the VGG16 gist of the Oxford group, whose caffemodel is an old
V1-format file. The data come from the dataset sites that ``data/pascal/README.md`` names
(it links VOC2012's page, but every VOC net's ``param_str`` reads ``../data/pascal/VOC2011``
and the split ``seg11valid``, whose file ships in the repository as
``data/pascal/seg11valid.txt``; SBD is ``../data/sbdd/dataset``).

Where we differ: the official code has no downloader; people ran ``wget`` and unpacked by
hand. The table below records for each file what it must be (a caffemodel of which model, a tar
with which top folder, a text of which lines) so a download is checked before it is kept. No
checksum is published by the authors; ``ref`` holds checksums that other projects record
(torchvision for the VOC2011 tar and SBD, a COCO captioning set-up script for VGG16) and
is checked when present. ``extract`` says where ``--extract`` puts an archive's inner folder so
that the result is the official ``data/`` layout (``--data-root DIR`` of ``fcn-port train``).
"""
import dataclasses

DL = "http://dl.caffe.berkeleyvision.org/"


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str            # what the user types
    url: str | None      # None: nothing published
    kind: str            # 'caffemodel', 'prototxt', 'tar' or 'text'
    what: str
    model: str | None = None      # caffemodels and prototxts: official FCN name or 'vgg16'
    approx: str = ""              # size as people quote it (display only)
    size: int | None = None       # exact bytes, where known (checked)
    ref: tuple | None = None      # (algorithm, hex digest, who records it)
    extract: tuple | None = None  # (folder inside the archive, target under DIR)
    lines: int | None = None      # text files: number of ids
    note: str = ""

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[-1] if self.url else None


_FCN = [  # (official name, caffemodel-url file name, approximate size)
    ("voc-fcn32s", "fcn32s-heavy-pascal", "~520 MB"),
    ("voc-fcn16s", "fcn16s-heavy-pascal", "~515 MB"),
    ("voc-fcn8s", "fcn8s-heavy-pascal", "~515 MB"),
    ("voc-fcn8s-atonce", "fcn8s-atonce-pascal", "~515 MB"),
    ("voc-fcn-alexnet", "fcn-alexnet-pascal", "~230 MB"),
    ("pascalcontext-fcn32s", "pascalcontext-fcn32s-heavy", "~540 MB"),
    ("pascalcontext-fcn16s", "pascalcontext-fcn16s-heavy", "~515 MB"),
    ("pascalcontext-fcn8s", "pascalcontext-fcn8s-heavy", "~515 MB"),
    ("siftflow-fcn32s", "siftflow-fcn32s-heavy", "~520 MB"),
    ("siftflow-fcn16s", "siftflow-fcn16s-heavy", "~515 MB"),
    ("siftflow-fcn8s", "siftflow-fcn8s-heavy", "~515 MB"),
    ("nyud-fcn32s-color", "nyud-fcn32s-color-heavy", "~530 MB"),
    ("nyud-fcn32s-hha", "nyud-fcn32s-hha-heavy", "~530 MB"),
    ("nyud-fcn32s-color-hha", "nyud-fcn32s-color-hha-heavy", "~1.1 GB"),
]

VOC_SEG11VALID_LINES = 736   # data/pascal/seg11valid.txt (= the VOC nets' test_iter)


def _entries():
    out = [Entry(name, DL + f"{stem}.caffemodel", "caffemodel", f"official {name} weights",
                 model=name, approx=approx) for name, stem, approx in _FCN]
    out.insert(13, Entry(
        "nyud-fcn32s-color-d", None, "caffemodel", "official nyud-fcn32s-color-d weights",
        model="nyud-fcn32s-color-d",
        note="the official repository has no caffemodel-url for this model (no released "
             "weights); make its starting point with: fcn-port surgery color-d "
             "VGG_ILSVRC_16_layers.caffemodel --net nyud-fcn32s-color-d -o color-d.caffemodel"))
    out += [
        Entry("vgg16", "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
              "VGG_ILSVRC_16_layers.caffemodel", "caffemodel",
              "VGG16 ILSVRC-2014 classifier (V1 format), the base every VGG FCN starts from",
              model="vgg16", approx="528 MB"),
        Entry("vgg16-deploy", "https://gist.githubusercontent.com/ksimonyan/"
              "211839e770f7b538e2d8/raw/0067c9b32f60362c74f4c445a080beed06b07eb3/"
              "VGG_ILSVRC_16_layers_deploy.prototxt", "prototxt",
              "VGG16's deploy prototxt (the gist ilsvrc-nets/README.md links)",
              model="vgg16", approx="6 KB"),
        Entry("voc2011", "http://host.robots.ox.ac.uk/pascal/VOC/voc2011/"
              "VOCtrainval_25-May-2011.tar", "tar",
              "PASCAL VOC 2011 train+val (the VOC nets' val data: VOC2011 segval)",
              approx="1.7 GB",
              ref=("md5", "6c3384ef61512963050cb5d687e5bf1e", "torchvision"),
              extract=("TrainVal/VOCdevkit/VOC2011", "pascal/VOC2011")),
        Entry("sbd", "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
              "semantic_contours/benchmark.tgz", "tar",
              "Semantic Boundaries Dataset (the VOC nets' training data, SBD train)",
              approx="1.4 GB",
              ref=("md5", "82b4d87ceb2ed10f6038a1cba92111cb", "torchvision and other loaders"),
              extract=("benchmark_RELEASE/dataset", "sbdd/dataset")),
        Entry("seg11valid", "https://raw.githubusercontent.com/shelhamer/fcn.berkeleyvision.org/"
              "master/data/pascal/seg11valid.txt", "text",
              "the official val split: VOC2011 segval minus SBD train (736 ids)",
              approx="9 KB", lines=VOC_SEG11VALID_LINES,
              extract=(None, "pascal/VOC2011/ImageSets/Segmentation/seg11valid.txt")),
    ]
    return {e.name: e for e in out}


CATALOG = _entries()


def lookup(name):
    """The entry called ``name``; UserInputError naming the choices otherwise."""
    from fcn_port.port.errors import UserInputError

    if name not in CATALOG:
        raise UserInputError(f"download: no entry {name!r}; choose from "
                             f"{', '.join(CATALOG)} (fcn-port download --list)")
    entry = CATALOG[name]
    if entry.url is None:
        raise UserInputError(f"download {name}: nothing to download: {entry.note}")
    return entry


def ordered(names):
    """``names`` without repeats, in catalog order (voc2011 before seg11valid, which goes
    into VOC2011's folder when extracted)."""
    keys = list(CATALOG)
    return sorted(dict.fromkeys(names), key=keys.index)


def format_list():
    rows = [("NAME", "KIND", "SIZE", "WHAT")]
    for e in CATALOG.values():
        what = e.what if e.url else f"{e.what}: none published"
        rows.append((e.name, e.kind, e.approx or "-", what))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(w[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.append("")
    lines.append("URLs: fcn-port download --list --json; a mirror: --url URL (one NAME) or "
                 "FCN_PORT_MIRROR=http://host:port/")
    return "\n".join(lines)
