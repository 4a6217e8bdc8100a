"""structlog setup: JSON lines (default) or a console format, secrets masked either way."""

import logging
import re
import sys
from collections.abc import MutableMapping
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


def configure_logging(
    log_format: Literal["json", "console"] = "json",
    level: str = "info",
    stream: TextIO | None = None,
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
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
