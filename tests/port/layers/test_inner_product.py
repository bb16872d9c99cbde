"""InnerProduct: blob sizes from the axis, fillers, the product, and the size check.
"""
import torch
from helpers import layer_fails, make_layer


def test_inner_product_size_and_axis():
    layer = make_layer('name: "fc" type: "InnerProduct" inner_product_param { num_output: 3 axis: 2 '
                       'weight_filler { type: "gaussian" } bias_filler { type: "constant" value: 0.5 } }',
                       [(2, 4, 5, 6)])
    assert layer.blob(0).shape == (3, 30) and torch.all(layer.blob(1) == 0.5)
    assert layer.top_shapes([(2, 4, 5, 6)]) == [(2, 4, 3)]
    x = torch.randn(2, 4, 5, 6)
    want = x.reshape(8, 30) @ layer.blob(0).T + layer.blob(1)
    assert torch.allclose(layer(x), want.reshape(2, 4, 3), atol=1e-5)
    msg = layer_fails(r"bottom \(2, 4, 5, 7\) has 35 values from axis 2, the layer was set up for 30",
                      layer.top_shapes, [(2, 4, 5, 7)])
    assert "'fc' (InnerProduct)" in msg
