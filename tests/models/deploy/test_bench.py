"""FLOP counting from layer shapes, the bench verb, and the fast path's agreement with eager.

No timing is asserted: the machine is shared, only the numbers' consistency is tested.
"""
import json

import torch

from fcn_port import models
from fcn_port.models.deploy import bench, fast
from fcn_port import cli


def test_voc_fcn8s_is_363_1_gflop_at_500_counted_on_meta():
    model = bench.meta_model("voc-fcn8s")
    assert all(p.is_meta for p in model.parameters())  # nothing allocated
    per_layer = dict((n, f) for n, _, f in bench.layer_flops(model, (500, 500)))
    assert per_layer["conv1_2"] == 2 * 64 * 64 * 9 * 698 * 698     # pad 100: 698 x 698
    assert per_layer["fc6"] == 2 * 4096 * 512 * 49 * 16 * 16        # 7x7 on pool5 22 -> 16
    assert per_layer["upscore8"] == 2 * 21 * 21 * 16 * 16 * 70 * 70  # deconv: input pixels
    total = bench.flops(model, (500, 500))
    assert round(total / 1e9, 1) == 363.1 and total == sum(per_layer.values())  # as README
    assert len(per_layer) == 21  # 15 VGG + score_fr + 2 skips + 3 deconvolutions


def test_flops_scale_with_batch_and_follow_the_geometry():
    model = bench.meta_model("voc-fcn32s")
    assert bench.flops(model, (64, 64), batch=2) == 2 * bench.flops(model, (64, 64))
    assert bench.flops(bench.meta_model("voc-fcn-alexnet"), (500, 500)) < \
        bench.flops(model, (500, 500)) / 5


def test_bench_cli_tiny_json(capsys):
    assert cli.main(["bench", "--runs", "1", "--warmup", "0", "--size", "48", "40",
                     "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["eager"]
    assert r["model"] == "voc-fcn8s" and r["size"] == [48, 40] and r["runs"] == 1
    assert r["gflop"] > 0 and r["median_s"] > 0 and r["peak_rss_mb"] > 0
    assert cli.main(["bench", "--model", "nope"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_fast_paths_agree_with_eager():
    model = bench.random_weights(models.build("voc-fcn8s", widths=(4, 8, 8, 8, 8), fc=16))
    x = (torch.randn(1, 3, 37, 45) * 50,)
    pairs = fast.conv_relu_pairs(model)
    assert ("conv1_1", "relu1_1") in pairs and ("fc7", "relu7") in pairs and len(pairs) == 15
    fn, how, err = fast.fast_model(model, x, compile=False)
    assert how in ("bands-nhwc", "fused-nhwc", "fused-nchw") and err <= 1e-5
    with torch.inference_mode():
        y = fn(torch.randn(1, 3, 20, 70) * 50)  # another size: nothing baked in
        want = model(*x)
    assert y.shape == (1, 21, 20, 70) and fast._error(fn(*x), want) <= 1e-5
