import structlog

from backend.dtos import FillDTO, OrderDTO, TradePlanDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices

log = structlog.get_logger(__name__)


class MarketOrderExecutor(IWorker):
    """Turns the tick's trade plan into a market order at the close and sends it to the broker
    the environment provides (simulated fills, or the exchange where live orders are allowed)."""

    plugin_name = "market_order_executor"
    category = WorkerCategory.EXECUTION
    optional = (TradePlanDTO,)
    produces = (FillDTO,)
    columnar = True
    acts_only_on_signals = True  # executes the tick's plan only

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        # Bound once, to the logging configured before any run is built: through the module's lazy
        # proxy every fill would look the configuration up again, which costs more than the rest
        # of the fill's line when its level is off.
        self._log = log.bind()

    def process(self, asset: str) -> None:
        plan = self._optional(asset, TradePlanDTO)
        if plan is None:
            return
        base = self._base(asset)
        # From a validated plan and the tick's own close: nothing to validate again.
        order = OrderDTO.trusted(
            asset=asset, side=plan.side, quantity=plan.quantity,
            reference_price=base.close, reason=plan.reason,
        )
        fill = self.services.broker.submit(order, base.timestamp)
        if fill is None:
            return
        self.context.set_result_dto(asset, fill)
        self._log.info(
            "order_filled", asset=asset, side=fill.side.value, quantity=round(fill.quantity, 8),
            price=round(fill.price, 2), fee=round(fill.fee, 4), reason=plan.reason,
            candle_time=base.timestamp.isoformat(), order_id=fill.order_id,
        )
