from pydantic import Field

from backend.dtos import (
    MarketRegimeDTO,
    OpportunitySignalDTO,
    OrderSide,
    Regime,
    ThreatSignalDTO,
    TradePlanDTO,
)
from backend.interfaces import IWorker, WorkerCategory, WorkerParams


class DcaPlannerParams(WorkerParams):
    quote_amount: float = Field(default=500.0, gt=0)  # spent per scheduled buy
    dip_multiplier: float = Field(default=1.5, gt=0)  # applied while the regime trends down
    take_profit_pct: float = Field(default=10.0, gt=0)  # sell all this far above average cost
    min_order_quote: float = Field(default=10.0, ge=0)


class DcaPlanner(IWorker):
    """Dollar-cost averaging: buys quote_amount on each buy signal (more in a downtrend, none
    while a threat is raised) and sells the whole position at take_profit_pct above cost."""

    plugin_name = "dca_planner"
    category = WorkerCategory.PLANNING
    Params = DcaPlannerParams
    requires = (MarketRegimeDTO,)
    optional = (OpportunitySignalDTO, ThreatSignalDTO)
    produces = (TradePlanDTO,)
    params: DcaPlannerParams

    def process(self, asset: str) -> None:
        base = self._base(asset)
        portfolio, price = base.portfolio, base.close
        average = portfolio.avg_entry_price
        if average is not None and price >= average * (1 + self.params.take_profit_pct / 100):
            self.context.set_result_dto(asset, TradePlanDTO(
                side=OrderSide.SELL, quantity=portfolio.position_qty,
                reason=f"take profit: {price:.2f} is {self.params.take_profit_pct}% above cost {average:.2f}",
            ))
            return
        opportunity = self._optional(asset, OpportunitySignalDTO)
        if opportunity is None or opportunity.side is not OrderSide.BUY:
            return
        if self._optional(asset, ThreatSignalDTO) is not None:
            return
        regime = self._require(asset, MarketRegimeDTO).regime
        multiplier = self.params.dip_multiplier if regime is Regime.TRENDING_DOWN else 1.0
        amount = min(self.params.quote_amount * multiplier, portfolio.cash)
        if amount < self.params.min_order_quote:
            return
        self.context.set_result_dto(asset, TradePlanDTO(
            side=OrderSide.BUY, quantity=amount / price,
            reason=f"{opportunity.reason}; regime {regime}, x{multiplier}",
        ))
