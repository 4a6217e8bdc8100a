"""One strategy run: its own bounded queue of blocks of candles, consumed in its own thread.

Candles come in one form, blocks of columns (a backtest's: thousands of rows; a live candle: a
block of one row; a backtest of several symbols: a CandleWindow of every symbol's columns),
through one `submit` and one `_take`; the tick manager decides, per block,
whether it replays it columnar or row by row. The hand-off between the feed's thread and the
run's is a deque the feed appends to and the run takes from: neither takes a lock per block. A
lock is only taken to sleep and to wake the other side (the run when it found nothing to do and
a block has come, the feed when the queue was full and half of it has been taken since), so a
live candle is taken as soon as it is added.

Invariants: the consuming thread never dies outside its error handling; at most `queue_size`
one-row blocks (or BLOCKS_QUEUED longer ones) wait; a full queue makes the feed wait, so no tick
is dropped while the run takes ticks; a run that is failed, stalled or stopping never makes the
feed wait (`submit` returns False); once the stop event is set, the run ends after its current
tick (or columnar step) and queued ticks are discarded, never traded; once a run is declared
stalled, the workers left in its current tick never run and it takes no tick again.

Read model: other threads (the status server, metrics, summaries) read a run only through
`snapshot()`, a frozen RunSnapshot. The run's thread builds it (its counters and its account,
all of one moment between two blocks) and publishes it by one reference assignment: after each
block of more than one row, after a block that leaves the queue empty (so a live candle is shown
as soon as it is processed), after an operator's call between ticks, at the end of the run, and
otherwise at most every PUBLISH_EVERY_SECONDS while one-row blocks keep coming (building one per
candle would cost as much as the candle's own overhead). The few fields other threads change
(status and error, the account's pause, the queue's depth) are read live by `snapshot()`, so a
pause, stop or failure shows in the very next answer.
"""

import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict, TypeVar, cast

import structlog

from backend.config import StrategyLink
from backend.errors import OpdaemonError
from backend.interfaces.candle_window import Candles
from backend.portfolio import AccountSnapshot, AccountSummary
from backend.trade_stats import TradeStats
from services.tick_cache_manager import TickCacheManager

log = structlog.get_logger(__name__)
T = TypeVar("T")

QUEUE_POLL_SECONDS = 0.1  # how often a waiting feed or an idle run looks at the stop event (and the queue)
BLOCKS_QUEUED = 2  # blocks of more than one candle waiting at most per run (a backtest's: a few thousand each)
# Upper bounds (seconds) of the tick latency histogram the status server exports; +Inf is implied.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# While ticks keep coming, a run publishes its snapshot at most this often (see the module docstring).
PUBLISH_EVERY_SECONDS = 0.1


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


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """A strategy run as other threads see it: immutable, its counters and account of one moment."""

    strategy_link: str
    blueprint: str
    environment: str
    status: RunStatus
    error: str | None
    paused: str | None  # why the account takes no new buys, or None
    queue_depth: int
    ticks_processed: int
    latency_counts: tuple[int, ...]  # ticks per LATENCY_BUCKETS bucket, the last one +Inf
    latency_sum: float  # seconds
    last_tick_time: datetime | None  # the last processed candle's open time
    last_tick_at: float | None  # time.time() when it was processed
    account: AccountSnapshot


class _Counters(TypedDict):
    """RunSnapshot's fields the run's thread counts."""

    ticks_processed: int
    latency_counts: tuple[int, ...]
    latency_sum: float
    last_tick_time: datetime | None
    last_tick_at: float | None


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
    trade_stats: TradeStats = field(default_factory=TradeStats)  # of the fills since start

    @property
    def failed(self) -> bool:
        return self.status in (RunStatus.FAILED, RunStatus.STALLED)

    def as_log_fields(self) -> dict:
        fields = asdict(self)
        fields.update(fields.pop("account"))
        del fields["trade_stats"]  # summary.json, the printed summary and report.html show them
        fields["status"] = self.status.value
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in fields.items()}


