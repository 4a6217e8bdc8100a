"""The daemon's domain layer. Run before any of its modules: structlog, imported by many of them,
is refused rich from here on (backend.structlog_without_rich)."""

from backend.structlog_without_rich import refuse_rich_to_structlog

refuse_rich_to_structlog()
