from pydantic import Field

from backend.dtos import OpportunitySignalDTO, OrderSide, ThreatAction, ThreatSignalDTO, TradePlanDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams


class AllInPlannerParams(WorkerParams):
    min_order_quote: float = Field(default=10.0, ge=0)  # no buy with less cash than this


class AllInPlanner(IWorker):
    """Always in or out: on a buy signal while flat, buys with all the cash (the account takes
    the fee out of it; none while a threat is raised); on a sell signal or an exit threat while
    holding, sells the whole position."""

    plugin_name = "all_in_planner"
    category = WorkerCategory.PLANNING
    Params = AllInPlannerParams
    optional = (OpportunitySignalDTO, ThreatSignalDTO)
    produces = (TradePlanDTO,)
    columnar = True
    columnar_across_assets = True  # stateless
    acts_only_on_signals = True  # sizes the tick's signals only
    params: AllInPlannerParams

    def process(self, asset: str) -> None:
        opportunity = self._optional(asset, OpportunitySignalDTO)
        threat = self._optional(asset, ThreatSignalDTO)
        if opportunity is None and threat is None:
            return
        base = self._base(asset)
        portfolio = base.portfolio
        if portfolio.position_qty > 0:
            if threat is not None and threat.action is ThreatAction.EXIT_POSITIONS:
                reason = threat.reason
            elif opportunity is not None and opportunity.side is OrderSide.SELL:
                reason = opportunity.reason
            else:
                return
            # From the account's position (above 0) and a signal's reason: nothing to validate again.
            self.context.set_result_dto(asset, TradePlanDTO.trusted(
                side=OrderSide.SELL, quantity=portfolio.position_qty, reason=reason,
            ))
        elif (opportunity is not None and opportunity.side is OrderSide.BUY and threat is None
              and portfolio.cash > 0 and portfolio.cash >= self.params.min_order_quote):
            self.context.set_result_dto(asset, TradePlanDTO.trusted(  # cash and a checked close, both above 0
                side=OrderSide.BUY, quantity=portfolio.cash / base.close, reason=opportunity.reason,
            ))
