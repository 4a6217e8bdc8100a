"""`run-operation` with the test-only `probe` plugin registered, for end-to-end tests that need a
real process (signals, pipes): python -m tests.probe_cli OPERATION [flags]."""

import sys

from backend.workers.registry import PLUGINS
from services.cli import main
from tests.probes import Probe

if __name__ == "__main__":
    PLUGINS["probe"] = Probe
    sys.exit(main())
