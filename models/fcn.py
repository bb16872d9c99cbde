"""The FCN family as plain ``nn.Module``s, one attribute per Caffe layer.

``FCN(cfg)`` creates its layers from the ``model`` split of :func:`.spec.net_param` (the
official layer list, crop offsets derived by coord_map) with the same Caffe-semantics layer
classes the interpreter uses (:mod:`fcn_port.port.layers`): ceil-mode pooling with Caffe's clip
rule, Crop from the top-left, Deconvolution. The data flow is written out below. So:

* ``model.conv1_1``, ``model.upscore2``, ``model.score_pool4c`` ... are Caffe's layers, and
  ``state_dict`` keys are ``"<layer>.<i>"``, Caffe's blob ``i`` in Caffe's shape: a caffemodel's
  params load by name (``fcn_port.port.formats.caffemodel.Weights.state_dict()`` has the same keys);
* conv1 keeps the 100-pixel padding, and ``score`` crops the upsampled map at the derived
  offset to the input's size, for any input size;
* Dropout follows ``model.train()`` / ``model.eval()`` (Caffe's TRAIN / TEST phase);
* ``param_specs`` lists ``(layer, i, nn.Parameter, ParamSpec)`` in Caffe's param order with the
  official ``param`` entries, as ``CaffeNet.param_specs`` does, so a Caffe solver emulation
  (``fcn_port.solvers.Solver``) trains the model with Caffe's multipliers.

``forward(*inputs)`` takes the blobs of ``cfg.inputs`` (``data``; NYUD ``color, depth`` or
``color, hha``) as float32 N x C x H x W, preprocessed as the official data layers do, and
returns the score map N x classes x H x W (SIFT Flow: ``(score_sem, score_geo)``).
``official_loss(batch)`` is the official train net's objective on a batch of the official data
layer's tops, so ``solvers.forward_backward(model, batch)`` trains it as Caffe would.
"""
import torch
from torch import nn

from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.layers import lookup

