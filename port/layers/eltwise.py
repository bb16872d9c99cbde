"""Eltwise: element-wise SUM (with coefficients), PROD or MAX of two or more same-shape bottoms.

How Caffe computes it, and where a naive PyTorch version differs:

* Shapes must match exactly; Caffe does not broadcast (``a + b`` in PyTorch would). Its loops
  run over bottom 0's count: where a data-dependent layer (``Filter``) has shrunk bottom 0
  since the net was set up, the real Caffe reads the first that many values of each other
  bottom (the zoo oracle's Filter case shows it), and so does this layer at run time; a
  bottom with fewer values is an error.
* ``SUM``: ``top = sum_i coeff_i * bottom_i``, one ``coeff`` per bottom or none (all 1);
  ``coeff`` with ``PROD`` is an error. Gradient ``coeff_i * top_diff``.
* ``PROD``: ``top = b0 * b1 * ...``. With ``stable_prod_grad`` (the default) Caffe's gradient is
  the product of the *other* bottoms, exactly autograd's. With ``stable_prod_grad: false``
  Caffe divides ``top / bottom_i`` instead, which is NaN where a bottom is 0; that variant is
  not reproduced (the true gradient is used).
* ``MAX``: Caffe keeps one winner index per element and routes the whole gradient to it
  (``torch.max`` over a stack, or ``torch.maximum``, split ties differently). Its tie rule
  comes from the order of comparisons: bottom 0 wins over bottom 1 only if strictly greater,
  so a tie between them goes to **bottom 1**; every later bottom must be strictly greater
  than the running maximum, so among later bottoms the first one wins. NaN never wins a
  comparison. Here the forward is the same chain of ``torch.where`` selections, so autograd
  routes the gradient to the same winner.
"""
import torch

from .base import CaffeLayer
from .registry import register
from ..formats.proto import caffe_pb2

_OP = caffe_pb2.EltwiseParameter


@register("Eltwise")
class Eltwise(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.eltwise_param
        self.op = p.operation
        n = len(bottom_shapes)
        if n < 2:
            self.fail(f"needs at least 2 bottoms, got {n}")
        if len(p.coeff) not in (0, n):
            self.fail(f"takes one coefficient per bottom: {len(p.coeff)} coeff for {n} bottoms")
        if self.op == _OP.PROD and len(p.coeff):
            self.fail("coeff is only allowed with operation SUM, not PROD")
        if self.op not in (_OP.SUM, _OP.PROD, _OP.MAX):
            self.fail(f"unknown operation {self.op}")
        self.coeff = list(p.coeff) or [1.0] * n

    def top_shapes(self, bottoms):
        if len(bottoms) < 2:
            self.fail(f"needs at least 2 bottoms, got {len(bottoms)}")
        if len(bottoms) != len(self.coeff):
            self.fail(f"was set up for {len(self.coeff)} bottoms, got {len(bottoms)}")
        first = tuple(bottoms[0])
        for i, b in enumerate(bottoms[1:], 1):
            if tuple(b) != first:
                self.fail(f"bottom shapes must match: bottom[0] is {first}, bottom[{i}] is "
                          f"{tuple(b)}")
        return [first]

    def forward(self, *bottoms):
        n, shape = bottoms[0].numel(), bottoms[0].shape
        if any(b.shape != shape and b.numel() < n for b in bottoms[1:]):
            self.fail(f"bottom shapes must match: {[tuple(b.shape) for b in bottoms]}")
        return eltwise({_OP.SUM: "SUM", _OP.PROD: "PROD", _OP.MAX: "MAX"}[self.op], bottoms,
                       self.coeff)


def eltwise(op, bottoms, coeff):
    """Caffe's Eltwise forward (module doc): ``op`` "SUM" (with ``coeff``), "PROD" or "MAX"
    with Caffe's tie rule; a bottom larger than bottom 0 (after a Filter) is read as a prefix.
    Torch only: fcn-port codegen copies this function into the files it writes."""
    n, shape = bottoms[0].numel(), bottoms[0].shape
    bottoms = [bottoms[0]] + [b if b.shape == shape else b.reshape(-1)[:n].reshape(shape)
                              for b in bottoms[1:]]
    if op == "SUM":
        top = None
        for c, b in zip(coeff, bottoms):
            term = b if c == 1 else b * c
            top = term if top is None else top + term
        return top
    if op == "PROD":
        top = bottoms[0]
        for b in bottoms[1:]:
            top = top * b
        return top
    # MAX: bottom 0 only if strictly above bottom 1, later bottoms only if strictly above
    top = torch.where(bottoms[0] > bottoms[1], bottoms[0], bottoms[1])
    for b in bottoms[2:]:
        top = torch.where(b > top, b, top)
    return top
