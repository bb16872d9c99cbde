"""Input, DummyData and Silence.
"""

import torch
from helpers import layer_fails, make_layer


def test_data_layers():
    inp = make_layer('name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 1 dim: 2 } }',
                     [])
    assert inp.is_source and inp.top_shapes([]) == [(1, 2), (1, 2)]
    a, b = torch.zeros(1, 2), torch.ones(3)
    assert inp(a, b) == (a, b)
    layer_fails("once per top blob", make_layer, 'name: "in" type: "Input" top: "a" top: "b" top: "c" '
                'input_param { shape { dim: 1 } shape { dim: 2 } }', [])
    dummy = make_layer('name: "d" type: "DummyData" top: "x" top: "y" dummy_data_param { '
                       'data_filler { type: "constant" value: 3 } num: 2 channels: 1 height: 4 '
                       'width: 4 num: 1 }', [])
    x, y = dummy()
    assert x.shape == (2, 1, 4, 4) and y.shape == (1, 1, 4, 4) and torch.all(x == 3)
    gauss = make_layer('name: "d" type: "DummyData" top: "x" dummy_data_param { data_filler { '
                       'type: "gaussian" std: 2 } shape { dim: 100 dim: 100 } }', [])
    g = gauss()
    assert g.shape == (100, 100) and abs(g.std().item() - 2) < 0.1
    assert not torch.equal(g, gauss())
    silence = make_layer('name: "s" type: "Silence" bottom: "x"', [(2,)])
    assert silence.top_shapes([(2,)]) == [] and silence(torch.zeros(2)) == ()
