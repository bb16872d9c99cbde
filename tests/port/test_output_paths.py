"""Issue 11, what a new user hit: a bad output path is one line before any work, for every verb.

``-o`` into a folder that does not exist, ``-o`` naming an existing folder where a file is
written, and a folder output naming an existing file (or a path through one): exit 2, one
``fcn-port: error:`` line naming the option and the path, nothing printed on stdout (no work
done), nothing written. Also the two checkers of port/verbs.py on their own.
"""
import os

import pytest

from fcn_port.cli import main
from fcn_port.port import DEFAULT_WEIGHTS
from fcn_port.port.errors import UserInputError
from fcn_port.port.verbs import check_output_dir, check_output_file

W = str(DEFAULT_WEIGHTS)  # a real caffemodel: the inputs are fine, only the output is wrong
IMAGE = str(DEFAULT_WEIGHTS.parents[2] / "models" / "data" / "demo.jpg")

# (argv with {nodir}/{adir}/{afile} placeholders, the option the message must name)
CASES = [
    (["convert", W, "-o", "{nodir}/x.pt"], "-o"),
    (["convert", W, "-o", "{adir}"], "-o"),
    (["convert", W, "-o", "{afile}/x.pt"], "-o"),
    (["export", W, "-o", "{nodir}/x.caffemodel"], "-o"),
    (["export", W, "-o", "{adir}"], "-o"),
    (["export", W, "-o", "{tmp}/ok.caffemodel", "--prototxt", "{nodir}/deploy.prototxt"],
     "--prototxt"),
    (["export", W, "--onnx", "{nodir}/x.onnx"], "--onnx"),
    (["export", W, "--onnx", "{adir}"], "--onnx"),
    (["surgery", "interp", W, "-o", "{nodir}/x.caffemodel"], "-o"),
    (["surgery", "interp", W, "-o", "{adir}"], "-o"),
    (["surgery", "transplant", W, "--net", "voc-fcn8s", "-o", "{nodir}/x.caffemodel"], "-o"),
    (["surgery", "expand-score", W, "--layer", "score_fr", "--classes", "25", "-o", "{adir}"],
     "-o"),
    (["net", "voc-fcn8s", "-o", "{afile}"], "-o"),
    (["net", "voc-fcn8s", "--split", "deploy", "-o", "{afile}"], "-o"),
    (["net", "voc-fcn8s", "-o", "{afile}/sub"], "-o"),
    (["infer", W, IMAGE, "-o", "{afile}"], "-o"),
    (["parity", "{tmp}/nocase", "--plot", "{afile}"], "--plot"),
    (["eval", W, "--dataset", "voc", "--root", "{tmp}/noroot", "--png", "{nodir}/c.png"], "--png"),
    (["eval", W, "--dataset", "voc", "--root", "{tmp}/noroot", "--grid", "{adir}"], "--grid"),
    (["eval", W, "--dataset", "voc", "--root", "{tmp}/noroot", "--save-pred", "{afile}"],
     "--save-pred"),
    (["score", "--pred", "{tmp}", "--gt", "{tmp}", "--classes", "3", "--png", "{nodir}/c.png"],
     "--png"),
]


def _ids():
    return [f"{argv[0]}-{option}-{argv[-1].strip('{}').split('}')[0]}" for argv, option in CASES]


@pytest.mark.parametrize("argv, option", CASES, ids=_ids())
def test_bad_output_path_is_one_line_before_any_work(tmp_path, capsys, argv, option):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("keep me\n")
    places = {"tmp": tmp_path, "nodir": tmp_path / "nodir", "adir": tmp_path / "adir",
              "afile": tmp_path / "afile"}
    argv = [a.format(**places) for a in argv]
    bad = next(a for a in argv[::-1] if str(tmp_path) in a and "ok.caffemodel" not in a
               and "noroot" not in a and "nocase" not in a)
    before = sorted(os.walk(tmp_path))
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before reading or computing anything
    assert err.count("\n") == 1 and err.startswith("fcn-port: error: ")
    assert f"{option} {bad}" in err
    assert sorted(os.walk(tmp_path)) == before  # nothing made, nothing written
    assert (tmp_path / "afile").read_text() == "keep me\n"


def test_checkers_accept_what_can_be_written(tmp_path):
    (tmp_path / "old.pt").write_bytes(b"x")
    check_output_file(tmp_path / "new.pt", "-o")
    check_output_file(tmp_path / "old.pt", "-o")  # replaced atomically
    check_output_file(None, "-o")
    check_output_file("-", "-o")
    check_output_dir(tmp_path / "a" / "b", "-o")  # made with its parents when written
    check_output_dir(tmp_path, "-o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pt"]


def test_checkers_refuse_with_the_option_and_path(tmp_path):
    (tmp_path / "f").write_text("")
    for call, path in [(check_output_file, tmp_path), (check_output_file, tmp_path / "no" / "x"),
                       (check_output_file, tmp_path / "f" / "x"),
                       (check_output_dir, tmp_path / "f"),
                       (check_output_dir, tmp_path / "f" / "sub"),
                       (check_output_file, "/dev/null")]:
        with pytest.raises(UserInputError) as e:
            call(path, "--out")
        assert f"--out {path}" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("argv", [
    ["convert", "{w}", "-o", "{w}"],
    ["surgery", "expand-score", "{w}", "--classes", "25", "-o", "{w}"],
    ["surgery", "interp", "{w}", "-o", "{w}"],
    ["export", "{ckpt}", "-o", "{tmp}/e.caffemodel", "--prototxt", "{ckpt}"],
])
def test_an_output_that_names_its_own_input_is_refused(tmp_path, capsys, argv):
    """convert X.caffemodel -o X.caffemodel turned the caffemodel into a .pt (issue 16)."""
    w, ckpt = tmp_path / "w.caffemodel", tmp_path / "c.pt"
    w.write_bytes(DEFAULT_WEIGHTS.read_bytes())
    assert main(["convert", str(w), "-o", str(ckpt)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main([a.format(w=w, ckpt=ckpt, tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the input" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
