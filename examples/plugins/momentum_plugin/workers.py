"""Momentum: the close's change over the last `lookback` candles (a context worker writing its own
DTO) and a buy signal when that change is strong enough (an opportunity worker reading it).

Invariant: no momentum is reported across a hole in the data (the window starts over after it),
and none before `lookback` candles have been seen: such ticks carry `change_pct: None`.
"""

from pydantic import Field

from backend.dtos import DTO, OpportunitySignalDTO, OrderSide
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, since_last_gap


class MomentumDTO(DTO):
    """A DTO type of the plugin's own: any pydantic model deriving from DTO will do."""

    lookback: int
    change_pct: float | None  # None while warming up


class MomentumParams(WorkerParams):
    lookback: int = Field(default=24, ge=1)

    def history_needed(self) -> int:
        return self.lookback + 1  # the close `lookback` candles ago, and the current one


class MomentumDetector(IWorker):
    """Percent change of the close over the last `lookback` candles."""

    category = WorkerCategory.CONTEXT
    Params = MomentumParams
    produces = (MomentumDTO,)
    params: MomentumParams

    def process(self, asset: str) -> None:
        window = since_last_gap(self.ohlcv.history(asset, self.params.lookback + 1))
        change = None
        if len(window) > self.params.lookback:
            change = (window[-1].close / window[0].close - 1) * 100
        self.context.set_result_dto(asset, MomentumDTO(lookback=self.params.lookback, change_pct=change))


class MomentumOpportunityParams(WorkerParams):
    min_change_pct: float = Field(default=3.0, gt=0)  # buy when the close rose at least this much
    stop_pct: float = Field(default=2.0, gt=0, lt=100)  # the signal's stop, below the close


class MomentumOpportunity(IWorker):
    """A buy signal, with a stop, on a tick whose momentum reaches `min_change_pct`."""

    category = WorkerCategory.OPPORTUNITY
    Params = MomentumOpportunityParams
    requires = (MomentumDTO,)
    produces = (OpportunitySignalDTO,)
    params: MomentumOpportunityParams

    def process(self, asset: str) -> None:
        momentum = self._require(asset, MomentumDTO)
        if momentum.change_pct is None or momentum.change_pct < self.params.min_change_pct:
            return
        close = self._base(asset).close
        self.context.set_result_dto(asset, OpportunitySignalDTO(
            side=OrderSide.BUY,
            reason=f"momentum {momentum.change_pct:+.2f}% over {momentum.lookback} candles",
            stop_price=close * (1 - self.params.stop_pct / 100),
        ))
