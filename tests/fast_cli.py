"""`run-operation` exactly as services.cli runs it, except that ccxt paces requests to Kraken 1 ms
per cost unit instead of 1 s (the local fake has no rate limit; Kraken's real pacing would make
every end-to-end test take minutes): python -m tests.fast_cli OPERATION [flags]."""

import sys
from typing import Any

from backend.venues.kraken.client import AccountClient
from services.cli import main

FAST_RATE_LIMIT_MS = 1


def _fast_init(self: AccountClient, config: dict[str, Any], *args: Any, _init: Any = AccountClient.__init__) -> None:
    _init(self, {**config, "rateLimit": FAST_RATE_LIMIT_MS}, *args)


if __name__ == "__main__":
    AccountClient.__init__ = _fast_init  # type: ignore[method-assign]
    sys.exit(main())