from .spec import net_param

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
            layer = lookup(lp)(lp, bottoms, "TRAIN" if lp.type == "Dropout" else "TEST")
            shapes.update(zip(lp.top, layer.top_shapes(bottoms)))
            self.add_module(lp.name, layer)

    @property
    def param_specs(self):
        """``[(layer, i, nn.Parameter, caffe_pb2.ParamSpec)]`` for every learnable blob, in
        Caffe's order (``Net::AppendParam``: layer by layer as the net lists them, blob ``i``
        within a layer). Each spec is the layer's ``param`` entry ``i`` from the official net
        (``spec.net_param``): ``lr_mult 1 decay_mult 1`` for weights, ``lr_mult 2 decay_mult 0``
        for biases, ``lr_mult 0`` for the fixed bilinear Deconvolutions and the at-once Scale
        layers; a blob without an entry (FCN-AlexNet's convolutions, as the official net has
        them) gets Caffe's default ``ParamSpec`` (lr_mult 1, decay_mult 1). No FCN shares
        params by name. Built on each access from the current parameters, so it stays right
        after ``load_state_dict(..., assign=True)``."""
        out = []
        for lp in net_param(self.cfg, "model").layer:
            layer = self._modules.get(lp.name)
            for i in range(getattr(layer, "n_blobs", 0)):
                spec = caffe_pb2.ParamSpec()
                if i < len(lp.param):
                    spec.CopyFrom(lp.param[i])
                out.append((lp.name, i, layer.blob(i), spec))
        return out

    def official_loss(self, batch):
        """The official train net's loss on ``batch`` ({top: array or tensor}: the official data
        layer's tops, e.g. ``data`` and ``label``; SIFT Flow ``sem`` and ``geo``; NYUD ``color``,
        ``depth`` / ``hha``): the forward pass, then each head's ``SoftmaxWithLoss`` as the
        official net declares it (the port's layer; ``ignore_label 255``, summed over the pixels,
        FCN-AlexNet's normalized), added with Caffe's loss weight 1 each. A scalar tensor."""
        if getattr(self, "_loss_lps", None) is None:
            train = self.cfg.solver["splits"][0]
            self._loss_lps = [lp for lp in net_param(self.cfg, train).layer
                              if lp.type == "SoftmaxWithLoss"]
        missing = [b for b in (*self.cfg.inputs, *(lp.bottom[1] for lp in self._loss_lps))
                   if b not in batch]
        if missing:
            raise KeyError(f"{self.cfg.name}: the batch has no {', '.join(missing)} (it needs "
                           f"{', '.join(self.cfg.inputs)} and the labels)")
        device = next(self.parameters()).device
        blob = {k: torch.as_tensor(v, device=device, dtype=torch.float32) for k, v in batch.items()}
        scores = self(*(blob[k] for k in self.cfg.inputs))
        scores = scores if isinstance(scores, tuple) else (scores,)
        total = 0
        for lp, score in zip(self._loss_lps, scores):
            label = blob[lp.bottom[1]]
            layer = lookup(lp)(lp, [tuple(score.shape), tuple(label.shape)], "TRAIN")
            total = total + layer(score, label)
        return total

    def _layers(self, suffix=""):
        return _Suffixed(self._modules, suffix,
                         {"conv1_1": self.cfg.conv1} if not suffix else {})

    def _drop(self, layer, x):
        return layer(x) if self.training else x

    def _vgg(self, x, t=""):
        """VGG16 base of tower ``t`` (NYUD color-HHA: "color", "hha"): {pool3, pool4, drop7}."""
        L = self._layers(t)                                   # x: (N, C, H, W)
        x = L.relu1_1(L.conv1_1(x))                           # conv1_1 pad 100: (N, w1, H+198, .)
        x = L.pool1(L.relu1_2(L.conv1_2(x)))                  # (N, w1, ~(H+198)/2, .)
        x = L.relu2_1(L.conv2_1(x))
        x = L.pool2(L.relu2_2(L.conv2_2(x)))                  # (N, w2, ~(H+198)/4, .)
        x = L.relu3_1(L.conv3_1(x))
        x = L.relu3_2(L.conv3_2(x))
        pool3 = x = L.pool3(L.relu3_3(L.conv3_3(x)))          # (N, w3, ~(H+198)/8, .)
        x = L.relu4_1(L.conv4_1(x))
        x = L.relu4_2(L.conv4_2(x))
        pool4 = x = L.pool4(L.relu4_3(L.conv4_3(x)))          # (N, w4, ~(H+198)/16, .)
        x = L.relu5_1(L.conv5_1(x))
        x = L.relu5_2(L.conv5_2(x))
        x = L.pool5(L.relu5_3(L.conv5_3(x)))                  # (N, w5, ~(H+198)/32, .)
        x = self._drop(L.drop6, L.relu6(L.fc6(x)))            # fc6 7x7: (N, fc, ~(H+6)/32, .)
        drop7 = self._drop(L.drop7, L.relu7(L.fc7(x)))        # (N, fc, ., .)
        return {"pool3": pool3, "pool4": pool4, "drop7": drop7}

    def _alexnet(self, x):
        L = self._layers()
        x = L.norm1(L.pool1(L.relu1(L.conv1(x))))             # conv1 11x11/4 pad 100
        x = L.norm2(L.pool2(L.relu2(L.conv2(x))))             # 2 groups
        x = L.relu3(L.conv3(x))
        x = L.relu4(L.conv4(x))
        x = L.pool5(L.relu5(L.conv5(x)))
        x = self._drop(L.drop6, L.relu6(L.fc6(x)))
        return {"drop7": self._drop(L.drop7, L.relu7(L.fc7(x)))}

    def _head(self, taps, data, h):
        """Score head ``h`` (SIFT Flow: "_sem", "_geo"): score_fr, skips, upsample, crop."""
        c, L = self.cfg, self._layers(h)
        score_fr = L.score_fr(taps["drop7"])                  # (N, K, ~(H+6)/32, .)
        if c.stride == 32:
            return L.score(L.upscore(score_fr), data)         # x32 up, crop 19: (N, K, H, W)
        upscore2 = L.upscore2(score_fr)                       # x2 up: stride 16
        pool4 = L.scale_pool4(taps["pool4"]) if c.atonce else taps["pool4"]  # at-once: x 0.01
        score_pool4c = L.score_pool4c(L.score_pool4(pool4), upscore2)       # crop 5
        fuse_pool4 = L.fuse_pool4(upscore2, score_pool4c)     # sum at stride 16
        if c.stride == 16:
            return L.score(L.upscore16(fuse_pool4), data)     # x16 up, crop 27: (N, K, H, W)
        upscore_pool4 = L.upscore_pool4(fuse_pool4)           # x2 up: stride 8
        pool3 = L.scale_pool3(taps["pool3"]) if c.atonce else taps["pool3"]  # x 0.0001
        score_pool3c = L.score_pool3c(L.score_pool3(pool3), upscore_pool4)  # crop 9
        fuse_pool3 = L.fuse_pool3(upscore_pool4, score_pool3c)  # sum at stride 8
        return L.score(L.upscore8(fuse_pool3), data)          # x8 up, crop 31: (N, K, H, W)

    def forward(self, *inputs):
        c = self.cfg
        if len(inputs) != len(c.inputs):
            raise TypeError(f"{c.name} takes {len(c.inputs)} input(s) {list(c.inputs)}, "
                            f"got {len(inputs)}")
        data = inputs[0]
        if len(c.towers) > 1:                                     # NYUD color-HHA late fusion
            scores = [self._layers(t).score_fr(self._vgg(x, t)["drop7"])
                      for t, x in zip(c.towers, inputs)]
            fused = self.score_fused(*scores)                     # 0.5 * (color + hha)
            return self.score(self.upscore(fused), data)
        if "data" in self._modules:                               # NYUD color-D: Concat
            data = self.data(*inputs)                             # (N, 4, H, W)
        taps = self._alexnet(data) if c.arch == "alexnet" else self._vgg(data)
        scores = tuple(self._head(taps, data, h) for h, _ in c.heads)
        return scores[0] if len(scores) == 1 else scores


class _Suffixed:
    """An FCN's layers by their Caffe names, under a tower or head suffix: ``L.conv1_1`` is
    layer ``conv1_1`` + suffix, as the official net.py names them (``conv1_1color``,
    ``score_fr_sem``), except that a skip's crop takes the suffix before its ``c``
    (``score_pool4_semc``). ``renames`` maps a name to another layer's (NYUD color-D's 4-channel
    ``conv1_1_bgrd`` runs where ``conv1_1`` would)."""

    __slots__ = ("_modules", "_suffix", "_renames")

    def __init__(self, modules, suffix, renames):
        self._modules, self._suffix, self._renames = modules, suffix, renames

    def __getattr__(self, name):
        if self._suffix and name in ("score_pool4c", "score_pool3c"):
            return self._modules[name[:-1] + self._suffix + "c"]
        return self._modules[self._renames.get(name, name) + self._suffix]
