"""Fixtures of tests/reproduce."""
import pytest

from fcn_port.reproduce import datasets
from fcn_port.solvers import data


@pytest.fixture
def clean_registry(monkeypatch):
    """reproduce.datasets.register() changes process-wide state (the source factories of
    solvers.data, the data root, the rng): each test that trains through the CLI starts from
    none of it and leaves none behind."""
    monkeypatch.setattr(data, "_FACTORIES", [])
    monkeypatch.setattr(datasets, "_REGISTERED", [])
    monkeypatch.setattr(datasets, "_CONFIG", dict(datasets._CONFIG))
