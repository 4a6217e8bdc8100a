from typing import Literal

from pydantic import Field

from backend.dtos import (
    MarketRegimeDTO,
    OpportunitySignalDTO,
    OrderSide,
    PortfolioSnapshotDTO,
    Regime,
    ThreatSignalDTO,
    TradePlanDTO,
)
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns


class DcaPlannerParams(WorkerParams):
    quote_amount: float = Field(default=500.0, gt=0)  # spent per scheduled buy
    dip_multiplier: float = Field(default=1.5, gt=0)  # applied while the regime trends down
    take_profit_pct: float = Field(default=10.0, gt=0)  # sell all this far above average cost
    min_order_quote: float = Field(default=10.0, ge=0)
    # market: buy at the close; limit: with a limit order limit_offset_pct under the close.
    entry: Literal["market", "limit"] = "market"
    limit_offset_pct: float = Field(default=0.1, ge=0, lt=100)


class DcaPlanner(IWorker):
    """Dollar-cost averaging: buys quote_amount on each buy signal (more in a downtrend, none
    while a threat is raised), at the close or (`entry: limit`) with a limit order
    limit_offset_pct under it, and sells the whole position at market once a close is
    take_profit_pct above cost.

    `process` keeps no state. In a columnar replay it acts alone only to take profit, on the first
    close at or above the threshold the account's average cost gives (that cost stays put over
    quiet rows); a buy needs a buy signal, which only a tick's DTOs carry."""

    plugin_name = "dca_planner"
    category = WorkerCategory.PLANNING
    Params = DcaPlannerParams
    requires = (MarketRegimeDTO,)
    optional = (OpportunitySignalDTO, ThreatSignalDTO)
    produces = (TradePlanDTO,)
    columnar = True
    columnar_across_assets = True  # its last search is kept per asset; it reads the asset's position only
    params: DcaPlannerParams

    def __init__(self, params: DcaPlannerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        # Per asset, the current block's last take-profit search: (threshold, from row, first row
        # reaching it). Until a fill moves the average cost the threshold is the same, and so is the answer.
        self._reach: dict[str, tuple[float, int, int]] = {}

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
        limit = price * (1 - self.params.limit_offset_pct / 100) if self.params.entry == "limit" else None
        self.context.set_result_dto(asset, TradePlanDTO(
            side=OrderSide.BUY, quantity=amount / (limit or price), limit_price=limit,
            reason=f"{opportunity.reason}; regime {regime}, x{multiplier}",
        ))

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        average = portfolio.avg_entry_price
        if average is None or start >= len(candles):
            return len(candles)
        threshold = average * (1 + self.params.take_profit_pct / 100)  # the float `process` compares with
        reach = self._reach.get(asset)
        if reach is not None and reach[0] == threshold and reach[1] <= start <= reach[2]:
            return reach[2]  # no row in [reach[1], reach[2]) reaches it, so none in [start, reach[2])
        # `process`'s test on every remaining row at once: the same floats, the same >=.
        reached = candles.closes[start:] >= threshold
        first = int(reached.argmax())
        row = start + first if reached[first] else len(candles)
        self._reach[asset] = (threshold, start, row)
        return row

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        self._reach.pop(asset, None)  # rows of another block
