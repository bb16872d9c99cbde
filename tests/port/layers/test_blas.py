"""port/layers/blas: inside caffe_blas(), Convolution and InnerProduct make Caffe's own
cblas_sgemm calls and reproduce Caffe's outputs bit for bit, where torch's order does not."""
import numpy as np
import pytest
import torch

from fcn_port.port.errors import UnsupportedError
from fcn_port.port.layers import blas
from helpers import ORACLE, layer_runs


def _outputs(case, types):
    for entry, layer, bottoms, tops in layer_runs(ORACLE / "zoo" / case, types=types):
        x = torch.as_tensor(np.asarray(bottoms[0]), dtype=torch.float32)
        with torch.no_grad():
            plain = layer(x).numpy()
            with blas.caffe_blas():
                caffe = layer(x).numpy()
        yield entry["name"], plain, caffe, np.asarray(tops[0])


@pytest.mark.parametrize("case,types", [("resnet50", {"Convolution"}),
                                        ("googlenet", {"Convolution", "InnerProduct"}),
                                        ("caffenet", {"Convolution", "InnerProduct"})])
def test_caffes_gemm_calls_give_caffes_bits(case, types):
    rows = list(_outputs(case, types))
    assert len(rows) >= 5
    for name, _, caffe_order, caffe in rows:
        assert np.array_equal(caffe_order, caffe), name  # every layer, every bit
    assert any(not np.array_equal(plain, caffe) for _, plain, _, caffe in rows)  # torch's do not


def test_gradients_are_torchs_and_only_cpu_float32_takes_caffes_calls():
    from helpers import make_layer

    conv = make_layer('name: "c" type: "Convolution" convolution_param { num_output: 4 '
                      'kernel_size: 3 pad: 1 stride: 2 group: 2 }', [(2, 6, 9, 9)])
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    conv(x).square().sum().backward()
    want = [x.grad.clone(), conv.blob(0).grad.clone(), conv.blob(1).grad.clone()]
    x.grad = None
    conv.zero_grad()
    with blas.caffe_blas():
        y = conv(x)
        assert not blas.active(x.double()) and blas.active(x)  # float64 runs torch's own
    y.square().sum().backward()
    for got, ref in zip([x.grad, conv.blob(0).grad, conv.blob(1).grad], want):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_without_numpys_openblas_it_is_refused(monkeypatch):
    monkeypatch.setattr(blas, "_SGEMM", [])
    monkeypatch.setattr(blas.glob, "glob", lambda pattern: [])
    with pytest.raises(UnsupportedError):
        with blas.caffe_blas():
            pass
