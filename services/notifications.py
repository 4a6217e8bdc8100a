"""Notifications: chosen log events sent through apprise (webhooks, Telegram, Discord, Slack,
e-mail, ntfy...) to the targets the operation file's `notifications:` names.

Invariants: nothing here delays or fails the thread that logs. An event is handed to each target
it is routed to by a non-blocking append to that target's bounded queue (when full, the oldest is
dropped, counted and reported as `notification_dropped`); each target sends from its own daemon
thread, at most `max_per_minute` in any 60 s (the excess is counted and announced as one summary
once the window allows), each send bounded by `timeout_seconds`; a send that fails is logged as
`notification_failed`. The events of backtest environments' runs are not sent (a replay is not
news), and an operation of backtests only sends nothing. A target is named everywhere by its
environment variable: its URL (which holds tokens) is read once at start and never logged,
printed or put in an error.
"""

import contextlib
import contextvars
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import structlog

from backend.config import BacktestEnvironment, LoadedOperation
from backend.config.schema import NotificationTarget
from backend.errors import ConfigError
from services.logging_setup import forward_events_to

log = structlog.get_logger(__name__)

# The log events behind each `events:` name of the operation file.
LOG_EVENTS: dict[str, str] = {
    "order_filled": "fill",
    "strategy_run_failed": "run_failed",
    "strategy_run_stalled": "run_stalled",
    "market_data_stale": "feed_stale",
    "reconciliation_mismatch": "reconciliation_mismatch",
    "operation_started": "daemon_started",
    "operation_finished": "daemon_stopped",
}
# apprise's notification types: how a service shows the message (its colour or icon).
SEVERITY = {"run_failed": "failure", "run_stalled": "failure", "reconciliation_mismatch": "failure",
            "feed_stale": "warning", "fill": "success"}

QUEUE_SIZE = 100  # per target: waiting notifications beyond this push out the oldest
RATE_WINDOW_SECONDS = 60.0  # `max_per_minute` counts the sends of this long a window
_NOT_IN_BODY = frozenset({"event", "timestamp", "level", "logger", "exc_info", "exception", "stack_info"})


@dataclass(frozen=True)
class Target:
    """A checked `notifications[i]`: the apprise service its URL made, and the URL, kept only to
    mask its parts in apprise's error messages."""

    config: NotificationTarget
    service: Any  # an apprise plugin instance
    url: str

    @property
    def name(self) -> str:
        return self.config.url_env


def resolve_targets(operation: LoadedOperation, environ: Mapping[str, str] = os.environ) -> list[Target]:
    """Each `notifications:` entry with its URL read from its variable and checked by apprise; a
    variable unset or empty, or holding what apprise does not take as a URL, is a ConfigError
    naming the variable (never its value)."""
    if not operation.config.notifications:
        return []
    import apprise  # here: importing its plugins takes a while, and only operations that notify need it

    _keep_apprise_logs_off_stderr()
    targets = []
    for index, config in enumerate(operation.config.notifications):
        key = f"notifications[{index}].url_env"
        url = environ.get(config.url_env, "").strip()
        if not url:
            raise ConfigError(operation.path, f"environment variable {config.url_env} is not set or empty", key)
        service = apprise.Apprise.instantiate(url, asset=_asset(apprise))
        if service is None:
            raise ConfigError(operation.path, f"environment variable {config.url_env} does not hold a URL apprise "
                                              "accepts (its value is not shown)", key)
        # apprise's own timeouts (4 s each by default): connecting, then waiting for the answer.
        service.socket_connect_timeout = service.socket_read_timeout = config.timeout_seconds
        targets.append(Target(config, service, url))
    return targets


def _asset(apprise: Any) -> Any:
    """Sending in the channel's own (daemon) thread: apprise 2 otherwise sends from a thread pool
    the interpreter waits for at exit, so a receiver that hangs would hold the daemon's exit."""
    try:
        return apprise.AppriseAsset(service_timeout=0)  # apprise 2: 0 = no pool, no deadline of its own
    except (TypeError, AttributeError):  # apprise 1 has no such setting and always sends in the caller's thread
        return apprise.AppriseAsset()


@dataclass(frozen=True)
class Notification:
    kind: str  # an `events:` name, or "rate_limited" for a summary
    title: str
    body: str
    severity: str = "info"


def notification_of(operation_name: str, kind: str, event: Mapping[str, Any]) -> Notification:
    """The log line as a message: its event name, fields and time."""
    fields = " ".join(f"{name}={_text(value)}" for name, value in event.items() if name not in _NOT_IN_BODY)
    return Notification(kind, f"{operation_name}: {kind}", f"{event.get('event')} {fields} at {event.get('timestamp')}",
                        SEVERITY.get(kind, "info"))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(value)


