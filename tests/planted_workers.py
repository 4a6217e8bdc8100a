"""Workers with a planted bug that `run-operation check` must find and name (loaded by
import path, `tests.planted_workers:<Class>`): the EMA detector and the EMA cross, wrong in one way each."""

from itertools import accumulate

import numpy as np

from backend.dtos import EmaDTO, PortfolioSnapshotDTO
from backend.interfaces import WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.workers.context.ema_detector import EmaColumns, EmaDetector, EmaDetectorParams
from backend.workers.opportunity.ema_cross_opportunity import EmaCrossOpportunity


class DriftingEma(EmaDetector):
    """Its columns are one row late (each row gets the EMAs of the row before): tick by tick it is right."""

    plugin_name = "drifting_ema"

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        super().prepare_block(asset, candles)
        columns = self.context.find_columns(asset, EmaDTO)
        assert isinstance(columns, EmaColumns)
        self.context.set_result_columns(asset, EmaColumns(
            columns.fast_period, columns.slow_period, [None, *columns.fast[:-1]], [None, *columns.slow[:-1]]))


class PeekingEma(EmaDetector):
    """Its columns read the next candle's close (the last row of a block, its own): look-ahead."""

    plugin_name = "peeking_ema"

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        ahead = np.concatenate((candles.closes[1:], candles.closes[-1:]))
        super().prepare_block(asset, CandleColumns(candles.symbol, candles.open_times, candles.opens, candles.highs,
                                                   candles.lows, ahead, candles.volumes, candles.missing_before))


class RunningMean(EmaDetector):
    """`fast` is the mean of every close since the run started, both ways alike: its output never
    stops depending on where the run started."""

    plugin_name = "running_mean"

    def __init__(self, params: EmaDetectorParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._sum, self._count = 0.0, 0

    def process(self, asset: str) -> None:
        close = self._candle(asset).close
        self._sum, self._count = self._sum + close, self._count + 1
        self.context.set_result_dto(asset, EmaDTO.trusted(fast_period=self.params.fast_period,
                                                          slow_period=self.params.slow_period,
                                                          fast=self._sum / self._count, slow=close))

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        sums = list(accumulate(candles.close_values, initial=self._sum))[1:]  # added in process's order
        means = [total / (self._count + row) for row, total in enumerate(sums, start=1)]
        self._sum, self._count = sums[-1], self._count + len(candles)
        self.context.set_result_columns(asset, EmaColumns(self.params.fast_period, self.params.slow_period,
                                                          means, list(candles.close_values)))


class LateCross(EmaCrossOpportunity):
    """Names each cross's row one row late in a columnar replay (`process` is right)."""

    plugin_name = "late_cross"

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        return min(super().next_active_row(asset, candles, start, portfolio) + 1, len(candles))
