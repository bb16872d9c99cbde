"""Official FCN net definitions as NetParameters, built the way the official ``net.py`` does.

:func:`net_param` gives, for any :class:`~.zoo.FCNConfig`, the layer list of one split:

* ``train`` / ``val`` (``trainval`` / ``test`` for SIFT Flow and NYUD): the official Python
  data layer with its ``param_str`` exactly as the official prototxts have it (Python 2 dict
  order, and the official relative data paths, including voc-fcn16s' ``../../data``), and the
  SoftmaxWithLoss layers (``normalize: false`` except FCN-AlexNet);
* ``deploy``: an ``Input`` layer (1 x C x 500 x 500, as the official voc-fcn8s deploy.prototxt)
  and no Dropout or loss;
* ``model``: ``deploy`` plus the Dropout layers: what :mod:`.fcn` instantiates.

Crop offsets are not typed in: each ``crop(blob, like)`` asks :mod:`fcn_port.port.coord_map`
for the offset of the net built so far, as pycaffe's ``coord_map.crop`` does. Layer settings
carry the same fields as the official prototxts (``stride: 1`` in conv_relu, ``pad: 0`` in the
score layers), so the generated text matches them field for field.
"""
from fcn_port.port.coord_map import crop_offset
from fcn_port.port.errors import UserInputError
from fcn_port.port.formats.proto import caffe_pb2

from .zoo import MEANS, VGG16_DEPTHS

LEARN = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
FROZEN = [dict(lr_mult=0)]


def _set(msg, **fields):
    """Set protobuf fields from Python values: dicts fill sub-messages, lists extend repeated."""
    for k, v in fields.items():
        if isinstance(v, dict):
            _set(getattr(msg, k), **v)
        elif isinstance(v, (list, tuple)):
            target = getattr(msg, k)
            for item in v:
                if isinstance(item, dict):
                    _set(target.add(), **item)
                else:
                    target.append(item)
        else:
            setattr(msg, k, v)
    return msg


class NetBuilder:
    """A tiny NetSpec: ``add`` appends a layer and returns its top's name."""

    def __init__(self):
        self.net = caffe_pb2.NetParameter()

    def add(self, type_, name, bottoms, top=None, tops=None, **fields):
        lp = self.net.layer.add(name=name, type=type_)
        lp.bottom.extend(bottoms)
        lp.top.extend(tops or [top or name])
        _set(lp, **fields)
        return lp.top[0]

    def conv(self, name, bottom, nout, ks, pad, stride=None, group=None, param=LEARN):
        cp = dict(num_output=nout, pad=[pad], kernel_size=[ks])
        if stride is not None:
            cp["stride"] = [stride]
        if group is not None:
            cp["group"] = group
        return self.add("Convolution", name, [bottom], param=param or [], convolution_param=cp)

    def relu(self, name, blob):
        return self.add("ReLU", name, [blob], top=blob)

    def pool(self, name, bottom, ks, stride):
        return self.add("Pooling", name, [bottom], pooling_param=dict(
            pool=caffe_pb2.PoolingParameter.MAX, kernel_size=ks, stride=stride))

    def drop(self, name, blob):
        return self.add("Dropout", name, [blob], top=blob, dropout_param=dict(dropout_ratio=0.5))

    def upscore(self, name, bottom, nout, ks, stride):
        return self.add("Deconvolution", name, [bottom], param=FROZEN, convolution_param=dict(
            num_output=nout, bias_term=False, kernel_size=[ks], stride=[stride]))

    def crop(self, name, blob, like):
        axis, offsets = crop_offset(self.net.layer, blob, like)
        return self.add("Crop", name, [blob, like], crop_param=dict(axis=axis, offset=offsets))


