"""Runs a sweep's strategy links and measures each: its summary, its performance figures and its
equity at each UTC day's last bar, in one process or over local processes, the combinations of
one `run` in one pass (one operation, one feed per environment, per process).

Invariants: results are the same whichever executor ran them, and whichever combinations ran
beside them (a backtest is deterministic; shared context workers give each run its own DTOs);
memory per run stays bounded (figures computed as the run goes, one equity point per day kept);
a run that fails keeps its row (status and error), and so does every run of a process that died.
"""

import gc
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from backend.config import LoadedOperation, ResolvedLink
from backend.equity_curve import EquityLine, equities_holding
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.timeframes import timeframe_seconds
from backend.performance import Performance, PerformanceTracker
from backend.portfolio import StrategyAccount
from services.backtest_shards import ShardedBacktest
from services.operation_service import OperationService
from services.progress import candles_replayed
from services.strategy_run import RunSummary

SECONDS_PER_DAY = 86_400
# How long a thread of a pass may hold the GIL before another gets it (Python's default: 5 ms).
PASS_SWITCH_INTERVAL_SECONDS = 0.1
PROGRESS_SECONDS = 1.0  # how often a pass tells how far it is
# The cyclic collector's thresholds during a pass (Python's: 700, 10, 10): see _rare_collections.
PASS_GC_THRESHOLDS = (50_000, 1_000, 1_000)
# A pass's runs in a process of their own (a shard, a Ray task) log warnings and errors only: their
# info lines (one per fill) are then never built.
RUNS_LOG_LEVEL = "warning"


@dataclass(frozen=True)
class RunResult:
    summary: RunSummary
    performance: Performance
    daily_equity: tuple[tuple[str, float], ...]  # (UTC date, equity at its last bar), oldest first


class PerformanceRecorder:
    """A run's tick recorder (TickCacheManager.recorder): performance and daily equity as it goes.
    Points are kept until a block's worth (FLUSH_POINTS) has come, then added at once (a tick or a
    quiet stretch each costs a few appends, the equities of its rows computed with the others'
    when given as a line; `PerformanceTracker.add_many` is vectorised); `figures()` adds what is
    left."""

    FLUSH_POINTS = 4096

    def __init__(self, starting_equity: float, timeframe: str) -> None:
        self.tracker = PerformanceTracker(starting_equity, timeframe_seconds(timeframe))
        self.daily: list[tuple[str, float]] = []
        self._day: int | None = None  # the last daily point's, in days since the epoch
        # The points not yet added: the rows of blocks they are (consecutive rows of a block
        # joined), and per `closed` call its rows' count, exposure and equity line (cash and
        # quantity; zeros when its equities were given, kept with their offset).
        self._spans: list[list[Any]] = []  # [block, first row, row after the last] (a list: joined in place)
        self._counts: list[int] = []
        self._exposed: list[bool] = []
        self._cash: list[float] = []
        self._quantity: list[float] = []
        self._given: list[tuple[int, Sequence[float]]] = []
        self._pending = 0

    def closed(self, candles: CandleColumns, rows: range, equities: EquityLine | Sequence[float],
               account: StrategyAccount) -> None:
        """The rows' points (a period per open time, in epoch seconds), and each UTC day's last equity;
        equities: each row's, or the line they are on (`EquityLine`)."""
        start, stop = rows.start, rows.stop
        spans = self._spans
        if spans and spans[-1][0] is candles and spans[-1][2] == start:
            spans[-1][2] = stop
        else:
            spans.append([candles, start, stop])
        if isinstance(equities, EquityLine):
            self._cash.append(equities.cash)
            self._quantity.append(equities.quantity)
        else:
            if len(equities) != stop - start:  # it would shift every point after it
                raise ValueError(f"{len(equities)} equities for {stop - start} rows")
            self._cash.append(0.0)
            self._quantity.append(0.0)
            self._given.append((self._pending, equities))
        self._counts.append(stop - start)
        self._exposed.append(bool(account.ledger.positions))
        self._pending += stop - start
        if self._pending >= self.FLUSH_POINTS:
            self._add_pending()

    def figures(self) -> tuple[Performance, tuple[tuple[str, float], ...]]:
        """The performance and the daily equities of every point so far."""
        self._add_pending()
        return self.tracker.result(), tuple(self.daily)

    def _add_pending(self) -> None:
        if not self._pending:
            return
        times = np.concatenate([block.open_times[start:stop] for block, start, stop in self._spans])
        closes = np.concatenate([block.closes[start:stop] for block, start, stop in self._spans])
        counts = self._counts
        equities = equities_holding(np.repeat(self._cash, counts), np.repeat(self._quantity, counts), closes)
        for offset, given in self._given:
            equities[offset:offset + len(given)] = given
        self.tracker.add_many(times, equities, np.repeat(self._exposed, counts))
        days = times // SECONDS_PER_DAY
        lasts = np.append(np.flatnonzero(days[1:] != days[:-1]), len(days) - 1)  # each day's last point
        last_days = days[lasts]
        dates = np.datetime_as_string(last_days.astype("datetime64[D]")).tolist()  # ISO dates, UTC
        for day, date, equity in zip(last_days.tolist(), dates, equities[lasts].tolist(), strict=True):
            self._day_closed(day, date, equity)
        self._spans, self._counts, self._exposed, self._cash, self._quantity, self._given = [], [], [], [], [], []
        self._pending = 0

    def _day_closed(self, day: int, date: str, equity: float) -> None:
        """The equity at a day's last point so far (date: the day's, in ISO format)."""
        if day == self._day:
            self.daily[-1] = (date, equity)
        else:
            self._day = day
            self.daily.append((date, equity))


