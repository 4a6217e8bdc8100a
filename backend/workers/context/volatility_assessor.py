from pydantic import Field, model_validator

from backend.dtos import RiskLevel, VolatilityDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
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


class VolatilityAssessor(IWorker):
    """ATR as a percentage of the close, bucketed into a risk level. After a hole in the data the
    ATR is seeded again from the candles that follow it (warming up meanwhile): the move across
    the hole is not the range of one candle."""

    plugin_name = "volatility_assessor"
    category = WorkerCategory.CONTEXT
    Params = VolatilityAssessorParams
    produces = (VolatilityDTO,)
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

    def _level(self, atr_pct: float) -> RiskLevel:
        if atr_pct >= self.params.high_atr_pct:
            return RiskLevel.HIGH
        if atr_pct <= self.params.low_atr_pct:
            return RiskLevel.LOW
        return RiskLevel.NORMAL
