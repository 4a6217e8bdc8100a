"""structlog setup: JSON lines (default) or a console format, secrets masked either way.

Invariant: logging never raises and never blocks for good in the caller's thread. A write that
fails (closed pipe, closed file) marks the stream broken, later lines are dropped, and the
`on_broken` callback runs once so the daemon can stop cleanly instead of running blind.

With a log dir (`LogFiles`), every line is also written, always as JSON, to one file per strategy
link and to `daemon.jsonl`, each rotated by size. A file write that fails drops that file only:
it is reported once (`log_file_unavailable`) and the daemon keeps running on the other streams.

Libraries' own warnings and errors (standard `logging`) become `library_log` events, so stderr
stays JSON lines (with `--log-format json`) whatever a library reports.

`forward_events_to` hands every line's event (secrets masked) to one more sink, the notifier, in
the thread that logs it: the sink must return at once; anything it raises is swallowed.

`stderr_lines_to` sends the stderr lines elsewhere for a while (the progress bars print them above
themselves) and can hide some events from stderr only: the log files still get every line.
"""

import contextlib
import contextvars
import logging
import logging.handlers
import os
import re
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from backend.redaction import MASK, without_url_credentials

SECRET_KEY = re.compile(r"(secret|api_?key|password|token|signature)", re.IGNORECASE)


def mask_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every field whose name looks like a credential, and the
    `user:password@` part of any URL in a text field."""
    for key, value in event.items():
        if SECRET_KEY.search(key):
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = without_url_credentials(value)
    return event


class _LibraryLogBridge(logging.Handler):
    """Warnings and errors of libraries' standard loggers (asyncio, aiohttp, urllib3...) as log
    events of their own (`library_log`), never as plain text or a traceback on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            error = record.exc_info[1] if record.exc_info else None
            structlog.get_logger(record.name).log(
                record.levelno, "library_log", logger=record.name, message=record.getMessage(),
                **({"error": f"{type(error).__name__}: {error}"} if error is not None else {}))
        except Exception:  # logging never raises in the caller
            pass


def _bridge_library_logs() -> None:
    """Route the standard loggers' WARNING and above through structlog (once, however often
    logging is configured)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _LibraryLogBridge)]:
        root.removeHandler(handler)
    root.addHandler(_LibraryLogBridge(logging.WARNING))


class LineStream(Protocol):
    """Where log lines are written: a text file such as stderr, or anything that prints text."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def silence_if_standard_stream(stream: LineStream | None) -> None:
    """Point a broken stdout/stderr at /dev/null, so that the interpreter's final flush does not
    print 'Exception ignored ... BrokenPipeError' on the way out."""
    for name in ("stdout", "stderr"):
        if stream is not None and stream is getattr(sys, name):
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, getattr(sys, name).fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass


class GuardedStream:
    """Writes whole lines to one stream under a lock; the first failure makes it broken for good."""

    def __init__(self, stream: LineStream | None, on_broken: Callable[[], None] | None = None) -> None:
        self._stream = stream
        self._on_broken = on_broken
        self._lock = threading.RLock()  # re-entrant: a signal handler may log mid-write
        self.broken = stream is None  # e.g. started with `2>&-`

    def swap(self, stream: LineStream) -> LineStream | None:
        """Write to stream from now on; the stream written to until now."""
        with self._lock:
            previous, self._stream = self._stream, stream
            return previous

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


DAEMON_LOG = "daemon"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")


def safe_file_stem(link_id: str) -> str:
    """A link id made a filesystem-safe name: any character other than letters, digits, `.`, `_`,
    `-`, `@` becomes `_`; never a hidden file."""
    name = _UNSAFE.sub("_", link_id)
    return "_" + name if name.startswith(".") else name


def log_file_name(link_id: str) -> str:
    """A link's log file: `ict_smc_strategy@live_kraken_main` -> `....jsonl`."""
    name = safe_file_stem(link_id)
    if name == DAEMON_LOG:  # never the daemon's own file
        name = "_" + name
    return name + ".jsonl"


