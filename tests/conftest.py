import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.helpers import REPO
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


# A local Ray (this process's children), its files under argv[1], shut down when stdin closes;
# prints its address after the prefix (Ray prints lines of its own).
_RAY_HEAD = """
import sys, ray
ray.init(_temp_dir=sys.argv[1], include_dashboard=False, log_to_driver=False, configure_logging=False)
print("ray head at", ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture(scope="session")
def ray_files() -> Iterator[Path]:
    """The session's Ray head's files (its workers' logs under session_latest/logs), gone after it."""
    path = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths under it have a length limit
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_address(ray_files: Path) -> Iterator[str]:
    """One local Ray head shared by the session's Ray tests (each start takes seconds): a sweep
    joins it with `--address`. Its workers import this checkout (the tests' probe plugins too);
    it takes drivers without Ray's token (a test cluster of this machine's, gone with the session)."""
    pytest.importorskip("ray")
    head = subprocess.Popen([sys.executable, "-c", _RAY_HEAD, str(ray_files)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"})
    assert head.stdout is not None and head.stdin is not None
    try:
        address = next((line.split()[-1] for line in head.stdout if line.startswith("ray head at ")), None)
        assert address, "the Ray head did not start"
        yield address
    finally:
        head.stdin.close()  # the head shuts its Ray down and exits
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
