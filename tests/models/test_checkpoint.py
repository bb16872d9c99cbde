"""Caffe weights to checkpoints and back (models/checkpoint.py): detecting the family, convert,
load, and what is refused.
"""
import hashlib

import numpy as np
import pytest
import torch

from fcn_port import models
from fcn_port.models.checkpoint import ConvertError
from fcn_port.port.errors import CaffeFormatError
from fcn_port.port.formats.caffemodel import read_weights
from helpers import ORACLE, blob_error, oracle_cases


SMALL = dict(widths=(2, 4, 4, 6, 6), fc=7)  # even: AlexNet has group 2


def test_detect_reads_family_classes_and_widths():
    cases = {c.name: read_weights(c / "weights.caffemodel").params for c in oracle_cases("fcn")}
    cfg = models.detect(cases["voc-fcn32s-learned-deconv"])
    assert (cfg.name, cfg.classes, cfg.widths, cfg.fc) == ("voc-fcn32s", 8, (4, 8, 16, 32, 32), 64)
    assert models.detect(cases["voc-fcn8s-atonce"]).name == "voc-fcn8s-atonce"
    assert models.detect(cases["voc-fcn16s"]).name == "voc-fcn16s"
    assert models.detect(read_weights(ORACLE / "layers/crop/weights.caffemodel").params) is None
    # the other families, from the layer names of nets built here
    for name in ("voc-fcn-alexnet", "siftflow-fcn8s", "nyud-fcn32s-color-d",
                 "nyud-fcn32s-color-hha", "pascalcontext-fcn16s"):
        with torch.device("meta"):
            sd = models.build(name, **SMALL).state_dict()
        params = {}
        for k, v in sd.items():
            params.setdefault(k.rsplit(".", 1)[0], []).append(np.empty(v.shape, np.float32))
        got = models.detect(params)
        assert (got.name, got.widths, got.fc) == (name, SMALL["widths"], SMALL["fc"])


def test_convert_checkpoint_and_load(tmp_path):
    src = ORACLE / "fcn/voc-fcn8s/weights.caffemodel"
    out, meta = models.convert(str(src), str(tmp_path / "m.pt"))
    assert meta["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert (meta["model"], meta["classes"], meta["mean"]) == \
        ("voc-fcn8s", 21, [104.00699, 116.66877, 122.67892])
    net = models.load(out)
    blobs = np.load(src.parent / "blobs.npz")
    with torch.no_grad():
        score = net(torch.from_numpy(blobs["input/data"]))
    assert blob_error(score.numpy(), blobs["top/score/0"]) <= 1e-5
    assert net.meta["source"] == "weights.caffemodel" and not net.training


def test_convert_mismatch_writes_nothing(tmp_path):
    out = tmp_path / "m.pt"
    with pytest.raises(ConvertError, match="missing blob upscore8.0"):
        models.convert(str(ORACLE / "fcn/voc-fcn16s/weights.caffemodel"), str(out),
                       model="voc-fcn8s")
    with pytest.raises(ConvertError, match="give --prototxt"):
        models.convert(str(ORACLE / "layers/crop/weights.caffemodel"), str(out))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_interpreter_checkpoint_for_other_nets(tmp_path):
    case = ORACLE / "layers/conv_group_dilation"
    out, meta = models.convert(str(case / "weights.caffemodel"), str(tmp_path / "c.pt"),
                               prototxt=str(case / "net.prototxt"))
    assert meta["kind"] == "caffenet"
    net = models.load(out)
    blobs = np.load(case / "blobs.npz")
    feed = {b: torch.from_numpy(blobs[f"input/{b}"]) for b in net.inputs}
    with torch.no_grad():
        tops = net(record=True, **feed)["_tops"]
    for key in (k for k in blobs.files if k.startswith("top/")):
        _, layer, i = key.split("/")
        np.testing.assert_allclose(tops[(layer, int(i))].numpy(), blobs[key], atol=1e-5)


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"a": 1}, bad)
    with pytest.raises(CaffeFormatError, match="not an fcn-port checkpoint"):
        models.load(bad)
    with pytest.raises(CaffeFormatError, match="cannot open"):
        models.load(tmp_path / "missing.pt")
