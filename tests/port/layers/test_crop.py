"""Crop: Caffe's offset checks, a top-left view with no gradient to the reference, and a
pool -> deconv -> crop net that traces and exports at sizes other than the traced one.
"""
import pytest
import torch
from helpers import layer_setup_fails, make_layer


def test_crop_offset_too_large():
    msg = layer_setup_fails('name: "crop" type: "Crop" crop_param { axis: 2 offset: 7 }',
                            [(1, 4, 11, 12), (1, 2, 5, 6)], "'crop'", "Crop", "axis 2", "offset 7",
                            "reference size 5", "bottom size 11")
    assert "out of bounds" in msg
    layer_setup_fails('name: "crop" type: "Crop" crop_param { axis: 1 offset: 1 offset: 2 }',
                      [(1, 4, 11, 12), (1, 2, 5, 6)], "'crop'", "2 offsets", "axis 1")


def test_crop_is_top_left_view_without_gradient_to_reference():
    layer = make_layer('name: "c" type: "Crop" crop_param { axis: 1 offset: 1 offset: 2 offset: 4 }',
                       [(1, 4, 11, 12), (1, 2, 5, 6)])
    x = torch.arange(4 * 11 * 12, dtype=torch.float32).reshape(1, 4, 11, 12).requires_grad_()
    ref = torch.zeros(1, 2, 5, 6, requires_grad=True)
    y = layer(x, ref)
    assert torch.equal(y, x[:, 1:3, 2:7, 4:10])
    y.sum().backward()
    assert x.grad.sum() == 2 * 5 * 6 and ref.grad is None


class _PoolCrop(torch.nn.Module):  # pool (3/2, ceil) -> deconv x2 -> crop back to the input
    def __init__(self):
        super().__init__()
        self.pool = make_layer('name: "p" type: "Pooling" pooling_param { kernel_size: 3 stride: 2 }',
                               [(1, 2, 17, 23)])
        self.up = make_layer('name: "u" type: "Deconvolution" convolution_param { num_output: 2 '
                             'kernel_size: 4 stride: 2 bias_term: false }', [(1, 2, 8, 11)])
        self.up.blob(0).data.normal_()
        self.crop = make_layer('name: "c" type: "Crop" crop_param { offset: 1 }',
                               [(1, 2, 18, 24), (1, 2, 17, 23)])

    def forward(self, x):
        return self.crop(self.up(self.pool(x)), x)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # Caffe's shape checks, traced
def test_pooling_crop_net_traces_with_free_size():
    net, dim = _PoolCrop().eval(), torch.export.Dim
    h, w = dim("h2", min=2), dim("w2", min=2)  # max_pool2d's own ceil rule guards on parity
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.randn(1, 2, 17, 23))
        exported = torch.export.export(net, (torch.randn(1, 2, 17, 23),), dynamic_shapes=(
            {2: 2 * h - 1, 3: 2 * w - 1},)).module()
        for hw in [(17, 23), (30, 9), (4, 41), (31, 5)]:  # sizes other than the traced one
            x = torch.randn(1, 2, *hw)
            want = net(x)
            assert want.shape == x.shape and torch.equal(traced(x), want)
            if hw[0] % 2 and hw[1] % 2:
                assert torch.equal(exported(x), want)
