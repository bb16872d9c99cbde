"""More statements codegen writes (see :mod:`.statements`): the losses, the recurrent layers,
and the SSD fork's layers.
"""
import numpy as np

from .statements import WRITERS, _axis, _f, writes

__all__ = ["WRITERS"]  # with this module's writers registered: every one

_NORMS = {0: "FULL", 1: "VALID", 2: "BATCH_SIZE", 3: "NONE"}


@writes("SoftmaxWithLoss")
def _softmax_loss(s):
    axis = _axis(s, s.lp.softmax_param.axis)
    loss = (f'softmax_loss({s.b[0]}, {s.b[1]}, {axis}, {s.layer.ignore_label}, '
            f'"{_NORMS[s.layer.normalization]}")')
    return loss if len(s.lp.top) == 1 else f"{loss}, torch.softmax({s.b[0]}, {axis})"


@writes("EuclideanLoss")
def _euclidean(s):
    return f"euclidean_loss({s.b[0]}, {s.b[1]})"


@writes("SigmoidCrossEntropyLoss")
def _sigmoid_ce(s):
    k = s.layer
    return f'sigmoid_ce_loss({s.b[0]}, {s.b[1]}, {k.ignore_label}, "{_NORMS[k.normalization]}")'


@writes("HingeLoss")
def _hinge(s):
    return f"hinge_loss({s.b[0]}, {s.b[1]}, {s.lp.hinge_loss_param.norm == 2})"


@writes("MultinomialLogisticLoss")
def _multinomial(s):
    return f"multinomial_loss({s.b[0]}, {s.b[1]})"


@writes("InfogainLoss")
def _infogain(s):
    k = s.layer
    if len(s.b) == 2:
        s.refuse("writes InfogainLoss with H as its third bottom (not read from a file)")
    return (f"infogain_loss({s.b[0]}, {s.b[1]}, {s.b[2]}, "
            f"{_axis(s, s.lp.infogain_loss_param.axis)}, {k.ignore_label}, "
            f'"{_NORMS[k.normalization]}")')


@writes("ContrastiveLoss")
def _contrastive(s):
    p = s.lp.contrastive_loss_param
    return f"contrastive_loss({', '.join(s.b)}, {_f(p.margin)}, {p.legacy_version})"


@writes("LSTM", "RNN")
def _recurrent(s):
    k = s.layer
    static = s.b[2] if k.static else "None"
    states = ", ".join(s.b[3 if k.static else 2:])
    fn = s.lp.type.lower()
    return f"{fn}({s.b[0]}, {s.b[1]}, {static}, [{states}], {s.attr}, {k.expose})"


@writes("LSTMUnit")
def _lstm_unit(s):
    return f"lstm_unit({s.b[0]}, {s.b[1]}, {s.b[2]}.unsqueeze(-1).to({s.b[1]}.dtype))"


@writes("Normalize")
def _normalize(s):
    p = s.lp.norm_param
    return (f"normalize({s.b[0]}, {s.attr}[0], {p.across_spatial}, {p.channel_shared}, "
            f"{_f(np.float32(p.eps))})")


@writes("Permute")
def _permute(s):
    return f"{s.b[0]}.permute({tuple(s.layer.order(len(s.shapes[0])))})"


@writes("PriorBox")
def _prior_box(s):
    return f"prior_box({s.b[0]}, {s.b[1]}, **{s.layer.geometry()!r})"


@writes("DetectionOutput")
def _detection_output(s):
    args = (_f(a) if isinstance(a, float) else repr(a) for a in s.layer.args)  # the layer's
    return f"detection_output({', '.join(s.b)}, {', '.join(args)})"
