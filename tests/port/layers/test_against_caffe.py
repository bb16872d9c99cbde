"""Every layer Caffe instantiated in the oracle cases, against real Caffe's tops.

Each layer of the single-layer cases and of the FCN nets (inserted Splits included) is built alone
from the case's (upgraded) LayerParameter with its bottoms' shapes, must hold exactly Caffe's
blob shapes, is loaded with Caffe's blobs and fed the bottoms Caffe fed it; its tops must match
Caffe's to 1e-5 of max(1, max|caffe|) and its bottoms stay untouched. SoftmaxWithLoss's
backward is checked against Caffe's diffs.
"""
import json

import numpy as np
import pytest
import torch

from fcn_port.port.layers import types as layer_types
from helpers import (
    TOL, VISION, blob_error, case_params, case_types, layer_runs, oracle_cases, to_numpy)

SINGLE_LAYER = case_params("layers")
FCN = case_params("fcn")


def _every_layer():
    return [pytest.param(case, entry["name"], id=f"{group}/{case.name}/{entry['name']}")
            for group in ("layers", "fcn") for case in oracle_cases(group)
            for entry in json.loads((case / "case.json").read_text())["layers"]]


EVERY_LAYER = _every_layer()


def run(layer, bottoms):
    out = layer(*bottoms)
    return list(out) if isinstance(out, tuple) else [out]


def test_oracle_cases_found():
    names = {p.values[0].name for p in SINGLE_LAYER}
    assert {"argmax_accuracy", "batchnorm_scale", "dropout_test", "eltwise", "lrn", "neurons",
            "shapes", "softmax_loss_valid", "conv_1x1_nobias", "conv_group_dilation",
            "deconv_group_bilinear", "deconv_stride_pad_bias", "pool_ave_pad",
            "pool_ave_pad_clip", "pool_global_ave", "pool_max_ceil", "pool_max_pad_clip",
            "pool_rect", "crop"} <= names
    assert "voc-fcn8s" in {p.values[0].name for p in FCN}
    seen = {p.id.split("/")[1] for p in EVERY_LAYER}
    assert {p.values[0].name for p in SINGLE_LAYER + FCN} <= seen


@pytest.mark.parametrize("case", SINGLE_LAYER + FCN)
def test_every_layer_type_in_the_oracle_is_registered(case):
    assert case_types(case) <= set(layer_types())
    if case in [p.values[0] for p in SINGLE_LAYER]:
        assert case_types(case) - {"Input", "Split"}  # each single-layer case tests some layer


def test_every_registered_type_but_python_has_an_oracle_layer():
    tested = set().union(*(case_types(p.values[0]) for p in SINGLE_LAYER + FCN))
    assert VISION <= tested
    assert {"ReLU", "Dropout", "Eltwise", "SoftmaxWithLoss", "Accuracy", "ArgMax", "LRN",
            "BatchNorm", "Scale", "InnerProduct", "Concat", "Slice", "Split", "Flatten",
            "Reshape", "Input"} <= tested


@pytest.mark.parametrize("case, name", EVERY_LAYER)
def test_layer_matches_caffe(case, name):
    (entry, layer, bottoms, tops), = [r for r in layer_runs(case) if r[0]["name"] == name]
    before = [b.clone() for b in bottoms]
    if not layer.is_source:
        shapes = layer.top_shapes([tuple(b.shape) for b in bottoms])
        assert [tuple(s) for s in shapes] == [t.shape for t in tops], name
    elif case.parent.name == "layers":  # an FCN case feeds its net other sizes than declared
        assert [tuple(s) for s in layer.top_shapes([])] == [t.shape for t in tops], name
    ours = run(layer, bottoms)
    assert len(ours) == len(tops), name
    for i, (o, t) in enumerate(zip(ours, tops)):
        assert tuple(o.shape) == t.shape, (name, i)
        assert blob_error(to_numpy(o), t) <= TOL, (name, i, blob_error(to_numpy(o), t))
    for b, a in zip(bottoms, before):  # bottoms are never written to
        assert torch.equal(b, a), name


@pytest.mark.parametrize("case", [p for p in SINGLE_LAYER
                                  if p.values[0].name.startswith("softmax_loss")])
def test_softmax_loss_backward_matches_caffe(case):
    blobs = np.load(case / "blobs.npz")
    meta = json.loads((case / "case.json").read_text())
    assert meta["backward"]
    runs = [r for r in layer_runs(case, {"SoftmaxWithLoss"})]
    assert len(runs) == 1
    entry, layer, (data, label), (loss_caffe,) = runs[0]
    data.requires_grad_(True)
    label.requires_grad_(True)
    loss = layer(data, label)
    assert blob_error(to_numpy(loss), loss_caffe) <= TOL
    assert blob_error(to_numpy(loss), meta["losses"]["loss"]) <= TOL
    weight = layer.lp.loss_weight[0] if len(layer.lp.loss_weight) else 1.0
    loss.backward(torch.tensor(weight))
    err = blob_error(to_numpy(data.grad), blobs["diff/data"])
    assert err <= TOL, err
    assert label.grad is None or not label.grad.any()
    assert not np.any(blobs["diff/label"])
