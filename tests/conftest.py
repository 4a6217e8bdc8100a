import pytest
import structlog

from tests.live_support import credentials, fake, logs  # noqa: F401 (fixtures for every test file)
from tests.probes import RECORDS


@pytest.fixture(autouse=True)
def clear_probe_records():
    RECORDS.clear()
    yield
    RECORDS.clear()


@pytest.fixture(autouse=True)
def reset_logging():
    """The CLI configures structlog globally, pointed at a stream pytest closes after the test."""
    yield
    structlog.reset_defaults()
