"""The daemon's application layer (CLI, operation service, status server, research, report). Run
before any of its modules: structlog is refused rich from here on (backend.structlog_without_rich)."""

from backend.structlog_without_rich import refuse_rich_to_structlog

refuse_rich_to_structlog()
