"""The malformed-input corpus (tests/data/malformed, made by its make.py) through the CLI verb a
user would run on each file: exit 2, one ``fcn-port: error:`` line naming the file and what was
expected, nothing written, in bounded time and memory. Also the port-side findings of issue 11
(messages that named the wrong problem) and a short fuzzing run of the readers."""
import importlib.util
import json
import resource
import shutil
import time

import pytest

from fcn_port.cli import main
from helpers import DATA, REPO

CORPUS = DATA / "malformed"
CASES = json.loads((CORPUS / "cases.json").read_text())
SECONDS, MEGABYTES = 10.0, 1024


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A private copy: a reader that wrote anything would show up in it."""
    folder = tmp_path_factory.mktemp("malformed")
    for f in CORPUS.iterdir():
        shutil.copy(f, folder / f.name)
    return folder


def _argv(verb, f, corpus, out):
    if verb == "inspect":
        return ["inspect", str(f)]
    if verb == "convert":
        return ["convert", str(f), "-o", str(out / "x.pt")]
    if verb == "convert-prototxt":
        model, net = (f, corpus / "good.prototxt") if f.suffix == ".caffemodel" else \
            (corpus / "good.caffemodel", f)
        return ["convert", str(model), "--prototxt", str(net), "-o", str(out / "x.pt")]
    if verb == "train":
        return ["train", "--solver", str(f), "--quiet", "--max-iter", "1"]
    if verb == "infer":
        return ["infer", str(f), str(corpus / "good.png"), "-o", str(out / "seg")]
    assert verb == "infer-image"
    return ["infer", str(corpus / "good.pt"), str(f), "-o", str(out / "seg")]


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_the_corpus_is_big_and_small():
    kinds = {c["file"].split(".", 1)[1] for c in CASES}
    assert len(CASES) >= 50
    assert {"caffemodel", "caffemodel.h5", "solverstate", "prototxt", "pt", "png"} <= kinds
    assert sum(p.stat().st_size for p in CORPUS.iterdir()) < 2 << 20


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_each_malformed_file_is_one_clear_line(case, corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in corpus.iterdir())
    out = tmp_path / "out"
    out.mkdir()
    f = corpus / case["file"]
    peak, t0 = _peak_mb(), time.monotonic()
    rc = main(_argv(case["verb"], f, corpus, out))
    seconds, grew = time.monotonic() - t0, _peak_mb() - peak
    stdout, err = capsys.readouterr()
    assert rc == 2, (stdout, err)
    assert err.startswith("fcn-port: error: ") and err.count("\n") == 1, err
    assert case["names"] in err, err
    for word in case["words"]:
        assert word in err, (word, err)
    assert any(w in err for w in ("expected", "did you mean", "not", "must")), err
    assert seconds < SECONDS and grew < MEGABYTES, (seconds, grew)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert not written and sorted(p.name for p in corpus.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_corpus_script_makes_what_is_committed(tmp_path):
    """make.py is deterministic in what it lists (the bytes of torch zips carry no time)."""
    listed = {c["file"] for c in CASES}
    assert listed <= {p.name for p in CORPUS.iterdir()}
    assert "make.py" in {p.name for p in CORPUS.iterdir()}


# ------------------------------------------------------------ issue 11's port-side findings

def _one_line(capsys, argv, *words):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("fcn-port: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    return err


def test_inspect_of_a_checkpoint_describes_it(tmp_path, capsys):
    # was: "field number 0 is not valid protobuf"
    assert main(["inspect", str(CORPUS / "good.pt")]) == 0
    out = capsys.readouterr().out
    assert "fcn-port checkpoint" in out and "voc-fcn32s" in out and "protobuf" not in out
    assert main(["inspect", "--json", str(CORPUS / "good.pt")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["meta"]["model"] == "voc-fcn32s" and report["meta"]["classes"] == 2
    assert report["total_params"] > 0


def test_convert_of_a_prototxt_says_so(tmp_path, capsys):
    # was: a wire-type message with no hint that the file is a prototxt
    err = _one_line(capsys, ["convert", str(CORPUS / "good.prototxt"), "-o", str(tmp_path / "x.pt")],
                    "this is a prototxt", "--prototxt")
    assert "good.prototxt" in err and not (tmp_path / "x.pt").exists()


def test_convert_of_a_checkpoint_says_so(tmp_path, capsys):
    _one_line(capsys, ["convert", str(CORPUS / "good.pt"), "-o", str(tmp_path / "x.pt")],
              "checkpoint", "zip")


@pytest.mark.parametrize("verb", ["inspect", "convert"])
def test_a_folder_is_a_folder(verb, tmp_path, capsys):
    # was: "no such file" (inspect) and "cannot open (Is a directory)" (convert)
    argv = [verb, str(tmp_path)] + (["-o", str(tmp_path / "x.pt")] if verb == "convert" else [])
    err = _one_line(capsys, argv, "is a folder")
    assert "no such file" not in err


def test_inspect_warns_about_a_misspelled_type_and_bottom(tmp_path, capsys):
    # was: exit 0 without a word
    text = (CORPUS / "good.prototxt").read_text()
    bad = tmp_path / "bad.prototxt"
    bad.write_text(text.replace('type: "Convolution"', 'type: "Convolutoin"', 1)
                   .replace('bottom: "data"', 'bottom: "dta"', 1))
    assert main(["inspect", str(bad)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any("warning" in e and "'conv1'" in e and "Convolutoin" in e and "Convolution" in e
               for e in err), err
    assert any("warning" in e and "'dta'" in e and "did you mean 'data'" in e for e in err), err
    assert main(["inspect", str(CORPUS / "good.prototxt")]) == 0
    assert "warning" not in capsys.readouterr().err


# ------------------------------------------------------------------------- a short fuzz run

def _fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_readers", REPO / "fuzz" / "fuzz_readers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", ["caffemodel", "solverstate", "hdf5", "prototxt", "solver"])
def test_a_short_fuzz_run_finds_nothing(target, tmp_path, monkeypatch):
    fuzz = _fuzzer()
    monkeypatch.setattr(fuzz, "FINDINGS", tmp_path / "findings")
    result = fuzz.fuzz(target, 60 if target == "prototxt" else 200, seed=7)
    assert result["inputs"] > 0 and result["lines"] > 40
    assert result["findings"] == []


def test_the_fuzzer_stops_an_input_at_its_time_budget(tmp_path, monkeypatch):
    """A reader that hangs (a quadratic loop, a FIFO) is a finding, not a stalled run
    (issue 16: the time limit was measured after the input returned)."""
    fuzz = _fuzzer()
    monkeypatch.setattr(fuzz, "FINDINGS", tmp_path / "findings")

    def hangs(data):
        if data.startswith(b"\x00"):
            while True:
                pass
    monkeypatch.setitem(fuzz.RUN, "caffemodel", hangs)
    monkeypatch.setattr(fuzz, "mutate_bytes", lambda data, rng, corpus: b"\x00" + data)
    t0 = time.monotonic()
    result = fuzz.fuzz("caffemodel", 2, seed=7, time_limit=0.3)
    assert time.monotonic() - t0 < 5
    assert [f["kind"] for f in result["findings"]] == ["slow: stopped at the 0.3 s budget"]
    assert (tmp_path / "findings" / result["findings"][0]["input"]).read_bytes()[:1] == b"\x00"


def test_a_net_with_thousands_of_missing_bottoms_is_checked_fast():
    # the fuzzer's one finding: a 'did you mean' per missing bottom was O(names^2) (12 s)
    from fcn_port.port.formats.netcheck import check_net
    from fcn_port.port.formats.proto import caffe_pb2

    net = caffe_pb2.NetParameter(layer=[caffe_pb2.LayerParameter(
        name=f"l{i}", type="ReLU", bottom=[f"x{i}"], top=[f"t{i}"]) for i in range(3000)])
    t0 = time.monotonic()
    problems = check_net(net, {"ReLU"})
    assert time.monotonic() - t0 < 3.0
    assert len(problems) == 3000 and "'x2999'" in problems[-1]


def test_a_net_with_tens_of_thousands_of_problems_is_checked_in_linear_time():
    """Duplicate tops and unknown types by the ten thousand (issue 16: a list lookup per
    problem made a 6 MB prototxt take 100 s)."""
    from fcn_port.port.formats.netcheck import check_net
    from fcn_port.port.formats.proto import caffe_pb2

    n = 30000
    net = caffe_pb2.NetParameter(layer=[caffe_pb2.LayerParameter(name="in", type="Input",
                                                                 top=["x"])] +
                                 [caffe_pb2.LayerParameter(name=f"d{i}", type="ReLU" if i % 2
                                                           else "Relu", bottom=["x"], top=["y"])
                                  for i in range(n)])
    t0 = time.monotonic()
    problems = check_net(net, {"Input", "ReLU"})
    assert time.monotonic() - t0 < 4.0  # 0.4 s here; 9 s before
    assert len(problems) == n // 2 + n - 1  # every unknown type, every duplicate top but the first
