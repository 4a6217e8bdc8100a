from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from pydantic import Field, model_validator

from backend.dtos import RiskLevel, VolatilityDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.context_provider import DtoColumns
from backend.workers.indicators import WilderAtr


class VolatilityAssessorParams(WorkerParams):
    atr_period: int = Field(default=14, ge=1)
    low_atr_pct: float = Field(default=0.4, gt=0)
    high_atr_pct: float = Field(default=1.2, gt=0)

    @model_validator(mode="after")
    def _low_below_high(self) -> "VolatilityAssessorParams":
        if self.low_atr_pct >= self.high_atr_pct:
            raise ValueError("low_atr_pct must be smaller than high_atr_pct")
        return self

    def history_needed(self) -> int:
        return self.atr_period  # the ATR's seed


@dataclass(frozen=True)
class VolatilityColumns(DtoColumns[VolatilityDTO]):
    """The VolatilityDTO of every row of a block (ATR None: warming up). `atr_pct` holds the same
    percentages as a numpy array (NaN while warming up), `levels` the rows' RiskLevels (objects);
    `values` gives both without building a DTO per row."""

    dto_type = VolatilityDTO
    atr: list[float | None]
    atr_pct: np.ndarray
    levels: np.ndarray

    def at(self, row: int) -> VolatilityDTO:
        atr = self.atr[row]
        if atr is None:
            return VolatilityDTO.trusted(atr=None, atr_pct=None, risk_level=RiskLevel.WARMING_UP)
        return VolatilityDTO.trusted(atr=atr, atr_pct=float(self.atr_pct[row]), risk_level=self.levels[row])

    def __len__(self) -> int:
        return len(self.atr)

    def values(self, field: str, dtype: type = float) -> np.ndarray:
        if field == "atr_pct" and dtype is float:
            return self.atr_pct
        if field == "risk_level" and dtype is object:
            return self.levels
        return super().values(field, dtype)


class VolatilityAssessor(IWorker):
    """ATR as a percentage of the close, bucketed into a risk level. After a hole in the data the
    ATR is seeded again from the candles that follow it (warming up meanwhile): the move across
    the hole is not the range of one candle."""

    plugin_name = "volatility_assessor"
    category = WorkerCategory.CONTEXT
    Params = VolatilityAssessorParams
    produces = (VolatilityDTO,)
    columnar = True
    columnar_across_assets = True  # its state is per asset
    params: VolatilityAssessorParams

    def __init__(self, params: VolatilityAssessorParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._atrs: dict[str, WilderAtr] = {}

    def process(self, asset: str) -> None:
        candle = self._candle(asset)
        if asset not in self._atrs or candle.missing_before:
            self._atrs[asset] = WilderAtr(self.params.atr_period)
        atr = self._atrs[asset]
        value = atr.update(candle.high, candle.low, candle.close)
        if value is None:
            dto = VolatilityDTO.trusted(atr=None, atr_pct=None, risk_level=RiskLevel.WARMING_UP)
        else:
            atr_pct = value / candle.close * 100
            dto = VolatilityDTO.trusted(atr=value, atr_pct=atr_pct, risk_level=self._level(atr_pct))
        self.context.set_result_dto(asset, dto)

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        atr_values: list[float | None] = []
        # Segments between holes: the ATR is seeded again at each hole, as `process` does.
        starts = [0, *np.flatnonzero(candles.missing_before).tolist(), len(candles)]
        for start, stop in pairwise(starts):
            if start == stop:
                continue
            if asset not in self._atrs or candles.missing_values[start]:
                self._atrs[asset] = WilderAtr(self.params.atr_period)
            atr_values += self._atrs[asset].update_many(
                candles.highs[start:stop], candles.lows[start:stop], candles.closes[start:stop]
            )
        # `value / close * 100` row by row, in the same order (None becomes NaN, and stays NaN).
        atr_pct = np.array(atr_values, dtype=float) / candles.closes * 100
        # `_level` on every row (NaN compares false), then warming up where there is no ATR yet.
        levels = np.full(len(candles), RiskLevel.NORMAL, dtype=object)
        levels[atr_pct <= self.params.low_atr_pct] = RiskLevel.LOW
        levels[atr_pct >= self.params.high_atr_pct] = RiskLevel.HIGH
        levels[np.isnan(atr_pct)] = RiskLevel.WARMING_UP
        self.context.set_result_columns(asset, VolatilityColumns(atr_values, atr_pct, levels))

    def _level(self, atr_pct: float) -> RiskLevel:
        if atr_pct >= self.params.high_atr_pct:
            return RiskLevel.HIGH
        if atr_pct <= self.params.low_atr_pct:
            return RiskLevel.LOW
        return RiskLevel.NORMAL