class _CallBetweenTicks:
    """A function to run on the run's own thread between two ticks (an operator's order: the
    account is only ever used by that thread), and what it gave."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.function()
        except Exception as exc:  # handed to the caller: the run goes on
            self.error = exc
        self.done.set()

    def cancel(self, why: str) -> None:
        self.error = RunEndedError(why)
        self.done.set()


class RunEndedError(Exception):
    """The run ended before it could do what it was asked between two ticks."""


class StrategyRun:
    def __init__(
        self,
        link: StrategyLink,
        tick_manager: TickCacheManager,
        stop: threading.Event,
        queue_size: int = 1024,
        carried: RunSnapshot | None = None,
    ) -> None:
        """carried: the last snapshot of the run this one continues (its counters carry on)."""
        self.blueprint_id = link.strategy_blueprint_id
        self.environment_id = link.execution_environment_id
        self.link_id = link.link_id
        self.tick_manager = tick_manager
        self._stop = stop
        self._capacity = max(1, queue_size)
        # Blocks of candles (a live candle: one row) appended by the feed's thread, and calls
        # between ticks appended by others, all taken by the run's.
        self._ticks: deque[Candles | _CallBetweenTicks] = deque()
        self._end_status: RunStatus | None = None  # set by finish(): no tick comes after the queued ones
        self._closed = False  # the run has ended: the feed's cheap per-tick check
        self._lock = threading.Lock()
        self._ticks_ready = threading.Condition(self._lock)  # the run sleeps on it while the queue is empty
        self._room_ready = threading.Condition(self._lock)  # the feed sleeps on it while the queue is full
        self._run_waiting = False
        self._feed_waiting = False
        self._thread = threading.Thread(target=self._consume, name=f"strategy:{self.link_id}", daemon=True)
        self._status_lock = threading.Lock()  # the run's thread and the watchdog both end runs
        self.status = RunStatus.PENDING
        self.error: str | None = None
        # The run's thread's own counters (plain: O(1) per tick), shown in its snapshots; a link
        # started again carries on from its stopped run's (they never go back).
        self._ticks_processed = carried.ticks_processed if carried else 0
        self._latency_counts = list(carried.latency_counts) if carried else [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = carried.latency_sum if carried else 0.0
        self._last_tick_time = carried.last_tick_time if carried else None
        self._last_tick_at = carried.last_tick_at if carried else None
        self._publish_due = 0.0  # time.monotonic() from which the next tick publishes a snapshot
        # Held while a snapshot is built and published: the watchdog publishes a stalled run's counters.
        self._publish_lock = threading.Lock()
        self._published = self._build_snapshot()
        self._discarded = 0  # candles of a block left unprocessed on a stop request

    @property
    def history_needed(self) -> int:
        """Closed candles the workforce must see before it is warm (what a live feed should replay)."""
        return self.tick_manager.history_needed

    def start(self) -> None:
        self._publish()  # the account as built, restored and reconciled: its thread is not running yet
        self.status = RunStatus.RUNNING
        self._thread.start()

    def submit(self, candles: Candles) -> bool:
        """Queue a block of candles (a live candle: a block of one row) and wake the run, waiting
        while the queue is full: queue_size items, or BLOCKS_QUEUED once the block has more than
        one row; False once the run takes no more ticks."""
        queued = self._ticks
        limit = self._capacity if len(candles) == 1 else BLOCKS_QUEUED
        if self._closed or (len(queued) >= limit and not self._wait_for_room(limit)):
            return False
        queued.append(candles)
        self.wake()
        return True

    def call_between_ticks(self, function: Callable[[], T], timeout: float) -> T:
        """function(), run on the run's own thread after the ticks queued before it (live queues
        are short): what it returns, or what it raises. RunEndedError if the run is not running
        or ends first; TimeoutError if it has not run within timeout (it still runs later)."""
        def function_then_publish() -> T:
            try:
                return function()
            finally:  # before the caller is told: its answer shows what the call did
                self._publish()

        call = _CallBetweenTicks(function_then_publish)
        if not self._accepting():
            raise RunEndedError(f"the run has {self.status.value}")
        with self._lock:
            self._ticks.append(call)
            self._ticks_ready.notify()
        if not call.done.wait(timeout):
            raise TimeoutError(f"not done within {timeout:g} s (the run is busy with a tick); it will be")
        if call.error is not None:
            raise call.error
        return cast(T, call.result)

    def wake(self) -> None:
        """Wake the run if it sleeps on an empty queue (after each block `submit` queues: a live
        candle is never kept waiting). The flag is read after the append and the run sets it
        before it looks at the queue (under the lock it sleeps with), so either the run sees the
        block or it is woken here."""
        if self._run_waiting:
            with self._lock:
                self._ticks_ready.notify()

    def finish(self, status: RunStatus) -> None:
        """No more ticks will come: the run ends with status once the queue is drained."""
        self._end_status = status
        with self._lock:
            self._ticks_ready.notify()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def thread_running(self) -> bool:
        """The run's thread is still inside a tick (or waiting for one), abandoned or not: it may
        still book what that tick does."""
        return self._thread.is_alive()

    def is_alive(self) -> bool:
        """True while the run may still change: its thread is busy and it has not been abandoned."""
        return self._thread.is_alive() and self.status is not RunStatus.STALLED

    def check_stall(self, now: float, limit_seconds: float) -> None:
        """The watchdog (another thread): abandon the run if its current tick has taken longer
        than limit_seconds."""
        current = self.tick_manager.current_step
        if current is not None and now - current[1] > limit_seconds * current[2]:
            what = "one tick" if current[2] == 1 else f"a step over {current[2]} candles"
            self.abandon(f"spent more than {limit_seconds * current[2]:g} s on {what}")

    def end_unstarted(self, status: RunStatus) -> None:
        """End a run that was never started (a link kept stopped, or added to an ended feed): it
        takes no tick, and the feed never waits for it."""
        self._end(status)
        self._publish()  # no thread of its own ever will: the account as reconciled and restored

    def abandon(self, reason: str) -> None:
        """Give up on a run that is stuck in a tick: it is reported stalled, its remaining
        workers for that tick never run and the feed stops waiting for it."""
        current = self.tick_manager.current_step
        worker = self.tick_manager.current_worker
        tick_time = current[0].isoformat() if current else None
        if not self._end(RunStatus.STALLED, f"stalled: worker '{worker}' {reason} (tick {tick_time})"):
            return
        self.tick_manager.abandon()
        # Its thread, stuck in a tick, publishes again only if that tick ever returns: its counters
        # (which count no tick from now on) are published here; its account stays as last published
        # (after the tick before for a live run; up to PUBLISH_EVERY_SECONDS earlier in a backtest).
        counters = self._counters()  # and the ticks of its block it got through before the stuck one
        counters["ticks_processed"] += self.tick_manager.progress.processed
        with self._publish_lock:
            self._published = replace(self._published, **counters)
        log.error("strategy_run_stalled", strategy_link=self.link_id, blueprint=self.blueprint_id,
                  environment=self.environment_id, worker=worker, tick_time=tick_time, reason=reason)

    def snapshot(self) -> RunSnapshot:
        """The run as its thread last published it, with the fields other threads change read now."""
        with self._status_lock:  # status and error are set together
            status, error = self.status, self.error
        return replace(self._published, status=status, error=error, paused=self.tick_manager.account.paused,
                       queue_depth=len(self._ticks))

    @property
    def ticks_processed(self) -> int:
        """As the last published snapshot shows it."""
        return self._published.ticks_processed

    def summary(self) -> RunSummary:
        """Built from the final snapshot, once the run's thread has ended (or been given up on);
        the trade statistics, which no snapshot carries, are read from the account then."""
        snapshot = self.snapshot()
        outcomes = snapshot.account.order_outcomes
        return RunSummary(
            strategy_link=snapshot.strategy_link,
            blueprint=snapshot.blueprint,
            environment=snapshot.environment,
            status=snapshot.status,
            ticks_processed=snapshot.ticks_processed,
            account=snapshot.account.summary(),
            error=snapshot.error,
            orders_rejected=outcomes["rejected"],
            orders_unknown=outcomes["unknown"],
            orders_skipped=outcomes["skipped"],
            trade_stats=self.tick_manager.account.trade_stats.result(),
        )

    def _build_snapshot(self) -> RunSnapshot:
        """Only on the run's thread, or while it is not running: it reads the account."""
        account = self.tick_manager.account
        return RunSnapshot(
            strategy_link=self.link_id, blueprint=self.blueprint_id, environment=self.environment_id,
            status=self.status, error=self.error, paused=account.paused, queue_depth=len(self._ticks),
            account=account.snapshot(), **self._counters(),
        )

    def _counters(self) -> _Counters:
        """The run thread's counters, as RunSnapshot's fields."""
        return {"ticks_processed": self._ticks_processed, "latency_counts": tuple(self._latency_counts),
                "latency_sum": self._latency_sum, "last_tick_time": self._last_tick_time,
                "last_tick_at": self._last_tick_at}

    def _publish(self, now: float | None = None) -> None:
        """Build a snapshot and publish it (one reference assignment: readers see the old one or
        this one, never a mix); now: time.monotonic(), when the caller has it."""
        with self._publish_lock:
            self._published = self._build_snapshot()
        self._publish_due = (time.monotonic() if now is None else now) + PUBLISH_EVERY_SECONDS

    def _accepting(self) -> bool:
        return not self.status.ended and not self._stop.is_set()

    def _wait_for_room(self, limit: int) -> bool:
        """Wait while limit items or more are queued (looking at the run's state every
        QUEUE_POLL_SECONDS); False once the run takes no more ticks."""
        with self._lock:
            self._feed_waiting = True
            try:
                while len(self._ticks) >= limit:
                    if not self._accepting():
                        return False
                    self._room_ready.wait(QUEUE_POLL_SECONDS)
            finally:
                self._feed_waiting = False
        return True

    def _end(self, status: RunStatus, error: str | None = None) -> bool:
        """Set the final status once; False if the run had already ended."""
        with self._status_lock:
            if self.status.ended:
                return False
            self.status, self.error = status, error
            self._closed = True
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
        finally:  # whoever waits on a call the run will never make is told at once
            self._publish()  # the final snapshot (summaries are built from it)
            for item in list(self._ticks):
                if isinstance(item, _CallBetweenTicks):
                    item.cancel(f"the run has {self.status.value}")

    def _consume_ticks(self) -> None:
        ticks, stop = self._ticks, self._stop
        while self.status is RunStatus.RUNNING:
            if stop.is_set():
                self._discard_queue()
                self._end(RunStatus.STOPPED)
                return
            if not ticks:
                # finish() sets the status after its last tick was queued: read in this order,
                # an end status with an empty queue means every tick was taken.
                end = self._end_status
                if end is not None and not ticks:
                    self._end(end)
                    return
                self._wait_for_ticks()
                continue
            item = ticks.popleft()
            # The feed waits on a full queue: wake it once half is free, not on every tick taken
            # (which would hand the interpreter lock back and forth on each one).
            if self._feed_waiting and len(ticks) <= self._capacity // 2:
                with self._lock:
                    self._room_ready.notify()
            if isinstance(item, _CallBetweenTicks):
                item.run()
            elif not self._take(item):
                return

    def _take(self, candles: Candles) -> bool:
        """Process a block of candles (the tick manager replays it columnar when it can, else row
        by row), only until the stop event is set (the rest is counted as discarded). False when
        that ended the run."""
        manager = self.tick_manager
        started = time.monotonic()
        try:
            replayed = manager.process(candles, self._stop)
        except Exception as exc:
            progress = manager.progress  # the ticks before the failed one count
            self._count_replayed(candles, progress.rows, progress.processed, started)
            step = manager.current_step
            self._fail(exc, step[0] if step else candles.open_time(0))
            return False
        self._discarded += len(candles) - replayed.rows
        if self._count_replayed(candles, replayed.rows, replayed.processed, started):
            # A backtest's one-row blocks (bars of a long timeframe) publish only now and then.
            now = time.monotonic()
            if len(candles) > 1 or not self._ticks or now >= self._publish_due:
                self._publish(now)
        return True

    def _count_replayed(self, candles: Candles, rows: int, processed: int, started: float) -> bool:
        """Count the candles the tick manager processed of the first rows of candles (if any, and
        while the run is running)."""
        if not processed or self.status is not RunStatus.RUNNING:
            return False
        self._count(candles.open_time(max(rows, 1) - 1), processed, time.monotonic() - started)
        return True

    def _fail(self, exc: Exception, tick_time: datetime) -> None:
        if isinstance(exc, OpdaemonError):  # e.g. the exchange refused the key: said plainly, no traceback
            if self._end(RunStatus.FAILED, str(exc)):
                log.error("strategy_run_failed", tick_time=tick_time.isoformat(), error=self.error)
        # Any other error is a strategy's bug: it ends this run, never reaches the others.
        elif self._end(RunStatus.FAILED, f"{type(exc).__name__}: {exc}"):
            log.exception("strategy_run_failed", tick_time=tick_time.isoformat(), error=self.error)

    def _count(self, last_time: datetime, candles: int, elapsed: float) -> None:
        """candles processed, the last opened at last_time, in elapsed seconds (a block's
        candles each count at their average latency)."""
        self._latency_counts[bisect_left(LATENCY_BUCKETS, elapsed / candles)] += candles
        self._latency_sum += elapsed
        self._last_tick_time, self._last_tick_at = last_time, time.time()
        self._ticks_processed += candles

    def _wait_for_ticks(self) -> None:
        """Sleep until the feed adds a tick or finishes (at most QUEUE_POLL_SECONDS, to look at
        the stop event)."""
        with self._lock:
            self._run_waiting = True
            try:
                if not self._ticks and self._end_status is None:
                    self._ticks_ready.wait(QUEUE_POLL_SECONDS)
            finally:
                self._run_waiting = False

    def _discard_queue(self) -> None:
        """Drop what waits in the queue: its candles, and those of a block left part-way, are logged."""
        discarded, self._discarded = self._discarded, 0
        while self._ticks:
            item = self._ticks.popleft()
            if isinstance(item, _CallBetweenTicks):
                item.cancel("the run stopped first")
                continue
            discarded += len(item)
        with self._lock:
            self._room_ready.notify()
        if discarded:
            log.info("queued_ticks_discarded", ticks=discarded, reason="stop requested")