class _FileWriteError(Exception):
    pass


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """The stdlib size rotation, with a failure raised to the caller instead of printed."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (stdlib name)
        raise _FileWriteError(str(sys.exc_info()[1]))


class LogFiles:
    """The structlog processor writing each line, as JSON, to the files it belongs to:
    a line with `strategy_link` to that link's file; a line with `strategy_links` (an environment
    feed's, or the operation's) to each listed link's file and to `daemon.jsonl`; any other line to
    `daemon.jsonl`. Link files are opened at their first line; a file that cannot be opened or
    written is closed, dropped and reported once as `log_file_unavailable` on the other streams."""

    def __init__(self, directory: Path, max_bytes: int, backups: int) -> None:
        """Creates the directory and opens `daemon.jsonl`: an OSError here is the caller's to report."""
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.RLock()
        self._files: dict[str, _RotatingFile | None] = {}  # None: dropped for good
        self._closed = False
        self._render_exception = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        self._render = structlog.processors.JSONRenderer()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._files[DAEMON_LOG] = self._open(DAEMON_LOG)

    def _open(self, key: str) -> _RotatingFile:
        name = DAEMON_LOG + ".jsonl" if key == DAEMON_LOG else log_file_name(key)
        handler = _RotatingFile(self.directory / name, maxBytes=self.max_bytes, backupCount=self.backups,
                                encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        return handler

    @staticmethod
    def targets(event: MutableMapping[str, Any]) -> list[str]:
        link = event.get("strategy_link")
        if isinstance(link, str):
            return [link]
        links = event.get("strategy_links")
        if isinstance(links, list | tuple):
            return [*(str(item) for item in links), DAEMON_LOG]
        return [DAEMON_LOG]

    def __call__(self, _logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        try:
            line = self._render(None, method, self._render_exception(None, method, dict(event)))
        except Exception:  # an unserialisable field must not stop the stderr line
            return event
        failures: list[tuple[str, str]] = []
        with self._lock:
            if self._closed:
                return event
            record = logging.makeLogRecord({"msg": line})
            for key in dict.fromkeys(self.targets(event)):
                failure = self._write(key, record)
                if failure is not None:
                    failures.append(failure)
        for path, error in failures:  # after the lock; in an empty context: a daemon line, not a link's
            contextvars.Context().run(
                structlog.get_logger("logging").error, "log_file_unavailable", path=path, error=error
            )
        return event

    def _write(self, key: str, record: logging.LogRecord) -> tuple[str, str] | None:
        """None on success or when the file was dropped before; (path, error) when it fails now."""
        if key in self._files and self._files[key] is None:
            return None
        handler = self._files.get(key)
        path = str(self.directory / (DAEMON_LOG + ".jsonl" if key == DAEMON_LOG else log_file_name(key)))
        try:
            if handler is None:
                handler = self._files[key] = self._open(key)
            handler.handle(record)
            return None
        except (_FileWriteError, OSError, ValueError) as exc:
            self._files[key] = None
            if handler is not None:
                with contextlib.suppress(OSError, ValueError):
                    handler.close()
            return path, str(exc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for handler in self._files.values():
                if handler is not None:
                    with contextlib.suppress(OSError, ValueError):
                        handler.close()


EventSink = Callable[[Mapping[str, Any]], None]
_event_sink: EventSink | None = None


def forward_events_to(sink: EventSink | None) -> None:
    """From now on, also hand every logged event to sink (None: to nobody)."""
    global _event_sink
    _event_sink = sink


def _forward_to_sink(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    sink = _event_sink
    if sink is not None:
        with contextlib.suppress(Exception):  # the line is written whatever the sink does
            sink(event)
    return event


_active_files: LogFiles | None = None
_stderr: GuardedStream | None = None  # the configuration's stderr stream
_hidden_on_stderr: frozenset[str] = frozenset()


def _hide_on_stderr(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop the events stderr does not show now (after the log files have their line)."""
    if event.get("event") in _hidden_on_stderr:
        raise structlog.DropEvent
    return event


@contextlib.contextmanager
def hidden_on_stderr(events: Collection[str]) -> Iterator[None]:
    """While inside, these events are written to the log files (--log-dir) only, not to stderr."""
    global _hidden_on_stderr
    before = _hidden_on_stderr
    _hidden_on_stderr = before | frozenset(events)
    try:
        yield
    finally:
        _hidden_on_stderr = before


@contextlib.contextmanager
def stderr_lines_to(stream: LineStream, hidden_events: Collection[str] = ()) -> Iterator[None]:
    """While inside, the log lines meant for stderr are written to stream instead (e.g. printed
    above progress bars), except hidden_events, which the log files (--log-dir) still get."""
    if _stderr is None:
        raise RuntimeError("configure_logging() first")
    output = _stderr
    previous = output.swap(stream)
    try:
        with hidden_on_stderr(hidden_events):
            yield
    finally:
        if previous is not None:
            output.swap(previous)


def configure_logging(
    log_format: Literal["json", "console"] = "json",
    level: str = "info",
    stream: TextIO | None = None,
    on_broken: Callable[[], None] | None = None,
    files: LogFiles | None = None,
) -> None:
    """`files`: also write every line to the log dir (the previous configuration's files are closed)."""
    global _active_files, _stderr
    if _active_files is not None and _active_files is not files:
        _active_files.close()
    _active_files = files
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
    _stderr = GuardedStream(stream or sys.stderr, on_broken)
    output = GuardedLogger(_stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_secrets,
            _forward_to_sink,
            *([files] if files is not None else []),
            _hide_on_stderr,
            *tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=lambda *_args: output,
        cache_logger_on_first_use=False,
    )
    _bridge_library_logs()
