from backend.dtos import EmaDTO, OpportunitySignalDTO, OrderSide
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices


class EmaCrossOpportunity(IWorker):
    """A buy signal when the fast EMA crosses above the slow one (below on the previous candle,
    above on this one), a sell signal when it crosses below. Nothing while either EMA warms up,
    so no cross is seen across a hole in the data (the EMAs reseed after one)."""

    plugin_name = "ema_cross_opportunity"
    category = WorkerCategory.OPPORTUNITY
    Params = WorkerParams
    requires = (EmaDTO,)
    produces = (OpportunitySignalDTO,)

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._previous: dict[str, EmaDTO] = {}  # per asset, the EMAs of the previous candle

    def process(self, asset: str) -> None:
        ema = self._require(asset, EmaDTO)
        previous = self._previous.get(asset)
        self._previous[asset] = ema
        if previous is None or previous.fast is None or previous.slow is None:
            return
        fast, slow = ema.fast, ema.slow
        if fast is None or slow is None:
            return
        if previous.fast < previous.slow and fast > slow:
            side, direction = OrderSide.BUY, "above"
        elif previous.fast > previous.slow and fast < slow:
            side, direction = OrderSide.SELL, "below"
        else:
            return
        self.context.set_result_dto(asset, OpportunitySignalDTO.trusted(
            side=side, reason=f"EMA({ema.fast_period}) crossed {direction} EMA({ema.slow_period})",
        ))
