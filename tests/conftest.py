"""pytest's entry to the shared test helpers (tests/helpers.py).

``tests/data/oracle`` holds the real-Caffe cases copied into the repository (see copy_oracle.py);
when the workplace's ``../shared/oracle/cases`` is present (as in CI) its extra cases are tested
too. The names below stay importable as ``from conftest import ...`` for older test files; new
ones import them from ``helpers``.
"""
from helpers import DATA, ORACLE, SHARED, case_params, oracle_cases  # noqa: F401
