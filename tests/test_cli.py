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
