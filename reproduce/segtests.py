"""score.py's ``seg_tests``: a net run over a whole split, one confusion matrix per score head.

How the official code computes it (``score.py``: ``compute_hist``, ``seg_tests``,
``do_seg_tests``; facts in ``shared/FCN_FACTS.md`` §4 and §1):

* ``seg_tests(solver, save_format, dataset, layer='score', gt='label')`` first makes the test net
  share the train net's weights (``share_with``), then ``compute_hist`` calls ``net.forward()``
  once per id of ``dataset``: the test net's Python data layer walks its split sequentially (a
  split without 'train' is never random), so forward ``k`` serves id ``k``.
* per forward it adds ``fast_hist(gt blob[0, 0].flatten(), score blob[0].argmax(0).flatten(),
  n)`` (``n`` the score blob's channels) into one matrix, and ``net.blobs['loss']`` into a
  running sum; the loss reported is that sum over the number of ids (the mean per-image loss,
  each image's loss summed over its pixels with ``normalize: false``).
* SIFT Flow's ``solve.py`` calls ``seg_tests`` twice, ``layer='score_sem', gt='sem'`` and
  ``layer='score_geo', gt='geo'``: two heads scored separately, each over its own matrix.
* it is called by hand from ``solve.py`` after each ``solver.step(N)``: the solver's own
  ``test_interval`` (999999999) never tests.

Here a *head* is a ``SoftmaxWithLoss`` layer of the test net whose label bottom is a top of the
data layer: its score bottom is the blob scored (``score``; ``score_sem`` / ``score_geo``) and
its label bottom the ground truth (``label``; ``sem`` / ``geo``), which is the pairing
``solve.py`` spells out by hand. The metrics are :mod:`.score`'s (:class:`~.score.Confusion`).

Each head's ``loss`` is score.py's figure: the mean of ``net.blobs['loss']``, which for SIFT
Flow's geometric head is the *semantic* loss (``compute_hist`` adds that blob whatever the
head); ``head_loss`` beside it is the head's own loss layer's (``loss_geo``). Both sums are
float64, as score.py's under the NumPy it ran with (1.x: a NumPy scalar and a Python int
promote as if the int were int64, NEP 50's ``np.result_type(np.int8(1), 1) == np.int64``, so
``0 + float32`` is a float64; under NumPy 2 the same code would sum in float32). The argmax is
``torch.argmax`` over the channels, which like numpy's picks the first maximal class. The data layer is read straight from our readers
(:mod:`.datasets`), sequentially even when the split name holds 'train'.

:func:`solver_evaluator` is the hook ``fcn-port train --eval-every`` receives from ``cli.py``
(solvers/ cannot import reproduce/): the solver's first test net, built once, sharing the train
net's parameters (no copy), fed by the reader of its official data layer.
"""
from collections import namedtuple

import numpy as np
import torch

from ..port.errors import UnsupportedError, UserInputError
from ..port.layers import lookup
from .score import Confusion, METRICS, json_number, names_for, rows

Head = namedtuple("Head", "score label loss layer")  # blob names; ``layer``: the LayerParameter


def heads_of(layers, label_tops):
    """The heads (module doc) of a net's layers: SoftmaxWithLoss layers whose label bottom is in
    ``label_tops``, in net order. ``[Head(score, label, loss top, LayerParameter)]``."""
    return [Head(lp.bottom[0], lp.bottom[1], lp.top[0], lp) for lp in layers
            if lp.type == "SoftmaxWithLoss" and len(lp.bottom) == 2 and lp.bottom[1] in label_tops]


def head_name(head, index):
    """A short name for file suffixes: '' for the first head, else the score blob without
    ``score_`` (``geo``)."""
    if index == 0:
        return ""
    return head.score[len("score_"):] if head.score.startswith("score_") else head.score


