"""Issue 11, what a new user hit (models side): each finding reproduced as a user met it.

A converted legacy (V1) checkpoint that must load; expand-score -> convert -> infer; nets with no
classes; --depth for a model without that input; infer's --max-size, progress and memory refusal.
"""
import numpy as np
import torch

from fcn_port import models
from fcn_port.cli import main
from fcn_port.port.formats.caffemodel import read_weights
from fcn_port.port.formats.text import read_net
from fcn_port.port.net import CaffeNet
from helpers import ORACLE

V1 = ORACLE / "formats" / "v1_legacy"


def test_converted_legacy_v1_checkpoint_loads_and_runs_as_the_interpreter(tmp_path):
    out = tmp_path / "v1.pt"
    assert main(["convert", str(V1 / "weights.caffemodel"), "--prototxt",
                 str(V1 / "net.prototxt"), "-o", str(out)]) == 0
    net = models.load(out)  # failed: "cannot copy param 1 of layer 'conv1': (1, 1, 1, 5) ..."
    interp = CaffeNet(read_net(V1 / "net.prototxt")[0], "TEST")
    interp.load_caffemodel(V1 / "weights.caffemodel", strict=True)
    x = torch.rand(1, 3, 19, 23) * 255 - 120
    with torch.no_grad():
        assert torch.equal(net(data=x)["prob"], interp(data=x)["prob"])
    # the bias was stored 4-D (1, 1, 1, 5) in the V1 file; the checkpoint holds the net's (5,)
    assert read_weights(V1 / "weights.caffemodel").params["conv1"][1].shape == (1, 1, 1, 5)
    sd = torch.load(out, weights_only=True)["state_dict"]
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "conv1.0": (5, 3, 3, 3), "conv1.1": (5,), "fc6.0": (6, 60495), "fc6.1": (6,)}
    assert main(["export", str(out), "-o", str(tmp_path / "back.caffemodel")]) == 0
    back = read_weights(tmp_path / "back.caffemodel").params
    assert np.array_equal(back["conv1"][1].reshape(-1), sd["conv1.1"].numpy())


def test_checkpoint_written_with_legacy_dims_still_loads(tmp_path):
    """Checkpoints the earlier convert wrote keep the V1 file's (1, 1, 1, 5) dims: they load."""
    out = tmp_path / "v1.pt"
    assert main(["convert", str(V1 / "weights.caffemodel"), "--prototxt",
                 str(V1 / "net.prototxt"), "-o", str(out)]) == 0
    ck = torch.load(out, weights_only=True)
    raw = read_weights(V1 / "weights.caffemodel").params
    ck["state_dict"] = {f"{k}.{i}": torch.from_numpy(a.copy()) for k, blobs in raw.items()
                        for i, a in enumerate(blobs)}
    assert ck["state_dict"]["fc6.1"].shape == (1, 1, 1, 6)
    torch.save(ck, out)
    net = models.load(out)
    assert torch.equal(net.state_dict()["layers.fc6.1"], torch.from_numpy(raw["fc6"][1].ravel()))
