from collections.abc import Sequence
from typing import Protocol

import structlog

from backend.core.ohlcv_provider import OhlcvProvider
from backend.dtos import BaseContextDTO
from backend.interfaces import Candle, ITradingContextProvider, IWorker, WorkerCategory
from backend.market_data import RawTick
from backend.portfolio import StrategyAccount

log = structlog.get_logger(__name__)


class TickRecorder(Protocol):
    """Told of every processed tick once the account has closed it (`--report`)."""

    def tick_closed(self, tick: RawTick, account: StrategyAccount) -> None: ...


class TickCacheManager:
    """One tick's lifecycle for one strategy: record the candle in the run's history, open the
    cache, run the workforce, close it.

    Every processed candle (warm-up ones too) is in the history before the first worker runs, so a
    worker's `history(asset, n)` always ends with the current tick. `history_needed` is the run's
    warm-up need: the candles its workforce must see before its indicators are warm.

    `current_worker` names the worker running now (for the stall watchdog); after `abandon()`
    no further worker runs, so a run given up on never places an order late.
    """

    def __init__(
        self,
        context: ITradingContextProvider,
        history: OhlcvProvider,
        workforce: Sequence[IWorker],
        account: StrategyAccount,
        assets: Sequence[str],
    ) -> None:
        self._context = context
        self._history = history
        self._workforce = list(workforce)
        self._context_workers = [w for w in workforce if w.category is WorkerCategory.CONTEXT]
        self.account = account
        self._assets = frozenset(assets)
        self.current_worker: str | None = None
        self._abandoned = False
        self.recorder: TickRecorder | None = None

    @property
    def history_needed(self) -> int:
        return self._history.capacity

    def abandon(self) -> None:
        self._abandoned = True

    def process(self, tick: RawTick) -> bool:
        """Run the workforce on tick (only the context workers on a warm-up tick); False when the
        strategy does not trade tick.symbol or the run was abandoned."""
        if tick.symbol not in self._assets or self._abandoned:
            return False
        trading = not tick.warmup
        if trading and not self.account.is_new(tick.symbol, tick.timestamp):
            log.warning("candle_already_processed", symbol=tick.symbol, candle_time=tick.timestamp.isoformat())
            return False
        self._history.append(tick.symbol, Candle(
            open_time=tick.timestamp,
            open=tick.open,
            high=tick.high,
            low=tick.low,
            close=tick.close,
            volume=tick.volume,
            missing_before=tick.missing_before,
        ))
        portfolio = self.account.open_tick(tick.symbol, tick.close, tick.timestamp, trading)
        self._context.start_new_tick(BaseContextDTO(
            asset=tick.symbol,
            timestamp=tick.timestamp,
            open=tick.open,
            high=tick.high,
            low=tick.low,
            close=tick.close,
            volume=tick.volume,
            portfolio=portfolio,
        ))
        try:
            for worker in self._workforce if trading else self._context_workers:
                if self._abandoned:
                    return False
                self.current_worker = worker.name
                worker.process(tick.symbol)
        finally:
            self.current_worker = None
            self._context.clear()
        self.account.close_tick(tick.symbol, tick.timestamp, trading)
        if self.recorder is not None:
            self.recorder.tick_closed(tick, self.account)
        return True
