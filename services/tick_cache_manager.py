from collections.abc import Sequence

from backend.dtos import BaseContextDTO
from backend.interfaces import ITradingContextProvider, IWorker, WorkerCategory
from backend.market_data import RawTick
from backend.portfolio import Ledger


class TickCacheManager:
    """One tick's lifecycle for one strategy: open the cache, run the workforce, close it.

    `current_worker` names the worker running now (for the stall watchdog); after `abandon()`
    no further worker runs, so a run given up on never places an order late.
    """

    def __init__(
        self,
        context: ITradingContextProvider,
        workforce: Sequence[IWorker],
        ledger: Ledger,
        assets: Sequence[str],
    ) -> None:
        self._context = context
        self._workforce = list(workforce)
        self._context_workers = [w for w in workforce if w.category is WorkerCategory.CONTEXT]
        self._ledger = ledger
        self._assets = frozenset(assets)
        self.current_worker: str | None = None
        self._abandoned = False

    def abandon(self) -> None:
        self._abandoned = True

    def process(self, tick: RawTick) -> bool:
        """Run the workforce on tick (only the context workers on a warm-up tick); False when the
        strategy does not trade tick.symbol or the run was abandoned."""
        if tick.symbol not in self._assets or self._abandoned:
            return False
        self._ledger.mark(tick.symbol, tick.close)
        self._context.start_new_tick(BaseContextDTO(
            asset=tick.symbol,
            timestamp=tick.timestamp,
            open=tick.open,
            high=tick.high,
            low=tick.low,
            close=tick.close,
            volume=tick.volume,
            portfolio=self._ledger.snapshot(tick.symbol),
        ))
        try:
            for worker in self._context_workers if tick.warmup else self._workforce:
                if self._abandoned:
                    return False
                self.current_worker = worker.name
                worker.process(tick.symbol)
        finally:
            self.current_worker = None
            self._context.clear()
        if not tick.warmup:
            self._ledger.record_equity()
        return True
