from typing import Literal

from pydantic import Field

from backend.dtos import (
    OpportunitySignalDTO,
    OrderSide,
    PortfolioSnapshotDTO,
    ThreatAction,
    ThreatSignalDTO,
    TradePlanDTO,
)
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.workers.columnar import first_row_where


class PositionSizerParams(WorkerParams):
    risk_per_trade_pct: float = Field(default=1.0, gt=0, le=100)  # equity lost if the stop is hit
    reward_risk_ratio: float = Field(default=2.0, gt=0)  # target distance / stop distance
    max_position_pct: float = Field(default=95.0, gt=0, le=100)  # cap on notional / equity
    default_stop_pct: float = Field(default=2.0, gt=0, lt=100)  # when the signal has no stop
    # market: buy at the close; limit: buy with a limit order at the signal's entry_price (at the
    # close when it names none).
    entry: Literal["market", "limit"] = "market"
    # close: sell when a close reaches the stop or the target; venue: the plan asks the venue to hold
    # them (an executor that protects orders places them with the buy), and only an exit threat sells.
    exits: Literal["close", "venue"] = "close"


class PositionSizer(IWorker):
    """Risk-based entries, exits on stop, target or an exit threat.

    Entry size: risk_per_trade_pct of equity divided by the distance from the entry price (the
    close, or the signal's entry_price with `entry: limit`) to the stop, capped by
    max_position_pct of equity; the target is reward_risk_ratio times that distance above the
    entry. No entry while a threat is raised or an entry order of the asset is still open. With
    `exits: close` it sells when a close reaches the stop or the target; with `exits: venue` the
    venue holds them (a stop-loss and a take-profit order the account keeps), so the sizer sells
    only on an exit threat and never fights them.

    Columnar: flat, it reacts to a tick's signals only; holding with `exits: close`, it acts alone
    from the first row whose close reaches the position's stop or target (an exit threat's row is
    the threat's; with `exits: venue` the venue's fills are the account's rows). Its state (the
    exits) changes only on rows where it plans an order.
    """

    plugin_name = "position_sizer"
    category = WorkerCategory.PLANNING
    Params = PositionSizerParams
    optional = (OpportunitySignalDTO, ThreatSignalDTO)
    produces = (TradePlanDTO,)
    columnar = True
    columnar_across_assets = True  # its exits are per asset; it reads the asset's position only
    params: PositionSizerParams

    def __init__(self, params: PositionSizerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._exits: dict[str, tuple[float, float]] = {}  # asset -> (stop, target)

    def process(self, asset: str) -> None:
        base = self._base(asset)
        threat = self._optional(asset, ThreatSignalDTO)
        if base.portfolio.position_qty > 0:
            self._plan_exit(asset, base.close, base.portfolio.position_qty, threat)
            return
        opportunity = self._optional(asset, OpportunitySignalDTO)
        if opportunity is None or opportunity.side is not OrderSide.BUY or threat is not None:
            return
        limit = opportunity.entry_price if self.params.entry == "limit" else None
        if limit is not None and self._entry_open(asset):
            return  # the last entry still waits for its price
        price, equity = limit or base.close, base.portfolio.equity
        stop = opportunity.stop_price or price * (1 - self.params.default_stop_pct / 100)
        if stop >= price:
            return
        risk_per_unit = price - stop
        quantity = min(
            equity * self.params.risk_per_trade_pct / 100 / risk_per_unit,
            equity * self.params.max_position_pct / 100 / price,
        )
        target = price + self.params.reward_risk_ratio * risk_per_unit
        if self.params.exits == "close":
            self._exits[asset] = (stop, target)
        self.context.set_result_dto(asset, TradePlanDTO(
            side=OrderSide.BUY, quantity=quantity, reason=opportunity.reason,
            stop_price=stop, target_price=target, limit_price=limit,
        ))

    def _entry_open(self, asset: str) -> bool:
        return any(order.side is OrderSide.BUY and not order.protective
                   for order in self.services.broker.open_orders(asset))

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        exits = self._exits.get(asset)
        if portfolio.position_qty <= 0 or exits is None:  # always so with `exits: venue`
            return len(candles)
        stop, target = exits
        closes = candles.closes
        return first_row_where(lambda low, high: (closes[low:high] <= stop) | (closes[low:high] >= target),
                               start, len(candles))

    def _plan_exit(
        self, asset: str, price: float, quantity: float, threat: ThreatSignalDTO | None
    ) -> None:
        stop, target = self._exits.get(asset, (None, None))
        if threat is not None and threat.action is ThreatAction.EXIT_POSITIONS:
            reason = threat.reason
        elif stop is not None and price <= stop:
            reason = f"stop {stop:.2f} hit"
        elif target is not None and price >= target:
            reason = f"target {target:.2f} reached"
        else:
            return
        self._exits.pop(asset, None)
        self.context.set_result_dto(
            asset, TradePlanDTO(side=OrderSide.SELL, quantity=quantity, reason=reason)
        )
