"""One strategy run: its own bounded tick queue, consumed in its own thread.

Invariants: the consuming thread never dies outside its error handling; a run that is failed,
stalled or stopping never makes the feed wait (`submit` returns False); once the stop event is
set, the run ends after its current tick and queued ticks are discarded, never traded; once a
run is declared stalled, the workers left in its current tick never run and it takes no tick again.
"""

import queue
import threading
import time
from bisect import bisect_left
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum

import structlog

from backend.config import StrategyLink
from backend.errors import OpdaemonError
from backend.market_data import RawTick
from backend.portfolio import AccountSummary
from services.tick_cache_manager import TickCacheManager

log = structlog.get_logger(__name__)

QUEUE_POLL_SECONDS = 0.1  # how often a waiting feed or an idle run looks at the stop event
# Upper bounds (seconds) of the tick latency histogram the status server exports; +Inf is implied.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"  # its environment's data ended
    STOPPED = "stopped"  # shut down on request after its current tick; queued ticks discarded
    FAILED = "failed"  # a worker raised; the run stopped, the others go on
    STALLED = "stalled"  # one tick took longer than the stall limit; the run was abandoned

    @property
    def ended(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


@dataclass(frozen=True)
class _End:
    status: RunStatus


@dataclass(frozen=True)
class RunSummary:
    strategy_link: str
    blueprint: str
    environment: str
    status: RunStatus
    ticks_processed: int
    account: AccountSummary
    error: str | None
    # Orders that did not fill since start: rejected by the venue, outcome unknown, or skipped
    # (no new buys while paused or while an order is unknown).
    orders_rejected: int = 0
    orders_unknown: int = 0
    orders_skipped: int = 0

    @property
    def failed(self) -> bool:
        return self.status in (RunStatus.FAILED, RunStatus.STALLED)

    def as_log_fields(self) -> dict:
        fields = asdict(self)
        fields.update(fields.pop("account"))
        fields["status"] = self.status.value
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in fields.items()}


