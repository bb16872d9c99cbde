"""The official model zoo (models/zoo.py): every official net in the interpreter, and the torch
hub entry points.
"""
import pytest
import torch

from fcn_port import models
from helpers import ORACLE


SMALL = dict(widths=(2, 4, 4, 6, 6), fc=7)  # even: AlexNet has group 2


@pytest.mark.parametrize("name", list(models.OFFICIAL))
def test_every_official_net_instantiates_in_the_interpreter(name):
    """Each split the `net` verb writes sets up in CaffeNet (shapes checked by Caffe's rules),
    and its score blobs come out at the input's size."""
    from fcn_port.port.net import CaffeNet

    cfg = models.OFFICIAL[name].replace(**SMALL)
    train, test = cfg.solver["splits"]
    size = (1, 1, 61, 83)
    for split, phase in ((train, "TRAIN"), (test, "TEST"), ("deploy", "TEST")):
        shapes = {b: (1, 1 if b in ("depth", "label", "sem", "geo") else 3, 61, 83)
                  for b in ("data", "color", "hha", "depth", "label", "sem", "geo")}
        with torch.device("meta"):
            net = CaffeNet(models.net_param(cfg, split), phase, input_shapes=shapes)
        for out, (_, n) in zip(cfg.outputs, cfg.heads):
            assert net.blob_shapes[out] == (1, n) + size[2:], (split, out)
        losses = [lp.name for lp in net.layer_params if lp.type == "SoftmaxWithLoss"]
        assert losses == ([] if split == "deploy" else ["loss", "loss_geo"][:len(cfg.heads)])


def test_torch_hub_entry_points_match_the_zoo():
    import subprocess
    import sys

    root = ORACLE.parents[2]
    hub = subprocess.run([sys.executable, "-c", f"""
import torch, sys
net = torch.hub.load({str(root)!r}, "voc_fcn8s", source="local", trust_repo=True,
                     weights={str(ORACLE / 'fcn/voc-fcn8s/weights.caffemodel')!r})
import runpy
names = [n for n, v in runpy.run_path({str(root / "hubconf.py")!r}).items() if "fcn" in n and not n.startswith("_")]
print(type(net).__name__, net.cfg.widths, len(names))
"""], capture_output=True, text=True, cwd="/")
    assert hub.returncode == 0, hub.stderr
    assert hub.stdout.split() == ["FCN", "(4,", "8,", "16,", "32,", "32)", str(len(models.OFFICIAL))]