def _data_layer(b, cfg, split):
    """The official Python data layer of ``cfg``'s dataset, or an Input layer for deploy."""
    if split in ("deploy", "model"):
        shapes = [dict(dim=[1, 3 if i != "depth" else 1, 500, 500]) for i in cfg.inputs]
        if cfg.in_channels == 4 and len(cfg.inputs) == 1:
            shapes[0]["dim"][1] = 4
        b.add("Input", "input", [], tops=list(cfg.inputs), input_param=dict(shape=shapes))
        return
    if cfg.dataset == "voc":
        up = "../../" if cfg.name == "voc-fcn16s" else "../"  # as the official files have it
        mean = f"'mean': {MEANS['voc']}"  # the tuple's repr, as the official param_str has it
        if split == "train":  # the official val split is seg11valid
            layer, params = "SBDDSegDataLayer", \
                f"{{'sbdd_dir': '{up}data/sbdd/dataset', 'seed': 1337, 'split': 'train', {mean}}}"
        else:
            layer, params = "VOCSegDataLayer", (f"{{'voc_dir': '{up}data/pascal/VOC2011', "
                                                f"'seed': 1337, 'split': 'seg11valid', {mean}}}")
        module, tops = "voc_layers", ["data", "label"]
    elif cfg.dataset == "pascalcontext":
        module, layer, tops = "pascalcontext_layers", "PASCALContextSegDataLayer", ["data", "label"]
        params = (f"{{'context_dir': '../../data/pascal-context', 'seed': 1337, "
                  f"'split': '{split}', 'voc_dir': '../../data/pascal'}}")
    elif cfg.dataset == "siftflow":
        module, layer, tops = "siftflow_layers", "SIFTFlowSegDataLayer", ["data", "sem", "geo"]
        params = f"{{'siftflow_dir': '../data/sift-flow', 'seed': 1337, 'split': '{split}'}}"
    else:  # nyud: single-modality nets call their one image top "data"
        module, layer = "nyud_layers", "NYUDSegDataLayer"
        kinds = list(cfg.inputs) if len(cfg.inputs) > 1 else \
            ["hha" if cfg.name.endswith("-hha") else "color"]
        tops = (list(cfg.inputs) if len(cfg.inputs) > 1 else ["data"]) + ["label"]
        listed = ", ".join(f"'{t}'" for t in kinds + ["label"])
        params = (f"{{'tops': [{listed}], 'seed': 1337, 'nyud_dir': '../data/nyud', "
                  f"'split': '{split}'}}")
    b.add("Python", tops[0], [], tops=tops,  # pycaffe's NetSpec names it after its first top
          python_param=dict(module=module, layer=layer, param_str=params))


def _vgg(b, cfg, x, t, split):
    """The VGG16 base net up to drop7 on blob ``x``; layer names get the tower suffix ``t``."""
    taps = {}
    for s, (depth, width) in enumerate(zip(VGG16_DEPTHS, cfg.widths), 1):
        for i in range(1, depth + 1):
            name = cfg.conv1 if (s, i) == (1, 1) and not t else f"conv{s}_{i}{t}"
            x = b.relu(f"relu{s}_{i}{t}", b.conv(name, x, width, 3, 100 if s == i == 1 else 1, 1))
        x = taps[f"pool{s}"] = b.pool(f"pool{s}{t}", x, 2, 2)
    return _fc(b, cfg, x, t, 7, split, taps, stride=1)


def _alexnet(b, cfg, x, split):
    w = cfg.widths
    x = b.relu("relu1", b.conv("conv1", x, w[0], 11, 100, stride=4, group=1, param=None))
    x = b.add("LRN", "norm1", [b.pool("pool1", x, 3, 2)],
              lrn_param=dict(local_size=5, alpha=1e-4, beta=0.75))
    x = b.relu("relu2", b.conv("conv2", x, w[1], 5, 2, stride=1, group=2, param=None))
    x = b.add("LRN", "norm2", [b.pool("pool2", x, 3, 2)],
              lrn_param=dict(local_size=5, alpha=1e-4, beta=0.75))
    x = b.relu("relu3", b.conv("conv3", x, w[2], 3, 1, stride=1, group=1, param=None))
    x = b.relu("relu4", b.conv("conv4", x, w[3], 3, 1, stride=1, group=2, param=None))
    x = b.relu("relu5", b.conv("conv5", x, w[4], 3, 1, stride=1, group=2, param=None))
    return _fc(b, cfg, b.pool("pool5", x, 3, 2), "", 6, split, {}, stride=1, group=1, param=None)


def _fc(b, cfg, x, t, ks, split, taps, **kw):
    for n, k in (("6", ks), ("7", 1)):
        x = b.relu(f"relu{n}{t}", b.conv(f"fc{n}{t}", x, cfg.fc, k, 0, **kw))
        if split != "deploy":
            x = b.drop(f"drop{n}{t}", x)
    taps["drop7"] = x
    return taps


