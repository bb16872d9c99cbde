"""The FCN family as plain ``nn.Module``s, one attribute per Caffe layer.

``FCN(cfg)`` creates its layers from the ``model`` split of :func:`.spec.net_param` (the
official layer list, crop offsets derived by coord_map) with the same Caffe-semantics layer
classes the interpreter uses (:mod:`fcn_port.port.layers`): ceil-mode pooling with Caffe's clip
rule, Crop from the top-left, Deconvolution. The data flow is written out below. So:

* ``model.conv1_1``, ``model.upscore2``, ``model.score_pool4c`` ... are Caffe's layers, and
  ``state_dict`` keys are ``"<layer>.<i>"``, Caffe's blob ``i`` in Caffe's shape: a caffemodel's
  params load by name (``fcn_port.port.caffemodel.Weights.state_dict()`` has the same keys);
* conv1 keeps the 100-pixel padding, and ``score`` crops the upsampled map at the derived
  offset to the input's size, for any input size;
* Dropout follows ``model.train()`` / ``model.eval()`` (Caffe's TRAIN / TEST phase).

``forward(*inputs)`` takes the blobs of ``cfg.inputs`` (``data``; NYUD ``color, depth`` or
``color, hha``) as float32 N x C x H x W, preprocessed as the official data layers do, and
returns the score map N x classes x H x W (SIFT Flow: ``(score_sem, score_geo)``).
"""
from torch import nn

from fcn_port.port.layers import REGISTRY

from .spec import net_param
from .zoo import VGG16_DEPTHS

NOMINAL = 500  # input size used to set the layers up (any size runs afterwards)


class FCN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg, self.meta = cfg, cfg.meta()  # checkpoints add the source file, sha256, ...
        shapes = {}
        for lp in net_param(cfg, "model").layer:
            if lp.type == "Input":
                for top, s in zip(lp.top, lp.input_param.shape):
                    shapes[top] = (1, s.dim[1], NOMINAL, NOMINAL)
                continue
            bottoms = [shapes[b] for b in lp.bottom]
            # Dropout is set up in TRAIN and applied only in training mode (see _drop)
            layer = REGISTRY[lp.type](lp, bottoms, "TRAIN" if lp.type == "Dropout" else "TEST")
            shapes.update(zip(lp.top, layer.top_shapes(bottoms)))
            self.add_module(lp.name, layer)

    def _l(self, name):
        return self._modules[name]

    def _drop(self, name, x):
        return self._l(name)(x) if self.training else x

    def _conv_relu(self, conv, relu, x):
        return self._l(relu)(self._l(conv)(x))

    def _vgg(self, x, t=""):
        """VGG16 base with tower suffix ``t``: {pool3, pool4, drop7}."""
        c = self.cfg
        taps = {}
        for s, depth in enumerate(VGG16_DEPTHS, 1):               # x: (N, C, H, W)
            for i in range(1, depth + 1):
                conv = c.conv1 if (s, i) == (1, 1) and not t else f"conv{s}_{i}{t}"
                x = self._conv_relu(conv, f"relu{s}_{i}{t}", x)   # (N, width_s, ., .)
            x = taps[f"pool{s}"] = self._l(f"pool{s}{t}")(x)      # conv1 pad 100: H+198 / 2^s
        x = self._drop(f"drop6{t}", self._conv_relu(f"fc6{t}", f"relu6{t}", x))  # (N, fc, ., .)
        taps["drop7"] = self._drop(f"drop7{t}", self._conv_relu(f"fc7{t}", f"relu7{t}", x))
        return taps

    def _alexnet(self, x):
        x = self._l("norm1")(self._l("pool1")(self._conv_relu("conv1", "relu1", x)))
        x = self._l("norm2")(self._l("pool2")(self._conv_relu("conv2", "relu2", x)))
        x = self._conv_relu("conv3", "relu3", x)
        x = self._conv_relu("conv4", "relu4", x)
        x = self._l("pool5")(self._conv_relu("conv5", "relu5", x))
        x = self._drop("drop6", self._conv_relu("fc6", "relu6", x))
        return {"drop7": self._drop("drop7", self._conv_relu("fc7", "relu7", x))}

    def _head(self, taps, data, h):
        """Score head with suffix ``h``: score_fr, skips from pool4/pool3, upsample, crop."""
        c, L = self.cfg, self._l
        score = L(f"score_fr{h}")(taps["drop7"])                  # (N, K, H/32 + ., .)
        if c.stride == 32:
            return L(f"score{h}")(L(f"upscore{h}")(score), data)  # (N, K, H, W)
        fuse = L(f"upscore2{h}")(score)                           # (N, K, ~H/16, ~W/16)
        for pool, up in (("pool4", "upscore_pool4"), ("pool3", "upscore8")):
            skip = taps[pool]
            if c.atonce:
                skip = L(f"scale_{pool}{h}")(skip)               # x 0.01 / 0.0001
            skip = L(f"score_{pool}{h}c")(L(f"score_{pool}{h}")(skip), fuse)
            fuse = L(f"fuse_{pool}{h}")(fuse, skip)               # sum at stride 16 / 8
            if c.stride == 16:
                return L(f"score{h}")(L(f"upscore16{h}")(fuse), data)
            fuse = L(f"{up}{h}")(fuse)                            # 2x / 8x up
        return L(f"score{h}")(fuse, data)                         # (N, K, H, W)

    def forward(self, *inputs):
        c = self.cfg
        if len(inputs) != len(c.inputs):
            raise TypeError(f"{c.name} takes {len(c.inputs)} input(s) {list(c.inputs)}, "
                            f"got {len(inputs)}")
        data = inputs[0]
        if len(c.towers) > 1:                                     # NYUD color-HHA late fusion
            scores = [self._l(f"score_fr{t}")(self._vgg(x, t)["drop7"])
                      for t, x in zip(c.towers, inputs)]
            fused = self._l("score_fused")(*scores)               # 0.5 * (color + hha)
            return self._l("score")(self._l("upscore")(fused), data)
        if "data" in self._modules:                               # NYUD color-D: Concat
            data = self._l("data")(*inputs)                       # (N, 4, H, W)
        taps = self._alexnet(data) if c.arch == "alexnet" else self._vgg(data)
        scores = tuple(self._head(taps, data, h) for h, _ in c.heads)
        return scores[0] if len(scores) == 1 else scores
