"""Caffe's ``LSTM``, ``RNN`` and ``LSTMUnit`` layers (``recurrent_layer.cpp``,
``lstm_layer.cpp``, ``lstm_unit_layer.cpp``, ``rnn_layer.cpp``).

How Caffe computes them
-----------------------
Bottoms: ``x`` (T x N x ..., time first), ``cont`` (T x N: 0 where a sequence starts, so the
state from before is forgotten), an optional static input ``x_static`` (N x ..., the same at
every step) and, with ``recurrent_param.expose_hidden``, the initial state (LSTM: ``h_0``,
``c_0``; RNN: ``h_0``; each 1 x N x num_output; otherwise zeros). Tops: the output (T x N x
num_output) and, with ``expose_hidden``, the final state (``h_T`` and LSTM's ``c_T``).

Caffe unrolls the layer into a small net of InnerProduct, Scale, Eltwise and the cell, whose
parameters are the layer's blobs, in this order (H = num_output)::

    LSTM   W_xc (4H x D), b_c (4H), [W_xc_x_static (4H x D_static)], W_hc (4H x H)
    RNN    W_xh (H x D), b_h (H), [W_xh_x_static (H x D_static)], W_hh (H x H),
           W_ho (H x H), b_o (H)

and every step ``t`` computes, with ``h~ = cont_t * h_{t-1}`` (the state is cut where a
sequence starts):

    LSTM   a = W_hc h~ + (W_xc x_t + b_c) [+ W_xc_x_static x_static]   (Eltwise SUM, that order)
           i, f, o, g = sigmoid(a[0:H]), sigmoid(a[H:2H]), sigmoid(a[2H:3H]), tanh(a[3H:4H])
           c_t = cont_t * f * c_{t-1} + i * g,    h_t = o * tanh(c_t)       (LSTMUnit)
    RNN    h_t = tanh(W_hh h~ + (W_xh x_t + b_h) [+ W_xh_x_static x_static])
           o_t = tanh(W_ho h_t + b_o)

The input transform runs once over all T x N rows (InnerProduct with ``axis: 2``). ``cont``
gets no gradient (Caffe refuses to backpropagate to it); everything else is the gradient of
these formulas through time, which is what Caffe's unrolled backward computes.

Where PyTorch differs
---------------------
``nn.LSTM`` orders its gates i, f, g, o (Caffe: i, f, o, g), keeps two biases, has no
``cont`` to cut sequences inside a batch and puts the batch first or second by option;
``nn.RNN`` has no output layer ``W_ho``. So the cell is written out here, step by step.
"""
import math

import torch

from .base import CaffeLayer
from .registry import register


class _Recurrent(CaffeLayer):
    states = ()  # the recurrent state names, in Caffe's bottom/top order

    def __init__(self, lp, bottom_shapes, phase="TEST"):
        super().__init__(lp, bottom_shapes, phase)
        p = lp.recurrent_param
        self.hidden, self.expose = p.num_output, p.expose_hidden
        if self.hidden <= 0:
            self.fail(f"num_output must be > 0, got {self.hidden}")
        shapes = [tuple(s) for s in bottom_shapes]
        extra = len(self.states) if self.expose else 0
        if len(shapes) not in (2 + extra, 3 + extra):
            self.fail(f"takes x, cont, optionally x_static{', and ' if extra else ''}"
                      f"{', '.join(n + '_0' for n in self.states) if extra else ''}: "
                      f"got {len(shapes)} bottoms")
        self.static = len(shapes) == 3 + extra
        self.top_shapes(shapes)
        d = math.prod(shapes[0][2:])
        d_static = math.prod(shapes[2][1:]) if self.static else 0
        self.make_blobs(p, d, d_static)

    def top_shapes(self, bottoms):
        x, cont = tuple(bottoms[0]), tuple(bottoms[1])
        if len(x) < 2 or cont != x[:2]:
            self.fail(f"x must be T x N x ... and cont T x N: got x {x}, cont {cont}")
        t, n = x[:2]
        first = 3 if self.static else 2
        for name, shape in zip(self.states, bottoms[first:]):
            if tuple(shape) != (1, n, self.hidden):
                self.fail(f"{name}_0 must be 1 x {n} x {self.hidden}, got {tuple(shape)}")
        if self.static and bottoms[2][0] != n:
            self.fail(f"x_static {tuple(bottoms[2])} must have N = {n} rows")
        return [(t, n, self.hidden)] + [(1, n, self.hidden)] * (len(self.states) * self.expose)

    def forward(self, x, cont, *rest):
        t, n = x.shape[:2]
        cont = cont.detach().to(x.dtype).reshape(t, n, 1)
        static = rest[0].reshape(n, -1) if self.static else None
        state = list(rest[1 if self.static else 0:]) or \
            [x.new_zeros(1, n, self.hidden) for _ in self.states]
        state = [s.reshape(n, self.hidden) for s in state]
        xw, xs = self.input_transform(x.reshape(t, n, -1), static)
        outputs = []
        for step in range(t):
            out, state = self.step((xw[step], xs), cont[step], state)
            outputs.append(out)
        top = torch.stack(outputs)
        if not self.expose:
            return top
        return (top,) + tuple(s.reshape(1, n, self.hidden) for s in state)

    def input_transform(self, x3, static):
        w, b = self.blob(0), self.blob(1)
        xw = torch.nn.functional.linear(x3, w, b)
        if static is not None:  # added after the recurrent term and x's, as Caffe's Eltwise
            return xw, torch.nn.functional.linear(static, self.blob(2))
        return xw, None


