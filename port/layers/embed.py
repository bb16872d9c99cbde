"""Caffe's ``Embed`` layer (``embed_layer.cpp``): a lookup table.

How Caffe computes it
---------------------
The bottom holds indices as floats (any shape); each is ``static_cast<int>`` and must lie in
``[0, input_dim)``. Blob 0 is the table, ``input_dim x num_output``; blob 1 the bias
(``num_output``, when ``bias_term``, default true). The top has the bottom's shape plus a last
axis of ``num_output``: ``top[n] = W[index[n]] + b``. Backward adds each top row's gradient into
its table row (rows used twice get both) and sums them all for the bias; the indices get none
(Caffe refuses to backpropagate to them).

Where PyTorch differs
---------------------
``nn.Embedding`` has the same table layout and gradient and takes integer indices; here the
float indices are truncated first, as Caffe does, and the bias is a separate blob.
"""
import torch
import torch.nn.functional as F

from .base import CaffeLayer
from .registry import register


@register("Embed")
class Embed(CaffeLayer):
    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.embed_param
        if p.num_output <= 0 or p.input_dim <= 0:
            self.fail(f"num_output ({p.num_output}) and input_dim ({p.input_dim}) must be > 0")
        self.bias_term = p.bias_term
        self.add_blob((p.input_dim, p.num_output), p.weight_filler)
        if self.bias_term:
            self.add_blob((p.num_output,), p.bias_filler)

    def top_shapes(self, bottoms):
        if len(bottoms) != 1:
            self.fail(f"takes exactly 1 bottom, got {len(bottoms)}")
        return [tuple(bottoms[0]) + (self.lp.embed_param.num_output,)]

    def forward(self, index):
        idx = index.detach().to(torch.int64)
        n = self.lp.embed_param.input_dim
        if bool(((idx < 0) | (idx >= n)).any()):
            self.fail(f"index {int(idx[(idx < 0) | (idx >= n)][0])} outside [0, {n})")
        y = F.embedding(idx, self.blob(0))
        return y + self.blob(1) if self.bias_term else y
