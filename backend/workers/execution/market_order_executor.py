from backend.dtos import BaseContextDTO, FillDTO, OrderDTO, TradePlanDTO
from backend.interfaces import IWorker, WorkerCategory


class MarketOrderExecutor(IWorker):
    """Turns the tick's trade plan into a market order at the close and sends it to the broker
    the environment provides (simulated fills, or the exchange where live orders are allowed)."""

    plugin_name = "market_order_executor"
    category = WorkerCategory.EXECUTION
    optional = (TradePlanDTO,)
    produces = (FillDTO,)
    columnar = True
    columnar_across_assets = True  # stateless
    acts_only_on_signals = True  # executes the tick's plan only

    def process(self, asset: str) -> None:
        plan = self._optional(asset, TradePlanDTO)
        if plan is None:
            return
        base = self._base(asset)
        # Booked and logged by the account.
        ticket = self.services.broker.place(self._order(asset, plan, base), base.timestamp)
        if ticket.fill is not None:
            self.context.set_result_dto(asset, ticket.fill)

    def _order(self, asset: str, plan: TradePlanDTO, base: BaseContextDTO) -> OrderDTO:
        # From a validated plan and the tick's own close: nothing to validate again.
        return OrderDTO.trusted(
            asset=asset, side=plan.side, quantity=plan.quantity,
            reference_price=base.close, reason=plan.reason,
        )
