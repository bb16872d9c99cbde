"""The official FCN models as configurations: geometry, classes, data, solver values.

One :class:`FCNConfig` describes a member of the family the way the official ``net.py`` files
build it: the base net (VGG16 or AlexNet), the output stride (32, 16 or 8 and "at-once"), one
or more score heads (SIFT Flow has a semantic and a geometric head), one or two towers (NYUD
color-HHA), the input blobs, and the widths. ``widths`` are the conv widths of the five VGG
stages (AlexNet: conv1..conv5) and ``fc`` the width of fc6/fc7, so a reduced-width net or a
fine-tuned net with another class count is the same config with other numbers
(:meth:`FCNConfig.replace`).

``OFFICIAL`` maps every official model name (the directory names of
shelhamer/fcn.berkeleyvision.org) to its config. All numbers are from ../shared/FCN_FACTS.md.
"""
import dataclasses
from dataclasses import dataclass, field

from ..port.errors import UserInputError

VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_DEPTHS = (2, 2, 3, 3, 3)  # convs per stage
ALEXNET_WIDTHS = (96, 256, 384, 384, 256)

# BGR means of the official data layers (voc_layers.py, pascalcontext_layers.py, ...)
MEANS = {
    "voc": (104.00699, 116.66877, 122.67892),
    "pascalcontext": (104.007, 116.669, 122.679),
    "siftflow": (114.578, 115.294, 108.353),
    "nyud-color": (116.190, 97.203, 92.318),
    "nyud-hha": (132.431, 94.076, 118.477),  # HHA is not channel-flipped
    "nyud-logd": (7.844,),                   # depth enters as log(d) - 7.844
}


@dataclass(frozen=True)
class FCNConfig:
    name: str                      # official name, e.g. "voc-fcn8s"
    dataset: str                   # "voc", "pascalcontext", "siftflow", "nyud"
    arch: str = "vgg16"            # "vgg16" or "alexnet"
    stride: int = 32               # 32, 16 or 8
    atonce: bool = False           # FCN-8s at-once: Scale 0.01 / 0.0001 on pool4 / pool3
    heads: tuple = (("", 21),)     # (suffix, classes): SIFT Flow (("_sem", 33), ("_geo", 3))
    towers: tuple = ("",)          # NYUD color-HHA: ("color", "hha"), suffixes on every layer
    inputs: tuple = ("data",)      # blobs the model takes, in order
    means: tuple = (MEANS["voc"],)  # per input, in the order of ``inputs``
    conv1: str = "conv1_1"         # NYUD color-D: "conv1_1_bgrd" on the 4-channel Concat
    in_channels: int = 3
    widths: tuple = VGG16_WIDTHS
    fc: int = 4096
    solver: dict = field(default_factory=dict, compare=False)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @property
    def classes(self):
        """Class count of the (first) head; see ``heads`` for SIFT Flow's second one."""
        return self.heads[0][1]

    @property
    def outputs(self):
        return tuple("score" + sfx for sfx, _ in self.heads)

    def meta(self):
        """What a checkpoint records about the model (JSON-compatible)."""
        return {"model": self.name, "dataset": self.dataset, "arch": self.arch,
                "stride": self.stride, "atonce": self.atonce,
                "classes": self.classes if len(self.heads) == 1 else
                {"score" + s: n for s, n in self.heads},
                "heads": [list(h) for h in self.heads], "towers": list(self.towers),
                "inputs": list(self.inputs), "outputs": list(self.outputs), "mean": list(self.means[0]),
                "means": {k: list(m) for k, m in zip(self.inputs, self.means)},
                "conv1": self.conv1, "in_channels": self.in_channels,
                "widths": list(self.widths), "fc": self.fc}

    @classmethod
    def from_meta(cls, meta):
        base = OFFICIAL.get(meta["model"])
        fields_ = dict(name=meta["model"], dataset=meta["dataset"], arch=meta["arch"],
                       stride=meta["stride"], atonce=meta["atonce"],
                       heads=tuple((s, int(n)) for s, n in meta["heads"]),
                       towers=tuple(meta["towers"]), inputs=tuple(meta["inputs"]),
                       means=tuple(tuple(meta["means"][k]) for k in meta["inputs"]),
                       conv1=meta["conv1"], in_channels=meta["in_channels"],
                       widths=tuple(meta["widths"]), fc=meta["fc"])
        return base.replace(**fields_) if base else cls(**fields_)


