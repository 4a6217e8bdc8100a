"""Event loops whose unhandled errors are log events, not tracebacks on stderr.

Invariant: every asyncio loop the daemon runs is made by `new_event_loop()`; an error no task or
callback handled (e.g. ccxt's websocket receive loop failing on a malformed frame) becomes one
`event_loop_error` event through structlog, never asyncio's default handler, which prints a
plain-text traceback that breaks the one-JSON-object-per-line log.
"""

import asyncio
from typing import Any

import structlog

log = structlog.get_logger(__name__)


def new_event_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(log_loop_error)
    return loop


def log_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    where = context.get("handle") or context.get("future") or context.get("task")
    log.error("event_loop_error", message=context.get("message", ""),
              error=f"{type(error).__name__}: {error}" if error is not None else None,
              where=repr(where)[:200] if where is not None else None, exc_info=error)
