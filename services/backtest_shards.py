"""Backtest strategy links spread over processes: each shard is a forked process that builds and
runs an OperationService for its share of the links, replaying the data itself, so N links use
up to N cores instead of one.

Invariants:
- The same runs as in one process: every shard builds everything before any shard starts
  (`ready`), and a config error in any shard stops them all before a single tick (the
  `file: key: reason` of the first one is raised, as in one process).
- Every log line of a shard reaches the parent's logging, whole and unchanged but for its
  timestamp, so log files per link, the log format and the log level work as in one process.
- A stop request (the parent's stop event) reaches every shard; a shard whose process dies is
  reported as a failure of each of its links, and the other shards go on.
- Summaries come back in the operation file's link order.

Shards are forked (Linux): a child starts at once, with the parent's imports and plugins, before
the parent starts a thread of its own.
"""

import json
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from backend.config import LoadedOperation, ResolvedLink
from backend.config.schema import BacktestEnvironment
from backend.errors import ConfigError
from backend.portfolio import AccountSummary
from services.progress import candles_replayed
from services.strategy_run import RunStatus, RunSummary

if TYPE_CHECKING:
    from services.environment_feed import EnvironmentFeed
    from services.operation_service import OperationService

log = structlog.get_logger(__name__)

STOP_CHECK_SECONDS = 0.1
PROGRESS_SECONDS = 0.5  # how often a shard tells how far its feeds are


class RunObserver(Protocol):
    """Something a shard attaches to its runs before they start, and whose findings per link (plain,
    picklable values) it sends back with the summaries; e.g. a sweep's performance figures."""

    def attach(self, service: "OperationService") -> None: ...

    def results(self) -> dict[str, Any]: ...


def shardable(operation: LoadedOperation) -> bool:
    """Only backtests are sharded: live links share exchange clients and nonces in one process."""
    return all(isinstance(link.environment, BacktestEnvironment) for link in operation.links)


def split_links(links: list[ResolvedLink], shards: int) -> list[list[ResolvedLink]]:
    """At most `shards` non-empty groups, links dealt round-robin in file order."""
    count = max(1, min(shards, len(links)))
    return [links[start::count] for start in range(count)]


@dataclass
class _Shard:
    links: list[ResolvedLink]
    process: Any  # multiprocessing's forked Process
    connection: Connection
    replayed: Any  # multiprocessing's shared Array('q', 2): the shard's (ticks sent, ticks to send)
    ready: bool = False
    config_error: ConfigError | None = None
    summaries: list[RunSummary] | None = None
    feed_errors: tuple[str, ...] = ()
    observed: dict[str, Any] = field(default_factory=dict)
    crash: str | None = None


class ShardedBacktest:
    """The links of a backtest-only operation over `processes` processes; the parent only waits,
    forwards log lines and gathers summaries."""

    def __init__(self, operation: LoadedOperation, processes: int, stop_event: threading.Event,
                 log_level: str, observer: Callable[[], RunObserver] | None = None,
                 shards: list[list[ResolvedLink]] | None = None) -> None:
        """observer: made in each shard, attached to its service; shards: the links of each process
        (default: the operation's links dealt round-robin over `processes`)."""
        self.operation = operation
        self.stop_event = stop_event
        context = multiprocessing.get_context("fork")
        self._go = context.Event()
        self._stop = context.Event()
        self._shards: list[_Shard] = []
        for links in shards or split_links(operation.links, processes):
            parent_end, child_end = context.Pipe(duplex=False)
            replayed = context.Array("q", 2, lock=False)  # written by the shard alone
            part = replace(operation, links=links)
            process = context.Process(target=_run_shard,
                                      args=(part, child_end, self._go, self._stop, log_level, observer, replayed),
                                      name=f"shard:{len(self._shards)}", daemon=True)
            process.start()
            child_end.close()  # the parent keeps only its reading end: EOF once the child is gone
            self._shards.append(_Shard(links, process, parent_end, replayed))
        self._readers = [threading.Thread(target=self._read, args=(shard,), daemon=True,
                                          name=f"shard-reader:{index}") for index, shard in enumerate(self._shards)]
        for reader in self._readers:
            reader.start()

    def prepare(self) -> None:
        """Wait until every shard has built its runs; the first config error stops them all and is raised."""
        while not all(shard.ready or shard.config_error or shard.crash for shard in self._shards):
            if self.stop_event.wait(STOP_CHECK_SECONDS):
                break
        failed = next((shard.config_error for shard in self._shards if shard.config_error), None)
        if failed is not None:
            self.abort()
            raise failed

    def abort(self) -> None:
        """Stop every shard (before or after the start) and wait for their processes."""
        self._stop.set()
        self._go.set()
        self._join()

    def run(self) -> list[RunSummary]:
        self.start()
        return self.wait()

    def start(self) -> None:
        log.info("backtest_shards_started", processes=len(self._shards),
                 shards=[[link.link_id for link in shard.links] for shard in self._shards])
        self._go.set()

    def request_reload(self, _trigger: str) -> None:
        log.warning("operation_reload_rejected",
                    reason="a backtest spread over processes (--processes) is not reloaded")

    def wait(self) -> list[RunSummary]:
        """Once every shard has ended (a stop request passed on to them meanwhile)."""
        while any(reader.is_alive() for reader in self._readers):
            if self.stop_event.is_set():
                self._stop.set()
            for reader in self._readers:
                reader.join(STOP_CHECK_SECONDS / len(self._readers))
        self._join()
        by_link = {summary.strategy_link: summary for shard in self._shards for summary in self._summaries(shard)}
        return [by_link[link.link_id] for link in self.operation.links]

    @property
    def feeds(self) -> list["EnvironmentFeed"]:
        """None in this process: each shard replays the data itself (and logs its progress)."""
        return []

    def candles_replayed(self) -> tuple[int, int]:
        """(ticks sent, ticks to send) over every shard's feeds, as the shards last said (each
        every PROGRESS_SECONDS)."""
        sent = total = 0
        for shard in self._shards:
            sent, total = sent + shard.replayed[0], total + shard.replayed[1]
        return sent, total

    @property
    def feed_errors(self) -> list[str]:
        return [error for shard in self._shards for error in shard.feed_errors]

    @property
    def observed(self) -> dict[str, Any]:
        """What each shard's observer found, by link (nothing for a shard that died)."""
        return {link: found for shard in self._shards for link, found in shard.observed.items()}

    def _join(self) -> None:
        for shard in self._shards:
            shard.process.join()
        for reader in self._readers:
            reader.join()

    def _summaries(self, shard: _Shard) -> list[RunSummary]:
        if shard.summaries is not None:
            return shard.summaries
        reason = shard.crash or f"shard process ended with exit code {shard.process.exitcode} before reporting"
        log.error("backtest_shard_failed", strategy_links=[link.link_id for link in shard.links], error=reason)
        return [failed_summary(link, reason) for link in shard.links]

    def _read(self, shard: _Shard) -> None:
        """Forward the shard's log lines and take its reports until its end of the pipe closes."""
        forward = structlog.get_logger("shard")
        while True:
            try:
                message = shard.connection.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "log":
                _forward_line(forward, message[1])
            elif kind == "ready":
                shard.ready = True
            elif kind == "config_error":
                shard.config_error = ConfigError(*message[1:])
            elif kind == "crash":
                shard.crash = message[1]
            elif kind == "done":
                shard.summaries, shard.feed_errors, shard.observed = message[1], tuple(message[2]), message[3]
        shard.connection.close()
        if shard.summaries is None and shard.crash is None:
            shard.process.join()
            shard.crash = _describe_exit(shard.process.exitcode)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"shard process killed by {signal.Signals(-exitcode).name}"
    return f"shard process ended with exit code {exitcode} before reporting"


