"""Momentum: the close's change over the last `lookback` candles (a context worker writing its own
DTO) and a buy signal when that change is strong enough (an opportunity worker reading it).

Invariant: no momentum is reported across a hole in the data (the window starts over after it),
and none before `lookback` candles have been seen: such ticks carry `change_pct: None`.

Both are columnar (a backtest replays them a block of candles at a time, IWorker's contract): the
detector is a CandleStepWorker, one step per candle that serves a tick and a block's every row
alike; the opportunity worker names no rows, so it is active on every row (the safe default: a
gate of its own, `next_active_row`, would only make it faster).
"""

from collections import deque

from pydantic import Field

from backend.dtos import DTO, OpportunitySignalDTO, OrderSide
from backend.interfaces import Candle, CandleStepWorker, IWorker, WorkerCategory, WorkerParams, WorkerServices


class MomentumDTO(DTO):
    """A DTO type of the plugin's own: any pydantic model deriving from DTO will do."""

    lookback: int
    change_pct: float | None  # None while warming up


class MomentumParams(WorkerParams):
    lookback: int = Field(default=24, ge=1)

    def history_needed(self) -> int:
        return self.lookback + 1  # the close `lookback` candles ago, and the current one


class MomentumDetector(CandleStepWorker):
    """Percent change of the close over the last `lookback` candles."""

    Params = MomentumParams
    produces = (MomentumDTO,)
    params: MomentumParams

    def __init__(self, params: MomentumParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._closes: dict[str, deque[float]] = {}  # per asset, the latest closes since the last hole

    def step(self, asset: str, candle: Candle) -> MomentumDTO:
        closes = self._closes.get(asset)
        if closes is None or candle.missing_before:
            closes = self._closes[asset] = deque(maxlen=self.params.lookback + 1)
        closes.append(candle.close)
        change = None
        if len(closes) > self.params.lookback:
            change = (closes[-1] / closes[0] - 1) * 100
        return MomentumDTO(lookback=self.params.lookback, change_pct=change)


class MomentumOpportunityParams(WorkerParams):
    min_change_pct: float = Field(default=3.0, gt=0)  # buy when the close rose at least this much
    stop_pct: float = Field(default=2.0, gt=0, lt=100)  # the signal's stop, below the close


class MomentumOpportunity(IWorker):
    """A buy signal, with a stop, on a tick whose momentum reaches `min_change_pct`."""

    category = WorkerCategory.OPPORTUNITY
    Params = MomentumOpportunityParams
    requires = (MomentumDTO,)
    produces = (OpportunitySignalDTO,)
    columnar = True
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
