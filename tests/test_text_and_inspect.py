"""Prototxt I/O on every Caffe-run prototxt, and `fcn-port inspect` on every kind of file."""
import json
import subprocess
import sys

import pytest

from conftest import ORACLE, oracle_cases
from fcn_port.port.formats import text
from fcn_port.cli import main
from fcn_port.port.formats.proto import caffe_pb2

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


def test_inspect_default_runs_on_the_bundled_model(capsys):
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert "voc-fcn8s-tiny.caffemodel: binary caffemodel, format V2" in out
    assert "score_fr" in out and "total: " in out


@pytest.mark.parametrize("rel,kind,fmt", [
    ("fcn/voc-fcn8s/weights.caffemodel", "caffemodel", "binary"),
    ("fcn/voc-fcn8s/weights.caffemodel.h5", "caffemodel", "HDF5"),
    ("fcn/voc-fcn8s/net.prototxt", "net", "prototxt"),
    ("formats/v1_legacy/weights.caffemodel", "caffemodel", "binary"),
    ("solver/lr_poly/solver.prototxt", "solver", "prototxt"),
    ("solver/sgd_step_itersize/snapshots/snap_iter_5.solverstate", "solverstate", "binary"),
    ("solver/sgd_fcn8s_atonce_hdf5/snapshots/snap_iter_4.solverstate.h5", "solverstate", "HDF5"),
])
def test_inspect_json_on_every_kind_of_file(rel, kind, fmt, capsys):
    assert main(["inspect", "--json", str(ORACLE / rel)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["kind"], report["format"]) == (kind, fmt)
    if kind == "caffemodel":
        shapes = {l["name"]: l["params"] for l in report["layers"]}
        assert report["total_params"] == sum(l["count"] for l in report["layers"]) > 0
        if "v1_legacy" in rel:
            assert report["version"] == "V1" and report["upgrades"]
            assert shapes["fc6"] and len(shapes["fc6"][0]) == 4  # legacy 4-D dims as stored
        else:
            assert shapes["score_fr"] == [[21, 64, 1, 1], [21]]
    if kind == "solverstate":
        assert report["iter"] in (4, 5) and report["history"]


def test_inspect_console_script_exists():
    run = subprocess.run([sys.executable, "-m", "fcn_port.cli", "--version"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("fcn-port ")
