"""No code from files: a Python layer's module is never imported without the caller's opt-in (and
never a standard-library one, nor anything but a class), a checkpoint's pickle never runs, and
no source file of the package evaluates, unpickles or imports what a file names."""
import ast
import sys
from pathlib import Path

import pytest
import torch

from fcn_port.port.errors import CaffeFormatError, FcnPortError, NetError
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import parse_text
from fcn_port.port.net import CaffeNet

ROOT = Path(__file__).resolve().parents[2]

PROBE = '''
import pathlib
pathlib.Path({marker!r}).write_text("imported")


class Double:
    def __init__(self, param_str):
        self.param_str = param_str

    def __call__(self, x):
        return x * 2


def Called(param_str):  # a function, not a class: never called
    pathlib.Path({marker!r}).write_text("called " + param_str)
'''


def _net(module, layer, param_str="", data_module=None):
    data = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 '
            'dim: 3 dim: 3 } } }\n')
    if data_module:  # a Python data layer instead: no bottoms, its top fed by the caller
        data = ('layer { name: "data" type: "Python" top: "data" python_param { module: '
                f'"{data_module}" layer: "Double" }} }}\n')
    text = data + ('layer { name: "fix" type: "Python" bottom: "data" top: "out" python_param { '
                   f'module: "{module}" layer: "{layer}" param_str: "{param_str}" }} }}\n')
    return parse_text(text, caffe_pb2.NetParameter)[0]


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A module on sys.path whose import writes a marker file; (module name, marker)."""
    name = f"fcn_port_probe_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "marker.txt"
    (tmp_path / f"{name}.py").write_text(PROBE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


SHAPES = {"data": (1, 2, 3, 3)}


def test_a_module_named_by_a_prototxt_is_not_imported_without_the_opt_in(probe):
    name, marker = probe
    with pytest.raises(NetError, match="never imports") as e:
        CaffeNet(_net(name, "Double", data_module=name), input_shapes=SHAPES)
    assert "allow_python_import" in str(e.value) and "python_layers" in str(e.value)
    assert name not in sys.modules and not marker.exists()
    # a data layer naming the module: its tops are fed, nothing imported
    net = CaffeNet(_net(name, "Double", data_module=name), input_shapes=SHAPES,
                   python_layers={"fix": lambda x: x + 1})
    assert net.inputs == ["data"] and name not in sys.modules and not marker.exists()
    net = CaffeNet(_net(name, "Double", data_module=name), input_shapes=SHAPES,
                   python_layers={"fix": lambda x: x + 1}, allow_python_import={"other"})
    assert net.inputs == ["data"] and name not in sys.modules and not marker.exists()
    # naming some other module as trusted is no opt-in for this one
    with pytest.raises(NetError, match="not among the allowed"):
        CaffeNet(_net(name, "Double"), input_shapes=SHAPES, allow_python_import={"other"})
    assert name not in sys.modules and not marker.exists()


def test_the_opt_in_imports_the_trusted_module_and_calls_its_class_with_param_str(probe):
    name, marker = probe
    for allow in ({name}, name, True):
        sys.modules.pop(name, None)
        net = CaffeNet(_net(name, "Double", "k: 1"), input_shapes=SHAPES,
                       allow_python_import=allow)
        assert marker.read_text() == "imported"
        assert net.layers["fix"].fn.param_str == "k: 1"
        x = torch.arange(18.0).reshape(1, 2, 3, 3)
        assert torch.equal(net(data=x)["out"], 2 * x)


def test_even_with_the_opt_in_no_system_module_and_no_function_is_called(probe, tmp_path):
    name, marker = probe
    target = tmp_path / "PWNED"
    for module, layer in [("os", "system"), ("subprocess", "Popen"), ("builtins", "exec"),
                          ("posix", "system"), ("importlib", "import_module")]:
        with pytest.raises(NetError, match="standard-library or system module"):
            CaffeNet(_net(module, layer, f"touch {target}"), input_shapes=SHAPES,
                     allow_python_import=True)
    assert not target.exists()
    with pytest.raises(NetError, match="not a class"):
        CaffeNet(_net(name, "Called", "x"), input_shapes=SHAPES, allow_python_import=True)
    assert marker.read_text() == "imported"  # imported as allowed, but nothing called


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.path}",)


def test_a_checkpoint_whose_pickle_runs_code_is_refused_and_runs_nothing(tmp_path):
    from fcn_port import models

    target = tmp_path / "PWNED"
    ckpt = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": _Payload(target)}, ckpt)
    with pytest.raises(CaffeFormatError, match="system") as e:
        models.load(str(ckpt))
    assert isinstance(e.value, FcnPortError) and str(ckpt) in str(e.value)
    assert not target.exists()


# ---- the package's sources ------------------------------------------------------------------

def _sources():
    skip = {"port/formats/proto/caffe_pb2.py"}
    for pkg in ("port", "models", "solvers", "reproduce"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            if f.relative_to(ROOT).as_posix() not in skip:
                yield f
    yield ROOT / "cli.py"


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(node.id if isinstance(node, ast.Name) else "<expr>")  # x().eval(): a method
    return ".".join(reversed(parts))


def _calls():
    for f in _sources():
        rel = f.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call):
                yield rel, node, _dotted(node.func)


def _kw(node, name):
    return next((k.value for k in node.keywords if k.arg == name), None)


def test_no_source_file_evaluates_unpickles_or_imports_what_a_file_names():
    seen = {"torch.load": [], "import": []}
    for rel, node, name in _calls():
        where = f"{rel}:{node.lineno}"
        assert name not in ("eval", "exec", "compile", "__import__", "builtins.eval"), where
        assert not name.startswith(("pickle.load", "marshal.load", "yaml.load", "dill.")), where
        assert name not in ("torch.jit.load", "torch.package.PackageImporter"), where
        if name.endswith(("np.load", "numpy.load")):
            flag = _kw(node, "allow_pickle")
            assert flag is None or (isinstance(flag, ast.Constant) and not flag.value), where
        if name == "torch.load":
            flag = _kw(node, "weights_only")
            assert isinstance(flag, ast.Constant) and flag.value is True, where
            seen["torch.load"].append(rel)
        if name in ("importlib.import_module", "import_module"):
            seen["import"].append((rel, node))
    # checkpoints: one reader, weights only (port/formats/torchfile.py)
    assert seen["torch.load"] == ["port/formats/torchfile.py"]
    # imports by name: package-internal lazy imports (a constant or an f-string of a constant
    # package's own module), and the Python layer's opt-in import
    for rel, node in seen["import"]:
        arg = node.args[0]
        if rel == "port/layers/python.py":
            continue  # behind import_allowed (tested above)
        literal = isinstance(arg, ast.Constant) and str(arg.value).startswith("fcn_port")
        relative = isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant) \
            and arg.values[0].value.startswith(".") and _kw(node, "package") is None \
            and len(node.args) == 2
        assert literal or relative, f"{rel}:{node.lineno} imports a computed module name"


def test_every_image_is_opened_by_the_one_reader_with_its_format_list():
    """Image.open with no format list tries ~40 decoders by content, EPS among them (which runs
    Ghostscript on the file): every Image.open is port/fileio/images.open_image's, with
    ``formats=``; images come in through it."""
    opens = [(rel, node) for rel, node, name in _calls() if name.endswith("Image.open")]
    assert [rel for rel, _ in opens] == ["port/fileio/images.py"], opens
    assert all(_kw(node, "formats") is not None for _, node in opens)


def test_a_postscript_file_named_jpg_is_refused_unread(tmp_path, monkeypatch, capsys):
    """A PostScript program named photo.jpg: one line, exit 2, and Ghostscript never runs (a
    fake ``gs`` on PATH would write a marker)."""
    from fcn_port.cli import main
    from fcn_port.port import DEFAULT_WEIGHTS

    marker = tmp_path / "gs-ran"
    gs = tmp_path / "bin" / "gs"
    gs.parent.mkdir()
    gs.write_text(f"#!/bin/sh\ntouch {marker}\n")
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{gs.parent}:/usr/bin:/bin")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{} loop\n")
    assert main(["infer", str(DEFAULT_WEIGHTS), str(photo), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "photo.jpg" in err and "JPEG or PNG" in err
    assert not marker.exists() and not (tmp_path / "out").exists()
