"""Context work shared by the runs of one process: a context worker that is the same in several
runs on one feed (a sweep's combinations) is computed once per block, by one private instance,
and its columns go to every one of those runs, read-only.

"The same" is its key: the worker's class and params, the run's environment, timeframe and
assets, and the keys of every context worker before it in the workforce (whose columns it may
read). Workers of equal key in two or more runs are shared; the others stay the run's own.

Invariants: a run gets, on every row, the DTOs its own instance would have written, whether it
replays the block columnar or tick by tick (IWorker's contract: a columnar context worker's
columns are a function of its params, the candles and the columns of the context workers before
it, never of the account); the private instance prepares every block of each symbol once, in the
feed's order, with the history it would have had in a run; a block's columns live as long as the
block (kept in it: the feed's blocks go once every run has replayed them).
"""

import threading
from collections.abc import Hashable, Iterable, Sequence

from backend.config import BacktestEnvironment
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.interfaces import IWorker, WorkerCategory, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.context_provider import DtoColumns
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from services.running_set import RunningLink
from services.strategy_run import StrategyRun


class SharedContextWorker:
    """One context worker computed for several runs: `columns(block)` gives its columns of a block,
    prepared by the private instance the first time any run asks."""

    def __init__(self, worker: IWorker, environment: BacktestEnvironment,
                 upstream: Sequence["SharedContextWorker"]) -> None:
        """A private instance of worker (a run's, whose class and params it takes); upstream: the
        shared workers before it, whose columns it may read."""
        self._context = TradingContextProvider()
        self._history = OhlcvProvider(worker.params.history_needed())
        # An account of its own, never a run's: a context worker's columns do not read it.
        account = StrategyAccount(Ledger(environment.starting_capital), SimulatedGateway(environment.fill_rules))
        self._worker = type(worker)(worker.params, WorkerServices(self._context, account, self._history,
                                                                  worker.services.timeframe))
        self._produces = type(worker).produces
        self.upstream = tuple(upstream)  # every context worker before it, in order
        self._lock = threading.Lock()

    def columns(self, candles: CandleColumns) -> tuple[DtoColumns, ...]:
        """Its columns of the block (a symbol's): computed once, whichever run asks first, and
        kept with the block (`derived`: they go when it goes, even if they refer to it)."""
        found = candles.derived.get(self)
        if found is None:
            with self._lock:
                found = candles.derived.get(self)
                if found is None:
                    found = candles.derived[self] = self._prepare(candles)
        return found

    def _prepare(self, candles: CandleColumns) -> tuple[DtoColumns, ...]:
        """The block as a run prepares it: the upstream workers' columns in the tick cache, the
        history up to the block's first row; then the history takes the block's rows."""
        symbol, context = candles.symbol, self._context
        for upstream in self.upstream:
            for columns in upstream.columns(candles):
                context.set_result_columns(symbol, columns)
        try:
            self._worker.prepare_block(symbol, candles)
            produced = tuple(found for dto_type in self._produces
                             if (found := context.find_columns(symbol, dto_type)) is not None)
        finally:
            context.clear_block()
        self._history.append(symbol, candles, 0, len(candles))
        return produced


def _shareable(worker: IWorker, assets: Sequence[str]) -> bool:
    """Its columns of one symbol's block do not depend on another symbol's (or there is only one)."""
    return worker.columnar and (worker.columnar_across_assets or len(assets) == 1)


def share_context_workers(links: Iterable[RunningLink]) -> int:
    """Give the links' runs (built, not started) the context workers they have in common with
    another run, each computed once. Returns how many are shared."""
    keyed: dict[Hashable, list[tuple[StrategyRun, IWorker, BacktestEnvironment]]] = {}
    for running in links:
        run, link = running.run, running.resolved
        environment = link.environment
        if not isinstance(environment, BacktestEnvironment):
            continue  # a live feed's candles come one at a time: nothing to share
        assets = link.blueprint.assets
        key: Hashable = (link.link.execution_environment_id, link.blueprint.timeframe, tuple(assets))
        for worker in run.tick_manager.workforce:
            if worker.category is not WorkerCategory.CONTEXT or not _shareable(worker, assets):
                break  # the workers after it may read its columns: not shared either
            key = (key, type(worker), worker.params.model_dump_json())
            keyed.setdefault(key, []).append((run, worker, environment))
    shared: dict[Hashable, SharedContextWorker] = {}
    for key, users in keyed.items():  # in insertion order: a key's upstream key (key[0]) comes before it
        if len(users) < 2:
            continue  # nor any key after it: they extend this one
        upstream = shared.get(key[0])  # type: ignore[index]
        _, worker, environment = users[0]
        source = shared[key] = SharedContextWorker(
            worker, environment, () if upstream is None else (*upstream.upstream, upstream))
        for run, worker, _ in users:
            run.tick_manager.share(worker, source)
    return len(shared)