class PerformanceObserver:
    """Readies a service of combinations (a shard's, or this process's) before it starts: the
    context workers its runs have in common computed once (services.shared_context), and a
    PerformanceRecorder on every run."""

    def __init__(self) -> None:
        self._recorders: dict[str, PerformanceRecorder] = {}

    def attach(self, service: OperationService) -> None:
        service.share_context_workers()
        timeframes = {link.link_id: link.blueprint.timeframe for link in service.operation.links}
        for run in service.runs:
            manager = run.tick_manager
            recorder = PerformanceRecorder(manager.account.ledger.equity(), timeframes[run.link_id])
            manager.recorder = recorder
            self._recorders[run.link_id] = recorder

    def results(self) -> dict[str, Any]:
        return {link: recorder.figures() for link, recorder in self._recorders.items()}


def unmeasured(summary: RunSummary, starting_capital: float) -> RunResult:
    """The result of a run whose process died: its summary, and flat figures (nothing was measured)."""
    flat = Performance(0, starting_capital, starting_capital, 0.0, 0.0, 0.0, None, None, 0.0)
    return RunResult(summary, flat, ())


def _results(summaries: Sequence[RunSummary], observed: dict[str, Any],
             links: Sequence[ResolvedLink]) -> dict[str, RunResult]:
    starting = {link.link_id: link.environment.starting_capital for link in links}
    results: dict[str, RunResult] = {}
    for summary in summaries:
        found = observed.get(summary.strategy_link)
        results[summary.strategy_link] = (unmeasured(summary, starting[summary.strategy_link]) if found is None
                                          else RunResult(summary, *found))
    return results


PassProgress = Callable[[float], None]  # told, while a pass runs, the share of its candles replayed (0 to 1)


class Executor(Protocol):
    """Runs parts (each an operation of backtest links: one combination on its environments) and
    hands each part's results to `done` as they complete (and, if it can tell, how far the parts
    still running are to `progress`); stops early once `stop` is set."""

    def run(self, parts: Sequence[LoadedOperation], done: Callable[[dict[str, RunResult]], None],
            progress: PassProgress | None = None) -> None: ...

    def close(self) -> None: ...


class LocalExecutor:
    """All the parts of a `run` in one pass: every combination a run of one operation, on one feed
    per environment. `processes` = 1: in this process; more: the parts dealt round-robin over at
    most that many forked processes (services.backtest_shards), each built once and reading the
    data once. Each process computes the context workers its combinations have in common once."""

    def __init__(self, processes: int, stop: threading.Event, log_level: str = RUNS_LOG_LEVEL) -> None:
        self.processes = processes
        self.stop = stop
        self.log_level = log_level

    def run(self, parts: Sequence[LoadedOperation], done: Callable[[dict[str, RunResult]], None],
            progress: PassProgress | None = None) -> None:
        if not parts or self.stop.is_set():
            return
        with _long_gil_turns(), _rare_collections():  # forked shards inherit both
            self._pass(parts, done, progress)

    def _pass(self, parts: Sequence[LoadedOperation], done: Callable[[dict[str, RunResult]], None],
              progress: PassProgress | None) -> None:
        links = [link for part in parts for link in part.links]
        operation = replace(parts[0], links=links)
        processes = min(self.processes, len(parts))
        if processes == 1:
            service = OperationService(operation, stop_event=self.stop)
            observer = PerformanceObserver()
            observer.attach(service)
            with _reporting(progress, lambda: candles_replayed(service.feeds)):
                summaries = service.run()
            done(_results(summaries, observer.results(), links))
            return
        shards = [[link for part in parts[start::processes] for link in part.links] for start in range(processes)]
        sharded = ShardedBacktest(operation, processes, self.stop, self.log_level, PerformanceObserver, shards=shards)
        try:
            sharded.prepare()
            with _reporting(progress, sharded.candles_replayed):
                summaries = sharded.run()
            done(_results(summaries, sharded.observed, links))
        finally:
            sharded.abort()

    def close(self) -> None:
        pass  # nothing outlives a pass


@contextmanager
def _reporting(progress: PassProgress | None, replayed: Callable[[], tuple[int, int]]) -> Iterator[None]:
    """While the block runs, progress is told every PROGRESS_SECONDS the share of the candles
    replayed (replayed: (sent, total) over the pass's feeds)."""
    if progress is None:
        yield
        return
    finished = threading.Event()

    def report() -> None:
        while not finished.wait(PROGRESS_SECONDS):
            sent, total = replayed()
            if total:
                progress(min(sent / total, 1.0))

    reporter = threading.Thread(target=report, name="sweep-pass-progress", daemon=True)
    reporter.start()
    try:
        yield
    finally:
        finished.set()
        reporter.join()


@contextmanager
def _rare_collections() -> Iterator[None]:
    """A pass makes millions of short-lived objects (a tick's DTOs, freed by their reference
    counts) beside the long-lived state of all its runs, which every collection of the cyclic
    collector's older generations walks again: with Python's thresholds, about 6 % of a pass's
    CPU (the sweep bench's 70 runs in one process: 2.4 s in 1,014 collections; 0.4 s in 25 with
    PASS_GC_THRESHOLDS). The objects made before the pass are frozen out of collections; a cycle
    made during the pass is still collected, later."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*PASS_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


@contextmanager
def _long_gil_turns() -> Iterator[None]:
    """A pass's runs are CPU-bound threads in lockstep on one feed: handing the GIL over every
    100 ms rather than every 5 spares most switches and the cache misses after each (about 8 %
    of a pass, the sweep bench shows); a stop request still reaches the runs within a turn or two."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(PASS_SWITCH_INTERVAL_SECONDS)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
