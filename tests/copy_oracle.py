"""Copy the real-Caffe oracle cases the tests use from ../shared/oracle into tests/data/oracle.

The project must test without ../shared and without Caffe, so the cases live in the repository.
To keep the test data under 40 MB, the two largest cases stay out (``fcn/voc-fcn32s``, whose
64x64 upsampling blob alone is 7 MB twice over, and ``solver/sgd_fcn32s_official``); the tests
also sweep ../shared/oracle/cases when it is present, as it is in CI, so those are still checked.

    python tests/copy_oracle.py [ORACLE_CASES_DIR]
"""
import shutil
import sys
from pathlib import Path

LEFT_OUT = {"fcn/voc-fcn32s", "solver/sgd_fcn32s_official"}
HERE = Path(__file__).resolve().parent


def main(src=None):
    src = Path(src or HERE.parent.parent / "shared" / "oracle" / "cases")
    dst = HERE / "data" / "oracle"
    for case in sorted(p for p in src.glob("*/*") if p.is_dir()):
        rel = case.relative_to(src).as_posix()
        if rel in LEFT_OUT:
            continue
        shutil.rmtree(dst / rel, ignore_errors=True)
        shutil.copytree(case, dst / rel)
        for p in (dst / rel).rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
    print(f"copied into {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:])