def _forward_line(logger: Any, line: str) -> None:
    """A shard's JSON line logged again by the parent at its own level (its timestamp is the parent's)."""
    try:
        event = json.loads(line)
    except ValueError:
        return
    level = str(event.pop("level", "info"))
    name = str(event.pop("event", "shard_log_line"))
    event.pop("timestamp", None)
    getattr(logger, level if level in ("debug", "info", "warning", "error", "critical") else "info")(name, **event)


def failed_summary(link: ResolvedLink, reason: str) -> RunSummary:
    """The summary of a link whose run was lost with its process: nothing known of it but why."""
    capital = link.environment.starting_capital
    return RunSummary(
        strategy_link=link.link_id, blueprint=link.link.strategy_blueprint_id,
        environment=link.link.execution_environment_id, status=RunStatus.FAILED, ticks_processed=0,
        account=AccountSummary(trades=0, fees_paid=0.0, final_equity=capital, pnl=0.0, pnl_pct=0.0,
                               max_drawdown_pct=0.0),
        error=reason,
    )


# --- the child's side ------------------------------------------------------------------------------


class _PipeStream:
    """What logging writes to, in a shard: each line sent to the parent as it is."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def write(self, text: str) -> None:
        self._connection.send(("log", text.rstrip("\n")))

    def flush(self) -> None:
        pass


def _run_shard(operation: LoadedOperation, connection: Connection, go: Any, stop: Any, log_level: str,
               observer_factory: Callable[[], RunObserver] | None, replayed: Any) -> None:
    """In the forked child: build, report ready, wait for go, run, report the summaries."""
    from services.logging_setup import configure_logging
    from services.operation_service import OperationService

    # The terminal's Ctrl-C reaches the whole process group: the parent decides, through `stop`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a backtest over processes is not reloaded
    local_stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: local_stop.set())
    configure_logging("json", log_level, stream=_PipeStream(connection),  # type: ignore[arg-type]
                      on_broken=local_stop.set)
    parent = os.getppid()
    try:
        service = OperationService(operation, stop_event=local_stop)
    except ConfigError as exc:
        connection.send(("config_error", exc.file, exc.reason, exc.key))
        return
    except Exception as exc:
        connection.send(("crash", f"{type(exc).__name__}: {exc}"))
        return
    observer = observer_factory() if observer_factory is not None else None
    if observer is not None:
        observer.attach(service)
    connection.send(("ready",))
    _watch(lambda: stop.is_set() or os.getppid() != parent, local_stop)
    while not go.wait(STOP_CHECK_SECONDS):
        if local_stop.is_set():
            return
    if stop.is_set() or local_stop.is_set():  # an abort sets stop, then go
        return
    ended = threading.Event()
    _tell_replayed(service, replayed, ended)
    summaries = service.run()
    ended.set()
    connection.send(("done", summaries, service.feed_errors, observer.results() if observer is not None else {}))


def _tell_replayed(service: "OperationService", replayed: Any, ended: threading.Event) -> None:
    """A thread that keeps replayed (shared with the parent) at the service's (ticks sent, ticks to
    send) until ended."""

    def tell() -> None:
        while not ended.wait(PROGRESS_SECONDS):
            replayed[0], replayed[1] = candles_replayed(service.feeds)

    threading.Thread(target=tell, name="shard-progress", daemon=True).start()


def _watch(stop_requested: Callable[[], bool], local_stop: threading.Event) -> None:
    """A thread that sets local_stop once the parent asks for a stop or is gone."""

    def watch() -> None:
        while not local_stop.wait(STOP_CHECK_SECONDS):
            if stop_requested():
                local_stop.set()

    threading.Thread(target=watch, name="shard-stop-watch", daemon=True).start()
