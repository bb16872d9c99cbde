"""The hand-written FCN models train from the same readers as ``fcn-port train``: a reduced
voc-fcn32s (``models.build``) stepped by Caffe's solver (``solvers.Solver`` with the official
solver values and ``FCN.param_specs``) on an SBD reader, each step drawing the image the
official SBDDSegDataLayer would serve (the order transcribed in test_voc.official_order)."""
import numpy as np
import torch

from fcn_port import models, solvers
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.layers import lookup
from fcn_port.reproduce.voc import SBDSeg
from vocdata import MEAN, make_sbd, official_order


def test_hand_written_fcn_trains_from_the_sbd_reader(tmp_path, one_thread):
    make_sbd(tmp_path / "dataset", n=5)
    reader = SBDSeg(tmp_path / "dataset", "train", mean=MEAN, seed=1337)
    torch.manual_seed(0)
    model = models.build("voc-fcn32s", classes=21, widths=(2, 4, 4, 8, 8), fc=8)
    with torch.no_grad():  # random weights (Caffe's default fill is 0: no gradient would flow)
        for p in model.parameters():
            p.normal_(0, 0.3)
    solver = solvers.Solver(models.solver_param(model.cfg), model.param_specs)
    loss_param = caffe_pb2.LayerParameter(name="loss", type="SoftmaxWithLoss",
                                          bottom=["score", "label"], top=["loss"])
    loss_param.loss_param.ignore_label = 255
    loss_param.loss_param.normalize = False
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    served, losses = [], []
    for d in range(4):
        batch = reader[d]
        served.append(next(k for k in range(5) if np.array_equal(reader.image(k), batch["data"])))
        x, y = torch.from_numpy(batch["data"]), torch.from_numpy(batch["label"])
        loss_layer = lookup(loss_param)(loss_param, [(1, 21, *x.shape[2:]), tuple(y.shape)],
                                        "TRAIN")

        def forward_backward():
            loss = loss_layer(model(x), y)  # summed over the pixels, as the official nets
            loss.backward()
            return float(loss.detach())
        losses += solver.step(forward_backward)
    assert served == official_order(5, "train", 1337, 4)
    assert len(losses) == 4 and all(np.isfinite(losses)) and solver.iter == 4
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "score_fr.0" in changed and "conv1_1.0" in changed
    assert "upscore.0" not in changed  # lr_mult 0: the fixed bilinear upsampling


def test_forward_backward_trains_a_hand_written_fcn_on_reader_batches(tmp_path, one_thread):
    """``solvers.forward_backward(model, batch)`` on an FCN: the official train net's loss
    (``FCN.official_loss``), equal to SoftmaxWithLoss built by hand with the official
    loss_param (FCN_FACTS: normalize false, ignore_label 255); the same update as stepping the
    hand-built loss."""
    make_sbd(tmp_path / "dataset", n=3)
    reader = SBDSeg(tmp_path / "dataset", "train", mean=MEAN, seed=1337)
    pair = []
    for _ in range(2):
        torch.manual_seed(0)
        model = models.build("voc-fcn32s", classes=21, widths=(2, 4, 4, 8, 8), fc=8)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.3)
        pair.append((model, solvers.Solver(models.solver_param(model.cfg), model.param_specs)))
    loss_param = caffe_pb2.LayerParameter(name="loss", type="SoftmaxWithLoss",
                                          bottom=["score", "label"], top=["loss"])
    loss_param.loss_param.ignore_label = 255
    loss_param.loss_param.normalize = False
    (ours, s1), (by_hand, s2) = pair
    for d in range(3):
        batch = reader[d]
        x, y = torch.from_numpy(batch["data"]), torch.from_numpy(batch["label"])
        layer = lookup(loss_param)(loss_param, [(1, 21, *x.shape[2:]), tuple(y.shape)], "TRAIN")

        def hand():
            loss = layer(by_hand(x), y)
            loss.backward()
            return float(loss.detach())
        assert s1.step(solvers.forward_backward(ours, batch)) == s2.step(hand)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(),
                                                  by_hand.state_dict().values()))
    assert solvers.data.register_source_factory  # the README names solvers.data