def _sum(recurrent, xw, static):
    """Caffe's Eltwise SUM of the step's terms, in its bottom order."""
    a = recurrent + xw
    return a if static is None else a + static


@register("LSTM")
class LSTM(_Recurrent):
    states = ("h", "c")

    def make_blobs(self, p, d, d_static):
        h4 = 4 * self.hidden
        self.add_blob((h4, d), p.weight_filler)
        self.add_blob((h4,), p.bias_filler)
        if d_static:
            self.add_blob((h4, d_static), p.weight_filler)
        self.add_blob((h4, self.hidden), p.weight_filler)

    def step(self, xw_t, cont_t, state):
        (xw, static), (h, c) = xw_t, state
        a = _sum(torch.nn.functional.linear(cont_t * h, self.blob(self.n_blobs - 1)), xw, static)
        c, h = lstm_unit(c, a, cont_t)
        return h, [h, c]


def lstm_unit(c_prev, a, cont):
    """``LSTMUnitLayer::Forward_cpu``: gate pre-activations ``a`` (..., 4H) in Caffe's order
    i, f, o, g; ``c = cont * f * c_prev + i * g``, ``h = o * tanh(c)``. Returns (c, h).
    Torch only: fcn-port codegen copies this function into the files it writes."""
    hid = a.shape[-1] // 4
    i, f, o = (torch.sigmoid(a[..., k * hid:(k + 1) * hid]) for k in range(3))
    g = torch.tanh(a[..., 3 * hid:])
    c = cont * f * c_prev + i * g
    return c, o * torch.tanh(c)


@register("LSTMUnit")
class LSTMUnit(CaffeLayer):
    """The cell alone (``lstm_unit_layer.cpp``): bottoms c_prev (1 x N x H), the gate inputs
    (1 x N x 4H) and cont (1 x N); tops c and h (1 x N x H). cont gets no gradient."""

    def top_shapes(self, bottoms):
        if len(bottoms) != 3:
            self.fail(f"takes 3 bottoms (c_prev, gate inputs, cont), got {len(bottoms)}")
        c, x, cont = (tuple(b) for b in bottoms)
        if len(c) != 3 or x != c[:2] + (4 * c[2],) or cont != c[:2]:
            self.fail(f"needs c_prev 1 x N x H, gates 1 x N x 4H and cont 1 x N; got {c}, {x}, "
                      f"{cont}")
        return [c, c]

    def forward(self, c_prev, a, cont):
        return lstm_unit(c_prev, a, cont.detach().unsqueeze(-1).to(a.dtype))


@register("RNN")
class RNN(_Recurrent):
    states = ("h",)

    def make_blobs(self, p, d, d_static):
        hid = self.hidden
        self.add_blob((hid, d), p.weight_filler)
        self.add_blob((hid,), p.bias_filler)
        if d_static:
            self.add_blob((hid, d_static), p.weight_filler)
        for shape, filler in (((hid, hid), p.weight_filler), ((hid, hid), p.weight_filler),
                              ((hid,), p.bias_filler)):
            self.add_blob(shape, filler)

    def step(self, xw_t, cont_t, state):
        (xw, static), (h,) = xw_t, state
        k = 3 if self.static else 2  # W_hh, then W_ho and b_o
        w_hh, w_ho, b_o = self.blob(k), self.blob(k + 1), self.blob(k + 2)
        h = torch.tanh(_sum(torch.nn.functional.linear(cont_t * h, w_hh), xw, static))
        return torch.tanh(torch.nn.functional.linear(h, w_ho, b_o)), [h]
