"""Checks that a backtest's columnar replay is the tick-by-tick one, for any workforce: the
same DTOs a context worker writes on every row, the same fills and the same account, whatever
the blocks' sizes and wherever the data has holes (the checks are services.plugin_testing's,
shipped for plugin authors; here, the long series with holes and the odd workers)."""

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from backend.dtos import EmaDTO, OpportunitySignalDTO, OrderSide, ThreatSignalDTO
from backend.interfaces import Candle, CandleStepWorker, IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.workers.context.ema_detector import EmaDetector, EmaDetectorParams
from backend.workers.indicators import Ema
from backend.workers.opportunity.ema_cross_opportunity import EmaCrossOpportunity
from services.plugin_testing import (  # noqa: F401 (re-exported: the daemon's tests take them from here)
    HOUR,
    SAMPLE_1H,
    Replay,
    assert_same_context,
    assert_same_trades,
    entry_block_lines,
    random_sizes,
    sample_candles,
    split,
)

REPO = Path(__file__).resolve().parent.parent


def long_series_with_holes(repeats: int = 8, holes: int = 40, seed: int = 7) -> CandleColumns:
    """The sample played forwards, then backwards (open and close swapped), `repeats` times, on a
    continuous hourly grid, then `holes` random stretches of 1 to 30 candles taken out."""
    sample = sample_candles()
    parts = []
    for index in range(repeats):
        if index % 2 == 0:
            parts.append((sample.opens, sample.highs, sample.lows, sample.closes, sample.volumes))
        else:
            parts.append((sample.closes[::-1], sample.highs[::-1], sample.lows[::-1], sample.opens[::-1],
                          sample.volumes[::-1]))
    opens, highs, lows, closes, volumes = (np.concatenate(column) for column in zip(*parts, strict=True))
    keep = np.ones(len(opens), dtype=bool)
    random = np.random.default_rng(seed)
    for start in random.integers(100, len(opens) - 100, holes):
        keep[start:start + random.integers(1, 31)] = False
    open_times = (1_700_000_000 // HOUR + np.arange(len(opens)))[keep] * HOUR
    missing = np.concatenate(([0], np.diff(open_times) // HOUR - 1))
    return CandleColumns("BTC/USD", open_times, opens[keep], highs[keep], lows[keep], closes[keep], volumes[keep],
                         missing)


class NotColumnar(IWorker):
    """Does nothing, and has no columnar replay: a workforce with it is replayed tick by tick."""

    category = WorkerCategory.EXECUTION

    def process(self, asset: str) -> None:
        pass


class Vandal(IWorker):
    """A columnar context worker with a bug: it writes into the block every run of its
    environment shares."""

    category = WorkerCategory.CONTEXT
    columnar = True

    def process(self, asset: str) -> None:
        pass

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        candles.closes[-1] = 1.0


class SlowPrepare(IWorker):
    """A columnar context worker that takes 0.5 ms per candle of a block: slow, not stuck."""

    category = WorkerCategory.CONTEXT
    columnar = True

    def process(self, asset: str) -> None:
        pass

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        time.sleep(len(candles) / 2000)


class StuckAtTheEnd(IWorker):
    """A columnar context worker that never returns from the block holding the candle of
    2023-03-31 23:00 (the shipped sample's last): stuck."""

    category = WorkerCategory.CONTEXT
    columnar = True

    def process(self, asset: str) -> None:
        pass

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        if candles.open_time(len(candles) - 1) == datetime(2023, 3, 31, 23, tzinfo=UTC):
            time.sleep(3600)


class EntryBlockedWitness(IWorker):
    """Counts the ticks on which a buy signal met a threat while flat: entries a threat blocked
    (per tick only: not columnar)."""

    category = WorkerCategory.PLANNING
    Params = WorkerParams
    optional = (OpportunitySignalDTO, ThreatSignalDTO)

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self.blocked = 0

    def process(self, asset: str) -> None:
        signal = self._optional(asset, OpportunitySignalDTO)
        flat = self._base(asset).portfolio.position_qty <= 0
        if flat and signal is not None and signal.side is OrderSide.BUY and self._optional(asset, ThreatSignalDTO):
            self.blocked += 1


class ListedEma(CandleStepWorker):
    """The EMA detector as a plugin might write it, one step per candle: its columns are a plain
    list of the DTOs (no EmaColumns), so consumers must find them by DTO type."""

    Params = EmaDetectorParams
    produces = (EmaDTO,)
    params: EmaDetectorParams

    def __init__(self, params: EmaDetectorParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._emas: dict[str, tuple[Ema, Ema]] = {}

    def step(self, asset: str, candle: Candle) -> EmaDTO:
        if asset not in self._emas or candle.missing_before:
            self._emas[asset] = (Ema(self.params.fast_period), Ema(self.params.slow_period))
        fast, slow = self._emas[asset]
        return EmaDTO.trusted(fast_period=self.params.fast_period, slow_period=self.params.slow_period,
                              fast=fast.update(candle.close), slow=slow.update(candle.close))


class TickByTickEma(EmaDetector):
    """The EMA detector without its columnar replay."""

    columnar = False


class ColumnarWithoutColumns(EmaDetector):
    """Says it is columnar but writes no columns: a consumer would find none."""

    prepare_block = IWorker.prepare_block


class GatedButOnlyOnSignals(EmaCrossOpportunity):
    """Declares it acts only on others' signals, yet names rows of its own: which one is meant?"""

    acts_only_on_signals = True
