"""The ``server`` fixture of the download tests (download_server.py): yields (base URL, State)."""
import pytest

from download_server import serving


@pytest.fixture
def server():
    base, state, stop = serving()
    yield base, state
    stop()
