"""pytest's entry to the shared test helpers (tests/helpers.py).

``tests/data/oracle`` holds the real-Caffe cases copied into the repository (see copy_oracle.py);
when the workplace's ``../shared/oracle/cases`` is present (as in CI) its extra cases are tested
too. The names below stay importable as ``from conftest import ...`` for older test files; new
ones import them from ``helpers``.
"""
import pytest
import torch

from helpers import DATA, ORACLE, SHARED, case_params, oracle_cases  # noqa: F401


@pytest.fixture
def one_thread():
    """Tiny nets: on a busy 2-core machine torch's intra-op threads only contend (a solver
    module runs 4x faster on one thread). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def clean_registry(monkeypatch):
    """reproduce.datasets.register() (what fcn-port train does) changes process-wide state: the
    source factories of solvers.data, the data root, the rng. A test that trains through the
    CLI starts from none of it and leaves none behind."""
    from fcn_port.reproduce import datasets
    from fcn_port.solvers import data

    monkeypatch.setattr(data, "_FACTORIES", [])
    monkeypatch.setattr(datasets, "_REGISTERED", [])
    monkeypatch.setattr(datasets, "_CONFIG", dict(datasets._CONFIG))
