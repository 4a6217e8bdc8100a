from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from pydantic import Field, model_validator

from backend.dtos import EmaDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.context_provider import DtoColumns
from backend.workers.indicators import Ema


class EmaDetectorParams(WorkerParams):
    fast_period: int = Field(default=12, ge=1)
    slow_period: int = Field(default=26, ge=2)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> "EmaDetectorParams":
        if self.fast_period >= self.slow_period:
            raise ValueError("fast_period must be smaller than slow_period")
        return self

    def history_needed(self) -> int:
        return self.slow_period  # the slow EMA's seed


@dataclass(frozen=True)
class EmaColumns(DtoColumns[EmaDTO]):
    """The EmaDTO of every row of a block (None: warming up); `values` gives the fast and slow
    EMAs from these lists."""

    dto_type = EmaDTO
    fast_period: int
    slow_period: int
    fast: list[float | None]
    slow: list[float | None]

    def at(self, row: int) -> EmaDTO:
        return EmaDTO.trusted(
            fast_period=self.fast_period, slow_period=self.slow_period, fast=self.fast[row], slow=self.slow[row]
        )

    def __len__(self) -> int:
        return len(self.fast)

    def values(self, field: str, dtype: type = float) -> np.ndarray:
        if field in ("fast", "slow") and dtype is float:
            return np.array(getattr(self, field), dtype=float)  # None becomes NaN
        return super().values(field, dtype)


class EmaDetector(IWorker):
    """Fast and slow EMA of the close. After a hole in the data both are seeded again from the
    candles that follow it (warming up meanwhile): an average across a hole would blend prices
    it never saw."""

    plugin_name = "ema_detector"
    category = WorkerCategory.CONTEXT
    Params = EmaDetectorParams
    produces = (EmaDTO,)
    columnar = True
    columnar_across_assets = True  # its state is per asset
    params: EmaDetectorParams

    def __init__(self, params: EmaDetectorParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._emas: dict[str, tuple[Ema, Ema]] = {}

    def process(self, asset: str) -> None:
        candle = self._candle(asset)
        close = candle.close
        if asset not in self._emas or candle.missing_before:
            self._reseed(asset)
        fast, slow = self._emas[asset]
        self.context.set_result_dto(asset, EmaDTO.trusted(
            fast_period=self.params.fast_period,
            slow_period=self.params.slow_period,
            fast=fast.update(close),
            slow=slow.update(close),
        ))

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        closes, fast_values, slow_values = candles.close_values, [], []
        # Segments between holes: the EMAs are seeded again at each hole, as `process` does. An
        # EMA of the block is computed once for the runs replaying it (a sweep's combinations
        # share their fast and slow periods): the block's `derived` keeps it.
        starts = [0, *np.flatnonzero(candles.missing_before).tolist(), len(candles)]
        for start, stop in pairwise(starts):
            if start == stop:
                continue
            if asset not in self._emas or candles.missing_values[start]:
                self._reseed(asset)
            fast, slow = self._emas[asset]
            segment = closes[start:stop]
            fast_values += fast.update_shared(segment, candles.derived, ("close", start, stop))
            slow_values += slow.update_shared(segment, candles.derived, ("close", start, stop))
        self.context.set_result_columns(
            asset, EmaColumns(self.params.fast_period, self.params.slow_period, fast_values, slow_values)
        )

    def _reseed(self, asset: str) -> None:
        self._emas[asset] = (Ema(self.params.fast_period), Ema(self.params.slow_period))