def _solver(base_lr, test_iter, max_iter=300000, snapshot=4000, momentum=0.99, iter_size=1,
            splits=("train", "val")):
    return dict(base_lr=base_lr, test_iter=test_iter, max_iter=max_iter, snapshot=snapshot,
                momentum=momentum, iter_size=iter_size, splits=splits)


def _official():
    ctx, sift = MEANS["pascalcontext"], MEANS["siftflow"]
    color, hha, logd = MEANS["nyud-color"], MEANS["nyud-hha"], MEANS["nyud-logd"]
    trainval_test = ("trainval", "test")  # SIFT Flow and NYUD; VOC and Context are train/val
    sift_heads = (("_sem", 33), ("_geo", 3))
    configs = [
        FCNConfig("voc-fcn32s", "voc", solver=_solver(1e-10, 736, 100000)),
        FCNConfig("voc-fcn16s", "voc", stride=16, solver=_solver(1e-12, 736, 100000)),
        FCNConfig("voc-fcn8s", "voc", stride=8, solver=_solver(1e-14, 736, 100000)),
        FCNConfig("voc-fcn8s-atonce", "voc", stride=8, atonce=True,
                  solver=_solver(1e-10, 736, 300000)),
        FCNConfig("voc-fcn-alexnet", "voc", arch="alexnet", conv1="conv1",
                  widths=ALEXNET_WIDTHS,
                  solver=_solver(1e-4, 736, 100000, momentum=0.9, iter_size=20)),
        FCNConfig("pascalcontext-fcn32s", "pascalcontext", heads=(("", 60),), means=(ctx,),
                  solver=_solver(1e-10, 5105)),
        FCNConfig("pascalcontext-fcn16s", "pascalcontext", stride=16, heads=(("", 60),),
                  means=(ctx,), solver=_solver(1e-12, 5105)),
        FCNConfig("pascalcontext-fcn8s", "pascalcontext", stride=8, heads=(("", 60),),
                  means=(ctx,), solver=_solver(1e-14, 5105)),
        FCNConfig("siftflow-fcn32s", "siftflow", heads=sift_heads, means=(sift,),
                  solver=_solver(1e-10, 200, snapshot=None, splits=trainval_test)),
        FCNConfig("siftflow-fcn16s", "siftflow", stride=16, heads=sift_heads, means=(sift,),
                  solver=_solver(1e-12, 200, snapshot=None, splits=trainval_test)),
        FCNConfig("siftflow-fcn8s", "siftflow", stride=8, heads=sift_heads, means=(sift,),
                  solver=_solver(1e-12, 200, snapshot=None, splits=trainval_test)),
        FCNConfig("nyud-fcn32s-color", "nyud", heads=(("", 40),), means=(color,),
                  solver=_solver(1e-10, 654, snapshot=2000, splits=trainval_test)),
        FCNConfig("nyud-fcn32s-hha", "nyud", heads=(("", 40),), means=(hha,),
                  solver=_solver(1e-10, 654, snapshot=2000, splits=trainval_test)),
        FCNConfig("nyud-fcn32s-color-d", "nyud", heads=(("", 40),), inputs=("color", "depth"),
                  means=(color, logd), conv1="conv1_1_bgrd", in_channels=4,
                  solver=_solver(1e-10, 654, snapshot=2000, splits=trainval_test)),
        FCNConfig("nyud-fcn32s-color-hha", "nyud", heads=(("", 40),), towers=("color", "hha"),
                  inputs=("color", "hha"), means=(color, hha),
                  solver=_solver(1e-12, 654, snapshot=2000, splits=trainval_test)),
    ]
    return {c.name: c for c in configs}


OFFICIAL = _official()


def official(name):
    """The :class:`FCNConfig` of official model ``name``; an unknown name is a UserInputError
    listing the known ones."""
    if name not in OFFICIAL:
        raise UserInputError(f"unknown model {name!r}; known: {', '.join(OFFICIAL)}")
    return OFFICIAL[name]
