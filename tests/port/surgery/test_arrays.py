"""Weight surgery on arrays (port/surgery/arrays.py): the bilinear kernel, interp, score
expansion, the color-depth conv1, and which layers solve.py upsamples.

Checked against ../shared/FCN_FACTS.md section 3 (the official surgery.py algorithms).
"""
import numpy as np
import pytest
import torch

from fcn_port.port import surgery as S
from helpers import upsample_filt


def test_bilinear_kernel_matches_the_official_filter():
    assert S.bilinear_kernel(4)[0].tolist() == pytest.approx([0.0625, 0.1875, 0.1875, 0.0625])
    assert np.outer(*[[0.25, 0.75, 0.75, 0.25]] * 2).tolist() == S.bilinear_kernel(4).tolist()
    for size in (1, 2, 3, 4, 16, 32, 63, 64):
        k = S.bilinear_kernel(size).numpy()
        assert np.array_equal(k, upsample_filt(size)), size
        assert k.sum() == pytest.approx(((size + 1) // 2) ** 2, rel=1e-6)
    k63 = S.bilinear_kernel(63).numpy()  # AlexNet: factor 32, centre 31, peak 1.0
    assert k63[31, 31] == 1.0 and k63.max() == 1.0 and k63[0, 31] == pytest.approx(1 / 32)


def test_interp_sets_only_the_diagonal():
    w = np.full((3, 3, 4, 4), 7.0, np.float32)
    params = {"upscore": [w], "score_fr": [np.ones((3, 2, 1, 1), np.float32)]}
    assert S.interp(params) == ["upscore"]
    for i in range(3):
        for j in range(3):
            assert np.array_equal(w[i, j], upsample_filt(4) if i == j else np.full((4, 4), 7.0))
    assert np.all(params["score_fr"][0] == 1)
    one = {"up": [torch.zeros(5, 1, 3, 3)]}  # k == 1: W[i, 0], also on tensors
    S.interp(one, ["up"])
    assert all(torch.equal(one["up"][0][i, 0], torch.from_numpy(upsample_filt(3))) for i in range(5))


@pytest.mark.parametrize("shape, words", [((3, 2, 4, 4), "same or |output| == 1"),
                                          ((3, 3, 4, 5), "square"), ((3, 4), "4-D")])
def test_interp_errors_name_the_layer(shape, words):
    with pytest.raises(S.SurgeryError, match=f"upscore8.*{shape}.*".replace("(", r"\(")
                       .replace(")", r"\)")) as e:
        S.interp({"upscore8": [np.zeros(shape, np.float32)]})
    assert words in str(e.value)


def test_upsampling_layers_is_the_solve_py_substring_rule():
    assert S.upsampling_layers(["score_fr", "upscore2", "upscore_pool4", "group1"]) == \
        ["upscore2", "upscore_pool4", "group1"]


@pytest.mark.parametrize("legacy", [False, True])
def test_expand_score_copies_the_first_classes(legacy):
    rng = np.random.default_rng(0)
    old = [rng.standard_normal((3, 5, 1, 1)).astype(np.float32), np.arange(3, dtype=np.float32)]
    new = [np.full((7, 5, 1, 1), 9, np.float32), np.full(7, 9, np.float32)]
    if legacy:
        old[1], new[1] = old[1].reshape(1, 1, 1, 3), new[1].reshape(1, 1, 1, 7)
    out = S.expand_score(new, old)
    assert np.array_equal(out[0][:3], old[0]) and np.all(out[0][3:] == 9)
    assert out[1].reshape(-1).tolist() == [0, 1, 2, 9, 9, 9, 9] and out[1].shape == new[1].shape
    assert np.all(new[0] == 9)  # inputs untouched
    with pytest.raises(S.SurgeryError, match=r"2 classes.*fewer than the 3"):
        S.expand_score([np.zeros((2, 5, 1, 1)), np.zeros(2)], old)
    with pytest.raises(S.SurgeryError, match="beyond the class axis"):
        S.expand_score([np.zeros((7, 4, 1, 1)), np.zeros(7)], old)


def test_color_depth_conv1():
    base = [np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32),
            np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)]
    w, b = S.color_depth_conv1(base)
    assert w.shape == (4, 4, 3, 3) and np.array_equal(w[:, :3], base[0])
    assert np.array_equal(w[:, 3], np.mean(base[0], axis=1)) and b.tolist() == [0, 1, 2, 3]
    with pytest.raises(S.SurgeryError, match="conv1_1_bgrd"):
        S.color_depth_conv1(base, [np.zeros((4, 3, 3, 3)), np.zeros(4)])