class SegTest:
    """One evaluation over a split: a :class:`~.score.Confusion` per head.

    ``add(scores, labels, losses=None)`` counts one image: ``scores`` ``{score blob: (1, C, H, W)
    tensor}``, ``labels`` ``{label top: (1, 1, H, W) array}``, ``losses`` ``{loss top: value}``
    when the net computed them; otherwise each head's own SoftmaxWithLoss layer computes it.
    Returns the argmax labels ``{score blob: (H, W) int64 array}``."""

    def __init__(self, heads):
        if not heads:
            raise UserInputError("no score head: the net has no SoftmaxWithLoss layer on a label "
                                 "top of its data layer")
        self.heads = list(heads)
        self.conf, self._layers, self._head_loss = {}, {}, {}

    def _loss(self, head, score, label):
        layer = self._layers.get(head.loss)
        if layer is None:
            lab_shape = (1, 1) + tuple(score.shape[2:])
            layer = self._layers[head.loss] = lookup(head.layer)(
                head.layer, [tuple(score.shape), lab_shape], "TEST")
        with torch.no_grad():
            out = layer(score, label.to(score.device))
        return float(out[0] if isinstance(out, tuple) else out)

    def add(self, scores, labels, losses=None):
        own = {}
        for h in self.heads:
            gt = torch.as_tensor(np.asarray(labels[h.label]))
            own[h.loss] = float(losses[h.loss]) if losses is not None and h.loss in losses \
                else self._loss(h, scores[h.score], gt)
        official = own.get("loss")  # net.blobs['loss'], what compute_hist adds for every head
        preds = {}
        for h in self.heads:
            score = scores[h.score]
            n = int(score.shape[1])
            conf = self.conf.setdefault(h.score, Confusion(n))
            if conf.n != n:
                raise UserInputError(f"score blob '{h.score}' has {n} channels, earlier {conf.n}")
            pred = score[0].argmax(0).cpu().numpy()
            conf.add(np.asarray(labels[h.label])[0, 0], pred,
                     official if official is not None else own[h.loss])
            sums = self._head_loss.setdefault(h.score, [0.0, 0])
            sums[0], sums[1] = sums[0] + own[h.loss], sums[1] + 1
            preds[h.score] = pred
        return preds

    def results(self, names=None):
        """Per head: ``{"score", "label", "classes", the four metrics, "loss" (score.py's:
        ``net.blobs['loss']``), "head_loss" (the head's own), "images", "pixels", "ignored",
        "per_class", "confusion"}``; fractions, NaN as None.
        ``names``: ``{score blob: class names}`` (default :func:`~.score.names_for`)."""
        out = []
        for h in self.heads:
            conf = self.conf.get(h.score)
            if conf is None:
                continue
            m = conf.metrics()
            cls = names_for(conf.n, (names or {}).get(h.score))
            row = {"score": h.score, "label": h.label, "classes": conf.n}
            row.update({k: json_number(m[k]) for k in METRICS})
            total, count = self._head_loss.get(h.score, (0.0, 0))
            row.update(loss=m["loss"], head_loss=total / count if count else None,
                       images=m["images"], pixels=m["pixels"],
                       ignored=m["ignored"], per_class=rows(m, cls),
                       confusion=conf.hist.tolist())
            out.append(row)
        return out


class SolverEvaluator:
    """The solver's first test net over its data layer's whole split, as ``seg_tests``:
    ``evaluate()`` returns :meth:`SegTest.results`. Built by :func:`solver_evaluator`."""

    def __init__(self, net, reader, heads, device):
        self.net, self.reader, self.heads, self.device = net, reader, heads, device
        self.split = getattr(reader, "split", None)

    def evaluate(self, progress=False):
        from tqdm import tqdm

        test = SegTest(self.heads)
        tops = [h.score for h in self.heads] + [h.loss for h in self.heads]
        n = len(self.reader.ids)
        with torch.no_grad():
            for d in tqdm(range(n), desc="evaluating", unit="img", leave=False,
                          disable=None if progress else True):
                batch = self.reader[d]
                feed = {t: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
                        for t, a in batch.items()}
                out = self.net(tops=tops, **feed)
                test.add(out, batch, {h.loss: out[h.loss] for h in self.heads})
        return test.results()


def solver_evaluator(param, train_net, root, *, split=None, device="cpu", data_root=None):
    """The ``--eval-every`` hook: the solver's first test net (TEST phase, its own state) with
    the train net's parameters shared by layer name, fed sequentially from the reader of its
    official data layer (``split`` overriding the param_str's). Everything is checked here, so
    a missing test net, an unknown data layer or an unreadable split fails before training."""
    from ..port.net import CaffeNet, filter_layers
    from ..solvers.data import source_layers
    from ..solvers.testnet import declared, share_params, test_net_params
    from . import datasets

    if not declared(param):
        raise UserInputError("--eval-every: the solver declares no test net (test_net or "
                             "test_net_param); the evaluation runs the test net, as seg_tests")
    net_param, level, stages = test_net_params(param, root)[0]
    layers = filter_layers(net_param, "TEST", level, stages)
    if data_root is None:
        data_root = datasets._CONFIG["data_root"]
    reader, data_layer = None, None
    for _, kind, _, lp in source_layers(layers):
        if kind == "Python":
            reader = datasets.reader_for(lp, root, data_root, split=split, randomize=False)
            if reader is not None:
                data_layer = lp
                break
    if reader is None:
        found = [f"{lp.python_param.module}.{lp.python_param.layer}"
                 for _, kind, _, lp in source_layers(layers) if kind == "Python"]
        raise UnsupportedError(f"--eval-every: the test net '{net_param.name}' has no official "
                               f"data layer fcn-port can read (found: {found or 'none'})")
    heads = heads_of(layers, set(data_layer.top[1:]))
    SegTest(heads)  # no head: one clear error now
    first = reader[0]
    net = CaffeNet(net_param, "TEST", level=level, stages=stages,
                   input_shapes={t: tuple(a.shape) for t, a in first.items()})
    net.to(device)
    share_params(net, train_net)
    return SolverEvaluator(net, reader, heads, device)