class Channel:
    """One target: its queue, its thread and its rate limit."""

    def __init__(self, target: Target, operation_name: str) -> None:
        import apprise

        self.target = target
        self.events = frozenset(target.config.events)
        self._operation_name = operation_name
        self._sender = apprise.Apprise()
        self._sender.add(target.service)
        self._queue: deque[Notification] = deque()
        self._wake = threading.Condition()
        self._dropped = 0
        self._closing = False
        self._sent_at: deque[float] = deque()  # only the thread touches these two
        self._held_back: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name=f"notify-{target.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, notification: Notification) -> None:
        """Queue it without waiting (the caller is the thread that logs: a tick, a feed)."""
        with self._wake:
            if self._closing:
                return
            if len(self._queue) >= QUEUE_SIZE:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(notification)
            self._wake.notify()

    def close(self, deadline: float) -> None:
        """Send what is queued until the monotonic deadline; then what is left is dropped, and the
        thread (a daemon) ends once the send it is in returns."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            with self._wake:
                pending = len(self._queue)
                self._queue.clear()
            log.warning("notifications_not_flushed", target=self.target.name, pending=pending)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._queue or self._closing or self._summary_due()):
                    self._wake.wait(self._seconds_until_room() if self._held_back else None)
                notification = self._queue.popleft() if self._queue else None
                dropped, self._dropped = self._dropped, 0
                closing = self._closing
            if dropped:
                log.warning("notification_dropped", target=self.target.name, dropped=dropped, reason="queue_full")
            if self._summary_due():
                self._send(self._summary())
            if notification is not None:
                if self._has_room():
                    self._send(notification)
                else:
                    self._held_back[notification.kind] += 1
            elif closing:
                if self._held_back:
                    log.warning("notification_dropped", target=self.target.name,
                                dropped=self._held_back.total(), reason="rate_limited")
                return

    def _has_room(self) -> bool:
        now = time.monotonic()
        while self._sent_at and self._sent_at[0] <= now - RATE_WINDOW_SECONDS:
            self._sent_at.popleft()
        return len(self._sent_at) < self.target.config.max_per_minute

    def _summary_due(self) -> bool:
        return bool(self._held_back) and self._has_room()

    def _seconds_until_room(self) -> float:
        return max(0.01, self._sent_at[0] + RATE_WINDOW_SECONDS - time.monotonic()) if self._sent_at else 0.01

    def _summary(self) -> Notification:
        counts = ", ".join(f"{kind} x{count}" for kind, count in self._held_back.items())
        total = self._held_back.total()
        self._held_back.clear()
        return Notification(
            "rate_limited", f"{self._operation_name}: notifications held back",
            f"{total} notification{'s' if total > 1 else ''} held back by max_per_minute "
            f"{self.target.config.max_per_minute}: {counts} (the log has them all)", "warning")

    def _send(self, notification: Notification) -> None:
        self._sent_at.append(time.monotonic())
        warnings: list[str] = []
        kept = _apprise_warnings.set(warnings)
        try:
            delivered = bool(self._sender.notify(body=notification.body, title=notification.title,
                                                 notify_type=notification.severity))
        except Exception as exc:  # a plugin's bug must not end the thread
            delivered = False
            warnings.append(type(exc).__name__)
        finally:
            _apprise_warnings.reset(kept)
        if not delivered:
            reason = warnings[-1] if warnings else "the service did not take it"
            log.warning("notification_failed", target=self.target.name, notification=notification.kind,
                        error=masked(reason, self.target.url))


class Notifier:
    """Routes the logged events to the channels that want them (the logging sink)."""

    def __init__(self, operation_name: str, targets: list[Target], flush_seconds: float,
                 backtest_environments: frozenset[str]) -> None:
        """backtest_environments: the ids of the environments whose runs' events are not sent."""
        self.channels = [Channel(target, operation_name) for target in targets]
        self._operation_name = operation_name
        self._flush_seconds = flush_seconds
        self._backtest_environments = backtest_environments
        # log event -> (its `events:` name, the channels that want it)
        self._routes = {log_event: (kind, [channel for channel in self.channels if kind in channel.events])
                        for log_event, kind in LOG_EVENTS.items()}

    @classmethod
    def for_operation(cls, operation: LoadedOperation) -> "Notifier | None":
        """None when the operation notifies nobody (it has no target, or no live or paper link); a
        ConfigError for a target that is not usable."""
        targets = resolve_targets(operation)
        if not targets:
            return None
        backtests = frozenset(link.link.execution_environment_id for link in operation.links
                              if isinstance(link.environment, BacktestEnvironment))
        if all(link.link.execution_environment_id in backtests for link in operation.links):
            log.warning("option_ignored", option="notifications",
                        reason="the operation has no live or paper link, and a backtest's events are not sent")
            return None
        return cls(operation.config.display_name, targets, operation.config.shutdown_timeout_seconds, backtests)

    def __call__(self, event: Mapping[str, Any]) -> None:
        kind, channels = self._routes.get(str(event.get("event")), ("", []))
        if not channels or event.get("environment") in self._backtest_environments:  # a replay is not news
            return
        notification = notification_of(self._operation_name, kind, event)
        for channel in channels:
            channel.offer(notification)

    def start(self) -> None:
        for channel in self.channels:
            channel.start()
        forward_events_to(self)

    def close(self) -> None:
        """Stop taking events; send what is queued for at most the operation's shutdown timeout."""
        forward_events_to(None)
        deadline = time.monotonic() + self._flush_seconds
        for channel in self.channels:
            channel.close(deadline)


# --- apprise's own log lines -------------------------------------------------------------------

# The warnings apprise logs while one send is under way (its context is copied into the threads
# apprise may send from), the last one being the reason a send failed.
_apprise_warnings: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("apprise_warnings", default=None)


class _KeepWarnings(logging.Handler):
    """Keeps apprise's warnings for the send under way; prints nothing (stderr holds JSON lines only)."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            warnings = _apprise_warnings.get()
            if warnings is not None:
                warnings.append(record.getMessage())


def _keep_apprise_logs_off_stderr() -> None:
    """apprise's lines only ever reach _KeepWarnings, even where the root logger prints."""
    logger = logging.getLogger("apprise")
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    if not any(isinstance(handler, _KeepWarnings) for handler in logger.handlers):
        logger.addHandler(_KeepWarnings())


def masked(text: str, url: str) -> str:
    """text without any part of url that may be secret: host, user, password, path segments, query
    values and fragment (a webhook's or a bot's token is in one of those, e.g. tgram://TOKEN/CHAT)."""
    parts = urlsplit(url)
    secrets = [parts.hostname, parts.username, parts.password, *parts.path.split("/"), parts.fragment,
               *(value for _name, value in parse_qsl(parts.query))]
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
