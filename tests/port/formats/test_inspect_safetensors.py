"""``fcn-port inspect`` of a safetensors file: fcn-port's own (metadata ``format: fcn-port/1``)
and anyone else's, written here with port.fileio.safetensors; NaN/Inf are warned about."""
import json

import numpy as np

from fcn_port.cli import main
from fcn_port.port.fileio import safetensors
from fcn_port.port.formats.report import detect, inspect_file


def test_fcn_port_checkpoint_and_foreign_file(tmp_path, capsys):
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    ours = tmp_path / "ours.safetensors"
    safetensors.write(ours, {"conv1.0": w, "conv1.1": np.zeros(2, np.float32)},
                      {"format": "fcn-port/1", "model": "voc-fcn8s", "classes": "21",
                       "json_keys": json.dumps(["classes"])})
    assert detect(ours) == "safetensors"
    r = inspect_file(ours)
    assert r["kind"] == "fcn-port checkpoint" and r["meta"]["classes"] == 21
    assert r["layers"][0]["name"] == "conv1" and r["layers"][0]["params"] == [[2, 3, 2, 2], [2]]
    assert r["total_params"] == 26 and "warnings" not in r
    theirs = tmp_path / "theirs.safetensors"
    bad = w.copy()
    bad[0, 0, 0, 0] = np.nan
    safetensors.write(theirs, {"a.weight": bad})
    r = inspect_file(theirs)
    assert r["kind"].startswith("safetensors file (not") and "1 NaN/Inf" in r["warnings"][0]
    assert main(["inspect", str(ours)]) == 0
    assert "voc-fcn8s" in capsys.readouterr().out


def test_truncated_is_one_line(tmp_path, capsys):
    path = tmp_path / "cut.safetensors"
    safetensors.write(path, {"x": np.ones(100, np.float32)})
    path.write_bytes(path.read_bytes()[:-7])
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err
