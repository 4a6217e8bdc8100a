"""Runs a sweep's strategy links and measures each: its summary, its performance figures and its
equity at each UTC day's last bar, in one process or over local processes.

Invariants: results are the same whichever executor ran them (a backtest is deterministic);
memory per run stays bounded (figures computed as the run goes, one equity point per day kept);
a run that fails keeps its row (status and error), and so does a run whose process died.
"""

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from backend.config import LoadedOperation, ResolvedLink
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.timeframes import timeframe_seconds
from backend.performance import Performance, PerformanceTracker
from backend.portfolio import StrategyAccount
from services.backtest_shards import ShardedBacktest
from services.operation_service import OperationService
from services.strategy_run import RunSummary


@dataclass(frozen=True)
class RunResult:
    summary: RunSummary
    performance: Performance
    daily_equity: tuple[tuple[str, float], ...]  # (UTC date, equity at its last bar), oldest first


class PerformanceRecorder:
    """A run's tick recorder (TickCacheManager.recorder): performance and daily equity as it goes."""

    def __init__(self, starting_equity: float, timeframe: str) -> None:
        self.tracker = PerformanceTracker(starting_equity, timeframe_seconds(timeframe))
        self.daily: list[tuple[str, float]] = []

    def closed(self, candles: CandleColumns, rows: range, equities: Sequence[float], account: StrategyAccount) -> None:
        exposed = bool(account.ledger.positions)
        for epoch, equity in zip(candles.open_times[rows.start:rows.stop].tolist(), equities, strict=True):
            self._close(datetime.fromtimestamp(epoch, UTC), equity, exposed)

    def _close(self, time: datetime, equity: float, exposed: bool) -> None:
        self.tracker.add(time, equity, exposed)
        day = time.date().isoformat()
        if self.daily and self.daily[-1][0] == day:
            self.daily[-1] = (day, equity)
        else:
            self.daily.append((day, equity))


class PerformanceObserver:
    """Attaches a PerformanceRecorder to every run of a service (a shard's, or this process's)."""

    def __init__(self) -> None:
        self._recorders: dict[str, PerformanceRecorder] = {}

    def attach(self, service: OperationService) -> None:
        timeframes = {link.link_id: link.blueprint.timeframe for link in service.operation.links}
        for run in service.runs:
            manager = run.tick_manager
            recorder = PerformanceRecorder(manager.account.ledger.equity(), timeframes[run.link_id])
            manager.recorder = recorder
            self._recorders[run.link_id] = recorder

    def results(self) -> dict[str, Any]:
        return {link: (recorder.tracker.result(), tuple(recorder.daily)) for link, recorder in self._recorders.items()}


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


class Executor(Protocol):
    """Runs parts (each an operation of backtest links: one combination on its environments) and
    hands each part's results to `done` as they complete; stops early once `stop` is set."""

    def run(self, parts: Sequence[LoadedOperation], done: Callable[[dict[str, RunResult]], None]) -> None: ...

    def close(self) -> None: ...


class LocalExecutor:
    """`processes` = 1: every part in this process, one after the other; more: batches of
    `processes` parts at a time, one part per forked process (services.backtest_shards)."""

    def __init__(self, processes: int, stop: threading.Event, log_level: str = "warning") -> None:
        self.processes = processes
        self.stop = stop
        self.log_level = log_level

    def run(self, parts: Sequence[LoadedOperation], done: Callable[[dict[str, RunResult]], None]) -> None:
        for start in range(0, len(parts), self.processes):
            if self.stop.is_set():
                return
            batch = parts[start:start + self.processes]
            done(self._run_batch(batch))

    def close(self) -> None:
        pass  # nothing outlives a batch

    def _run_batch(self, batch: Sequence[LoadedOperation]) -> dict[str, RunResult]:
        links = [link for part in batch for link in part.links]
        operation = replace(batch[0], links=links)
        if self.processes == 1:
            service = OperationService(operation, stop_event=self.stop)
            observer = PerformanceObserver()
            observer.attach(service)
            return _results(service.run(), observer.results(), links)
        sharded = ShardedBacktest(operation, len(batch), self.stop, self.log_level, PerformanceObserver,
                                  shards=[list(part.links) for part in batch])
        try:
            sharded.prepare()
            return _results(sharded.run(), sharded.observed, links)
        finally:
            sharded.abort()
