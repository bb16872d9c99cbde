"""Prototxt I/O on every prototxt real Caffe ran.
"""
import json

import pytest

from fcn_port.port.formats import text
from fcn_port.port.formats.proto import caffe_pb2
from helpers import ORACLE, oracle_cases


PROTOTXTS = sorted(p for group in ("layers", "fcn", "formats", "solver")
                   for case in oracle_cases(group) for p in case.glob("*.prototxt"))


@pytest.mark.parametrize("path", PROTOTXTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_prototxt_caffe_ran_reads_and_round_trips(path, tmp_path):
    read = text.read_solver if path.name == "solver.prototxt" else text.read_net
    msg, _ = read(path)
    text.write_text(msg, tmp_path / "out.prototxt")
    again, notes = read(tmp_path / "out.prototxt")
    assert again == msg and notes == []


def test_net_layers_match_what_caffe_instantiated():
    case = ORACLE / "fcn" / "voc-fcn8s"
    net, _ = text.read_net(case / "net.prototxt")
    caffe = [l for l in json.loads((case / "case.json").read_text())["layers"] if l["type"] != "Split"]
    assert [(l.name, l.type) for l in net.layer] == [(l["name"], l["type"]) for l in caffe]


def test_ceil_mode_spelling_is_read_as_round_mode(tmp_path):
    path = tmp_path / "p.prototxt"
    path.write_text('layer { name: "p" type: "Pooling"  # ceil_mode: false stays a comment\n'
                    '  pooling_param { pool: MAX kernel_size: 3 ceil_mode: false } }\n'
                    'layer { name: "q" type: "Pooling" pooling_param { ceil_mode: true } }\n')
    net, notes = text.read_net(path)
    assert net.layer[0].pooling_param.round_mode == caffe_pb2.PoolingParameter.FLOOR
    assert net.layer[1].pooling_param.round_mode == caffe_pb2.PoolingParameter.CEIL
    assert notes == ["line 2: ceil_mode: false -> round_mode: FLOOR",
                     "line 3: ceil_mode: true -> round_mode: CEIL"]
