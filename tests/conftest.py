"""Where the tests find real-Caffe oracle cases.

``tests/data/oracle`` holds the cases copied into the repository (see copy_oracle.py); when the
workplace's ``../shared/oracle/cases`` is present (as in CI) its extra cases are tested too.
"""
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
ORACLE = DATA / "oracle"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "oracle" / "cases"


def oracle_cases(group, needs=None):
    """Case folders of ``group`` ('layers', 'fcn', 'formats', 'solver'), in-repo ones first."""
    found = {}
    for root in (SHARED, ORACLE):  # in-repo copies win over shared ones of the same name
        for case in sorted((root / group).glob("*")) if (root / group).is_dir() else ():
            if case.is_dir() and (needs is None or (case / needs).exists()):
                found[case.name] = case
    return [found[k] for k in sorted(found)]


def case_params(group, needs=None):
    return [pytest.param(c, id=f"{group}/{c.name}") for c in oracle_cases(group, needs)]