def _head(b, cfg, taps, data, h, n):
    """Score head ``h`` (suffix) with ``n`` classes: score_fr, the skips, upsampling, crop."""
    score = b.conv(f"score_fr{h}", taps["drop7"], n, 1, 0)
    if cfg.stride == 32:
        k = 63 if cfg.arch == "alexnet" else 64
        return b.crop(f"score{h}", b.upscore(f"upscore{h}", score, n, k, 32), data)
    fuse = b.upscore(f"upscore2{h}", score, n, 4, 2)
    for pool, up, scale in (("pool4", "upscore_pool4", 0.01), ("pool3", "upscore8", 0.0001)):
        skip = taps[pool]
        if cfg.atonce:
            skip = b.add("Scale", f"scale_{pool}{h}", [skip], param=FROZEN, scale_param=dict(
                filler=dict(type="constant", value=scale)))
        skip = b.crop(f"score_{pool}{h}c", b.conv(f"score_{pool}{h}", skip, n, 1, 0), fuse)
        fuse = b.add("Eltwise", f"fuse_{pool}{h}", [fuse, skip],
                     eltwise_param=dict(operation=caffe_pb2.EltwiseParameter.SUM))
        if cfg.stride == 16:
            return b.crop(f"score{h}", b.upscore(f"upscore16{h}", fuse, n, 32, 16), data)
        fuse = b.upscore(f"{up}{h}", fuse, n, 4 if pool == "pool4" else 16,
                         2 if pool == "pool4" else 8)
    return b.crop(f"score{h}", fuse, data)


def _loss(b, cfg, h, score):
    label = {"": "label", "_sem": "sem", "_geo": "geo"}[h]
    b.add("SoftmaxWithLoss", "loss_geo" if h == "_geo" else "loss", [score, label],
          loss_param=dict(normalize=cfg.arch == "alexnet", ignore_label=255))


def net_param(cfg, split="deploy"):
    """The NetParameter of ``cfg`` for ``split`` (see the module docstring)."""
    valid = tuple(cfg.solver.get("splits", ("train", "val"))) + ("deploy", "model")
    if split not in valid:
        raise UserInputError(f"{cfg.name}: split must be one of {', '.join(valid)}, not {split!r}")
    b = NetBuilder()
    _data_layer(b, cfg, split)
    data = cfg.inputs[0] if split in ("deploy", "model") or len(cfg.inputs) > 1 else "data"
    if cfg.in_channels == 4 and len(cfg.inputs) == 2:  # NYUD color-D: early fusion
        data = b.add("Concat", "data", list(cfg.inputs))
    with_loss = split not in ("deploy", "model")
    if len(cfg.towers) > 1:  # NYUD color-HHA: late fusion of two full towers
        scores = []
        for t, x in zip(cfg.towers, cfg.inputs):
            taps = _vgg(b, cfg, x, t, split)
            scores.append(b.conv(f"score_fr{t}", taps["drop7"], cfg.classes, 1, 0))
        fused = b.add("Eltwise", "score_fused", scores, eltwise_param=dict(
            operation=caffe_pb2.EltwiseParameter.SUM, coeff=[0.5] * len(scores)))
        score = b.crop("score", b.upscore("upscore", fused, cfg.classes, 64, 32), data)
        if with_loss:
            _loss(b, cfg, "", score)
        return b.net
    taps = _alexnet(b, cfg, data, split) if cfg.arch == "alexnet" else \
        _vgg(b, cfg, data, "", split)
    for h, n in cfg.heads:
        score = _head(b, cfg, taps, data, h, n)
        if with_loss:
            _loss(b, cfg, h, score)
    return b.net


def solver_param(cfg):
    """The official solver.prototxt values of ``cfg`` (FCN_FACTS section 1)."""
    s = cfg.solver
    train, test = s["splits"]
    sp = _set(caffe_pb2.SolverParameter(), train_net=f"{train}.prototxt",
              test_net=[f"{test}.prototxt"], test_iter=[s["test_iter"]],
              test_interval=999999999, display=20, average_loss=20, lr_policy="fixed",
              base_lr=s["base_lr"], momentum=s["momentum"], iter_size=s["iter_size"],
              max_iter=s["max_iter"], weight_decay=0.0005, test_initialization=False)
    if s["snapshot"]:
        sp.snapshot, sp.snapshot_prefix = s["snapshot"], "snapshot/train"
    return sp