class StrategyRun:
    def __init__(
        self,
        link: StrategyLink,
        tick_manager: TickCacheManager,
        stop: threading.Event,
        queue_size: int = 1024,
    ) -> None:
        self.blueprint_id = link.strategy_blueprint_id
        self.environment_id = link.execution_environment_id
        self.link_id = link.link_id
        self.tick_manager = tick_manager
        self._stop = stop
        self._queue: queue.Queue[RawTick | _End] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._consume, name=f"strategy:{self.link_id}", daemon=True)
        self._status_lock = threading.Lock()  # the run's thread and the watchdog both end runs
        self.status = RunStatus.PENDING
        self.ticks_processed = 0
        self.error: str | None = None
        # Kept for the status server, read at scrape time (plain counters: O(1) per tick).
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, the last one +Inf
        self.latency_sum = 0.0
        self.last_tick_time: datetime | None = None  # the last processed candle's open time
        self.last_tick_at: float | None = None  # time.time() when it was processed
        # The tick being processed and when it started (monotonic), as one reference so the
        # watchdog never reads half of an update.
        self._current: tuple[RawTick, float] | None = None

    @property
    def history_needed(self) -> int:
        """Closed candles the workforce must see before it is warm (what a live feed should replay)."""
        return self.tick_manager.history_needed

    def start(self) -> None:
        self.status = RunStatus.RUNNING
        self._thread.start()

    def submit(self, tick: RawTick) -> bool:
        """Queue tick, waiting while the queue is full; False once the run takes no more ticks."""
        return self._put(tick)

    def finish(self, status: RunStatus) -> None:
        """No more ticks will come: the run ends with status once the queue is drained."""
        self._put(_End(status))

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        """True while the run may still change: its thread is busy and it has not been abandoned."""
        return self._thread.is_alive() and self.status is not RunStatus.STALLED

    def check_stall(self, now: float, limit_seconds: float) -> None:
        """The watchdog (another thread): abandon the run if its current tick has taken longer
        than limit_seconds."""
        current = self._current
        if current is not None and now - current[1] > limit_seconds:
            self.abandon(f"spent more than {limit_seconds:g} s on one tick")

    def end_unstarted(self, status: RunStatus) -> None:
        """End a run that was never started (a link kept stopped, or added to an ended feed): it
        takes no tick, and the feed never waits for it."""
        self._end(status)

    def abandon(self, reason: str) -> None:
        """Give up on a run that is stuck in a tick: it is reported stalled, its remaining
        workers for that tick never run and the feed stops waiting for it."""
        current = self._current
        worker = self.tick_manager.current_worker
        tick_time = current[0].timestamp.isoformat() if current else None
        if not self._end(RunStatus.STALLED, f"stalled: worker '{worker}' {reason} (tick {tick_time})"):
            return
        self.tick_manager.abandon()
        log.error("strategy_run_stalled", strategy_link=self.link_id, blueprint=self.blueprint_id,
                  environment=self.environment_id, worker=worker, tick_time=tick_time, reason=reason)

    def summary(self) -> RunSummary:
        account = self.tick_manager.account
        return RunSummary(
            strategy_link=self.link_id,
            blueprint=self.blueprint_id,
            environment=self.environment_id,
            status=self.status,
            ticks_processed=self.ticks_processed,
            account=account.summary(),
            error=self.error,
            orders_rejected=account.order_outcomes["rejected"],
            orders_unknown=account.order_outcomes["unknown"],
            orders_skipped=account.order_outcomes["skipped"],
        )

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def _accepting(self) -> bool:
        return not self.status.ended and not self._stop.is_set()

    def _put(self, item: RawTick | _End) -> bool:
        while self._accepting():
            try:
                self._queue.put(item, timeout=QUEUE_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _end(self, status: RunStatus, error: str | None = None) -> bool:
        """Set the final status once; False if the run had already ended."""
        with self._status_lock:
            if self.status.ended:
                return False
            self.status, self.error = status, error
            return True

    def _consume(self) -> None:
        structlog.contextvars.bind_contextvars(
            strategy_link=self.link_id, blueprint=self.blueprint_id, environment=self.environment_id
        )
        log.info("strategy_run_started")
        try:
            self._consume_ticks()
        except BaseException as exc:  # never die silently: the watchdog and summary rely on status
            self._end(RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            log.exception("strategy_run_failed", error=self.error)

    def _consume_ticks(self) -> None:
        while not self.status.ended:
            if self._stop.is_set():
                self._discard_queue()
                self._end(RunStatus.STOPPED)
                return
            try:
                item = self._queue.get(timeout=QUEUE_POLL_SECONDS)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                self._end(item.status)
                return
            started = time.monotonic()
            self._current = (item, started)
            try:
                processed = self.tick_manager.process(item)
            except OpdaemonError as exc:  # e.g. the exchange refused the key: said plainly, no traceback
                if self._end(RunStatus.FAILED, str(exc)):
                    log.error("strategy_run_failed", tick_time=item.timestamp.isoformat(), error=self.error)
                return
            except Exception as exc:  # a strategy's bug must not reach the other runs
                if self._end(RunStatus.FAILED, f"{type(exc).__name__}: {exc}"):
                    log.exception("strategy_run_failed", tick_time=item.timestamp.isoformat(), error=self.error)
                return
            finally:
                self._current = None
            if processed and not self.status.ended:
                elapsed = time.monotonic() - started
                self.latency_counts[bisect_left(LATENCY_BUCKETS, elapsed)] += 1
                self.latency_sum += elapsed
                self.last_tick_time, self.last_tick_at = item.timestamp, time.time()
                self.ticks_processed += 1

    def _discard_queue(self) -> None:
        discarded = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            discarded += not isinstance(item, _End)
        if discarded:
            log.info("queued_ticks_discarded", ticks=discarded, reason="stop requested")
