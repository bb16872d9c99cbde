"""fcn-port report (reproduce/report.py): the results table next to the paper's numbers, from
hand-written ``eval --json`` files and train/eval CSV logs; percentages and differences worked
out by hand here."""
import json

import pytest
from PIL import Image

from fcn_port.cli import main
from fcn_port.port.errors import CaffeFormatError, UserInputError
from fcn_port.reproduce import report


def _eval(path, mean_iu, model="voc-fcn32s", acc=0.9):
    head = {"score": "score", "label": "label", "classes": 21, "overall_acc": acc,
            "mean_acc": 0.5, "mean_iu": mean_iu, "fwavacc": 0.25, "loss": 1234.5,
            "per_class": [{"class": "background", "iu": 0.8, "acc": None}]}
    path.write_text(json.dumps({"checkpoint": "x.caffemodel", "model": model, "dataset": "voc",
                                "split": "seg11valid", "images": 736, "heads": [head]}))
    return path


def _csv(path, header, rows):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_table_json_and_curves(tmp_path):
    e32 = _eval(tmp_path / "32.json", 0.6123)
    e16 = _eval(tmp_path / "16.json", 0.655, model="voc-fcn16s")
    log = _csv(tmp_path / "log.csv", "iter,loss,smoothed_loss,lr", [(0, 9.0, 9.0, 1e-10),
                                                                   (1, 8.0, 8.5, 1e-10)])
    ev = _csv(tmp_path / "eval.csv", "iter,loss,overall_acc,mean_acc,mean_iu,fwavacc",
              [(0, 5, 0.1, 0.1, 0.05, 0.1), (2, 4, 0.2, 0.2, 0.1, 0.2)])
    stages = [report.parse_stage(f"voc-fcn32s={e32},{log},{ev}"),
              report.parse_stage(f"voc-fcn16s={e16}")]
    written, md = report.write_report(stages, tmp_path / "out")
    assert [p.name for p in written] == ["results.md", "results.json", "curves.png"]
    rows = [line for line in md.splitlines() if line.startswith("| voc-fcn")]
    # 61.23 against the paper's 63.6: -2.37; 65.50 against 65.0: +0.50
    assert rows[0].split(" | ")[1:] == ["736", "90.00", "50.00", "61.23", "25.00", "63.6",
                                        "-2.37 |"]
    assert rows[1].split(" | ")[4] == "65.50" and rows[1].endswith("| 65.0 | +0.50 |")
    assert "91.22 / 77.61 / 65.51 / 84.54" in md
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["rows"][0]["paper_mean_iu"] == 63.6 and doc["rows"][0]["mean_iu"] == 0.6123
    assert doc["rows"][0]["per_class"][0]["acc"] is None
    assert Image.open(tmp_path / "out" / "curves.png").size[0] > 300


def test_nan_is_null_and_unknown_stage_has_no_paper_number(tmp_path):
    e = _eval(tmp_path / "e.json", float("nan"), model="mine")
    written, md = report.write_report([report.parse_stage(f"my run={e}")], tmp_path / "o")
    assert "| my run | 736 | 90.00 | 50.00 | - | 25.00 | - | - |" in md
    assert len(written) == 2  # no logs: no curves
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["rows"][0]["mean_iu"] is None and doc["rows"][0]["paper_mean_iu"] is None


@pytest.mark.parametrize("spec", ["voc-fcn32s", "=a.json", "x=", "x=a,b,c,d"])
def test_bad_stage_spec(spec):
    with pytest.raises(UserInputError):
        report.parse_stage(spec)


def test_bad_files_one_line_and_nothing_written(tmp_path, capsys):
    good = _eval(tmp_path / "good.json", 0.5)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "nohead.json").write_text(json.dumps({"heads": [{"mean_iu": 1}]}))
    _csv(tmp_path / "log.csv", "iter,loss", [(0, "x")])
    cases = [(f"a={tmp_path / 'missing.json'}", UserInputError),
             (f"a={tmp_path / 'bad.json'}", CaffeFormatError),
             (f"a={tmp_path / 'nohead.json'}", CaffeFormatError),
             (f"a={good},{tmp_path / 'log.csv'}", CaffeFormatError),
             (f"a={good},{tmp_path / 'nolog.csv'}", UserInputError)]
    for spec, kind in cases:
        with pytest.raises(kind):
            report.write_report([report.parse_stage(spec)], tmp_path / "out")
        assert main(["report", "--stage", spec, "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fcn-port: error:") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert main(["report", "--stage", f"voc-fcn8s={good}", "-o", str(tmp_path / "out")]) == 0
    assert "| voc-fcn8s |" in capsys.readouterr().out


def _hostile(tmp_path):
    """Files that ended in internal errors before issue 16 (deep JSON, wrong types, a CSV field
    over csv's 128 KB limit, a heads object instead of a list)."""
    good = json.loads(_eval(tmp_path / "good.json", 0.5).read_text())

    def variant(name, change):
        doc = json.loads(json.dumps(good))
        change(doc)
        (tmp_path / name).write_text(json.dumps(doc))
        return f"a={tmp_path / name}"
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "big.csv").write_text("iter,loss\n0," + "1" * 200_000 + "\n")
    (tmp_path / "nul.csv").write_text("iter,loss\n0,\x001\n")
    return [f"a={tmp_path / 'deep.json'}",
            variant("metric-text.json", lambda d: d["heads"][0].update(mean_iu="high")),
            variant("heads-object.json", lambda d: d.update(heads={"0": d["heads"][0]})),
            variant("per-class-text.json", lambda d: d["heads"][0].update(per_class="all")),
            variant("per-class-row.json", lambda d: d["heads"][0].update(per_class=[[1, 2]])),
            variant("images-text.json", lambda d: d.update(images="many")),
            variant("model-number.json", lambda d: d.update(model=[1])),
            f"a={tmp_path / 'good.json'},{tmp_path / 'big.csv'}",
            f"a={tmp_path / 'good.json'},{tmp_path / 'nul.csv'}"]


def test_hostile_inputs_one_line_and_no_output_folder(tmp_path, capsys):
    for spec in _hostile(tmp_path):
        with pytest.raises(CaffeFormatError):
            report.write_report([report.parse_stage(spec)], tmp_path / "out")
        assert main(["report", "--stage", spec, "-o", str(tmp_path / "out")]) == 2, spec
        err = capsys.readouterr().err
        assert err.startswith("fcn-port: error:") and err.count("\n") == 1, err
        assert spec.split("=")[1].split(",")[-1] in err
    assert not (tmp_path / "out").exists()
