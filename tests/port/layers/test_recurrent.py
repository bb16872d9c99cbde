"""LSTM and RNN: Caffe's unrolled nets (lstm_layer.cpp / rnn_layer.cpp FillUnrolledNet and
LSTMUnit's Forward_cpu) transcribed in numpy, for what the oracle case (zoo/lstm_rnn: plain
LSTM and RNN with sequence restarts) does not cover: a static input and exposed hidden state."""
import numpy as np
import pytest
import torch

from fcn_port.port.layers import LayerError
from helpers import make_layer


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _lstm(x, cont, xs, h, c, w):
    w_xc, b_c, w_xs, w_hc = w
    hid, out = h.shape[-1], []
    xw = x.reshape(x.shape[0], x.shape[1], -1) @ w_xc.T + b_c      # x_transform, axis 2
    for t in range(x.shape[0]):
        hc = h * cont[t][:, None]                                     # h_conted (Scale)
        a = hc @ w_hc.T + xw[t] + xs @ w_xs.T                         # gate_input (Eltwise SUM)
        for n in range(x.shape[1]):                                   # LSTMUnit, loop for loop
            for d in range(hid):
                i, o = sig(a[n, d]), sig(a[n, 2 * hid + d])
                f = 0.0 if cont[t, n] == 0 else cont[t, n] * sig(a[n, hid + d])
                g = np.tanh(a[n, 3 * hid + d])
                c[n, d] = f * c[n, d] + i * g
                h[n, d] = o * np.tanh(c[n, d])
        out.append(h.copy())
    return np.stack(out), h, c


def test_lstm_with_static_input_and_exposed_state():
    rng = np.random.default_rng(0)
    t, n, d, ds, hid = 3, 2, 4, 3, 5
    layer = make_layer('name: "l" type: "LSTM" recurrent_param { num_output: 5 expose_hidden: '
                       'true }', [(t, n, d), (t, n), (n, ds), (1, n, hid), (1, n, hid)])
    assert [tuple(layer.blob(i).shape) for i in range(4)] == [(20, d), (20,), (20, ds), (20, hid)]
    with torch.no_grad():
        for i in range(4):
            layer.blob(i).copy_(torch.from_numpy(rng.standard_normal(layer.blob(i).shape) * 0.5))
    x, xs = rng.standard_normal((t, n, d)), rng.standard_normal((n, ds))
    cont = np.array([[1, 0], [1, 1], [0, 1]], float)
    h0, c0 = rng.standard_normal((1, n, hid)), rng.standard_normal((1, n, hid))
    top, h_t, c_t = (v.detach().double().numpy() for v in layer(
        *(torch.tensor(v, dtype=torch.float32) for v in (x, cont, xs, h0, c0))))
    w = [layer.blob(i).detach().double().numpy() for i in range(4)]
    want, h, c = _lstm(x, cont, xs, h0[0].copy(), c0[0].copy(), w)
    np.testing.assert_allclose(top, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_t[0], h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_t[0], c, rtol=1e-5, atol=1e-5)


def test_rnn_blobs_output_layer_and_state_cut():
    layer = make_layer('name: "r" type: "RNN" recurrent_param { num_output: 2 }',
                       [(2, 1, 3), (2, 1)])
    assert [tuple(layer.blob(i).shape) for i in range(5)] == [(2, 3), (2,), (2, 2), (2, 2), (2,)]
    with torch.no_grad():
        for i in range(5):
            layer.blob(i).fill_(0.1 * (i + 1))
    x = torch.ones(2, 1, 3)
    y = layer(x, torch.tensor([[1.0], [0.0]]))  # cont 0 at t=1: both steps see h~ = 0
    h = np.tanh(0.1 * 3 + 0.2)
    o = np.tanh(0.4 * 2 * h + 0.5)
    np.testing.assert_allclose(y.detach().numpy().reshape(-1), [o] * 4, rtol=1e-6)


def test_recurrent_shapes_are_checked():
    with pytest.raises(LayerError):
        make_layer('name: "l" type: "LSTM" recurrent_param { num_output: 2 }', [(3, 2, 4), (3, 1)])
    with pytest.raises(LayerError):
        make_layer('name: "l" type: "LSTM" recurrent_param { num_output: 2 expose_hidden: true }',
                   [(3, 2, 4), (3, 2)])


def test_lstm_unit_alone_is_the_cell_of_lstm():
    rng = np.random.default_rng(3)
    c0, a = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 12))
    cont = np.array([[1.0, 0.0]])
    unit = make_layer('name: "u" type: "LSTMUnit" top: "c" top: "h"', [c0.shape, a.shape,
                                                                        cont.shape])
    c, h = (v.double().numpy() for v in unit(*(torch.tensor(v, dtype=torch.float32)
                                               for v in (c0, a, cont))))
    for n in range(2):  # lstm_unit_layer.cpp Forward_cpu, loop for loop
        for d in range(3):
            i, o = sig(a[0, n, d]), sig(a[0, n, 6 + d])
            f = 0.0 if cont[0, n] == 0 else cont[0, n] * sig(a[0, n, 3 + d])
            want_c = f * c0[0, n, d] + i * np.tanh(a[0, n, 9 + d])
            assert c[0, n, d] == pytest.approx(want_c, rel=1e-5, abs=1e-6)
            assert h[0, n, d] == pytest.approx(o * np.tanh(want_c), rel=1e-5, abs=1e-6)
