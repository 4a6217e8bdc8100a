"""structlog setup: JSON lines (default) or a console format, secrets masked either way.

Invariant: logging never raises and never blocks for good in the caller's thread. A write that
fails (closed pipe, closed file) marks the stream broken, later lines are dropped, and the
`on_broken` callback runs once so the daemon can stop cleanly instead of running blind.
"""

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

SECRET_KEY = re.compile(r"(secret|api_?key|password|token|signature)", re.IGNORECASE)
LOG_LEVELS = ("debug", "info", "warning", "error")


def mask_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every field whose name looks like a credential."""
    for key in event:
        if SECRET_KEY.search(key):
            event[key] = "***"
    return event


def silence_if_standard_stream(stream: TextIO | None) -> None:
    """Point a broken stdout/stderr at /dev/null, so that the interpreter's final flush does not
    print 'Exception ignored ... BrokenPipeError' on the way out."""
    for name in ("stdout", "stderr"):
        if stream is not None and stream is getattr(sys, name):
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass


class GuardedStream:
    """Writes whole lines to one stream under a lock; the first failure makes it broken for good."""

    def __init__(self, stream: TextIO | None, on_broken: Callable[[], None] | None = None) -> None:
        self._stream = stream
        self._on_broken = on_broken
        self._lock = threading.RLock()  # re-entrant: a signal handler may log mid-write
        self.broken = stream is None  # e.g. started with `2>&-`

    def write_line(self, line: str) -> None:
        with self._lock:
            if self.broken:
                return
            try:
                self._stream.write(line + "\n")  # type: ignore[union-attr]
                self._stream.flush()  # type: ignore[union-attr]
                return
            except (OSError, ValueError):  # EPIPE, EBADF, "I/O operation on closed file"
                self.broken = True
        silence_if_standard_stream(self._stream)
        if self._on_broken is not None:
            self._on_broken()


class GuardedLogger:
    """The structlog output end for a GuardedStream: every level writes one rendered line."""

    def __init__(self, stream: GuardedStream) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        self._stream.write_line(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def configure_logging(
    log_format: Literal["json", "console"] = "json",
    level: str = "info",
    stream: TextIO | None = None,
    on_broken: Callable[[], None] | None = None,
) -> None:
    renderer: Any
    # Tracebacks never show local variables: they may hold credentials.
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        tracebacks: list[Any] = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
        tracebacks = []
    output = GuardedLogger(GuardedStream(stream or sys.stderr, on_broken))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_secrets,
            *tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=lambda *_args: output,
        cache_logger_on_first_use=False,
    )
