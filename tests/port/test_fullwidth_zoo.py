"""Full-width model-zoo nets against real Caffe (issue 19): CaffeNet, NIN, SqueezeNet 1.1,
GoogLeNet, ResNet-50 and DeepLab-LargeFOV at their published widths, written by
``tests/make_fullwidth_cases.py`` under the reference Caffe. Their weights are not shipped:
``fullwidth.weights`` draws them from the layer names, the case's ``weights.caffemodel`` is
written by fcn-port into a copy, and ``fcn-port parity`` runs it at 1e-5."""
import json
import shutil
import sys

import pytest

from fcn_port import cli
from helpers import ORACLE, TESTS

sys.path.insert(0, str(TESTS))
import make_fullwidth_cases  # noqa: E402

CASES = sorted(p for p in (ORACLE / "fullwidth").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_full_width_net_equals_caffe(case, tmp_path, capsys):
    copy = shutil.copytree(case, tmp_path / case.name)
    make_fullwidth_cases.write_weights(copy)
    try:
        assert cli.main(["parity", "--json", str(copy)]) == 0
    finally:
        (copy / "weights.caffemodel").unlink()  # up to 240 MB: not left in the temp folder
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert row["pass"] and row["compared"] == len(json.loads((case / "case.json").read_text())
                                                   ["recorded"]), row


def test_the_six_nets_are_there_at_full_width():
    assert {c.name for c in CASES} == {"caffenet", "nin_imagenet", "squeezenet_v1.1", "googlenet",
                                       "resnet50", "deeplab_largefov"}
    text = (ORACLE / "fullwidth" / "resnet50" / "net.prototxt").read_text()
    assert text.count('type: "BatchNorm"') == 53 and "num_output: 2048" in text


def test_a_case_without_its_weights_says_so():
    from fcn_port.port import parity
    from fcn_port.port.errors import CaffeFormatError

    with pytest.raises(CaffeFormatError):
        parity.run_forward_case(CASES[0], 1e-5)
    assert parity.run_case(CASES[0])["pass"] is False
