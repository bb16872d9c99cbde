"""The ``fcn-port`` command itself: the console script, and a user error as one line with no
traceback and exit status 2.
"""
import subprocess
import sys
from helpers import ORACLE


def test_console_script_reports_its_version():
    run = subprocess.run([sys.executable, "-m", "fcn_port.cli", "--version"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("fcn-port ")


def test_cli_prints_one_line_and_no_traceback(tmp_path):
    path = tmp_path / "broken.caffemodel"
    path.write_bytes((ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel").read_bytes()[:777])
    run = subprocess.run([sys.executable, "-m", "fcn_port.cli", "inspect", str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.startswith("fcn-port: error: ") and str(path) in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def _run_raising(monkeypatch, capsys, exc):
    from fcn_port import cli

    parser = cli.build_parser()

    def boom(args):
        raise exc
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.parse_args(["models"])  # any verb; its run is replaced below
    for action in parser._subparsers._group_actions:
        action.choices["models"].set_defaults(run=boom)
    status = cli.main(["models"])
    return status, capsys.readouterr().err


def test_unexpected_errors_are_one_line(monkeypatch, capsys):
    status, err = _run_raising(monkeypatch, capsys, RuntimeError("first\nsecond"))
    assert status == 1 and err.count("\n") == 1 and "RuntimeError: first second" in err
    assert "FCN_PORT_DEBUG=1" in err and "Traceback" not in err
    status, err = _run_raising(monkeypatch, capsys, OSError(28, "No space left on device",
                                                            "/out/x.pt"))
    assert status == 2 and err == "fcn-port: error: /out/x.pt: No space left on device\n"
    status, err = _run_raising(monkeypatch, capsys, MemoryError())
    assert status == 2 and "out of memory" in err and err.count("\n") == 1
    monkeypatch.setenv("FCN_PORT_DEBUG", "1")
    import pytest
    with pytest.raises(RuntimeError):
        _run_raising(monkeypatch, capsys, RuntimeError("shown with its traceback"))


def test_the_parser_starts_without_numpy_or_torch():
    """`fcn-port --help` and argument errors build every verb's parser: nothing heavy on the way."""
    code = ("import sys, fcn_port.cli; fcn_port.cli.build_parser(); "
            "print('numpy' in sys.modules, 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "False"]
