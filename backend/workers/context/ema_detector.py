from pydantic import Field, model_validator

from backend.dtos import EmaDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
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


class EmaDetector(IWorker):
    """Fast and slow EMA of the close. After a hole in the data both are seeded again from the
    candles that follow it (warming up meanwhile): an average across a hole would blend prices
    it never saw."""

    plugin_name = "ema_detector"
    category = WorkerCategory.CONTEXT
    Params = EmaDetectorParams
    produces = (EmaDTO,)
    params: EmaDetectorParams

    def __init__(self, params: EmaDetectorParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._emas: dict[str, tuple[Ema, Ema]] = {}

    def process(self, asset: str) -> None:
        candle = self._candle(asset)
        close = candle.close
        if asset not in self._emas or candle.missing_before:
            self._emas[asset] = (Ema(self.params.fast_period), Ema(self.params.slow_period))
        fast, slow = self._emas[asset]
        self.context.set_result_dto(asset, EmaDTO.trusted(
            fast_period=self.params.fast_period,
            slow_period=self.params.slow_period,
            fast=fast.update(close),
            slow=slow.update(close),
        ))
