"""The executor of plans that name their own order: at market or a resting limit, protected on the venue.

Why a limit order's `cancel_after_candles` is a GTD expiry and not a cancel sent on the N-th
candle: the venue (or the simulator) expires a GTD order at a moment, `expires_at`, whether the
daemon is running then, catching up, or restarting; a cancel sent by a worker happens only when
the daemon processes that candle, later in live trading than in a backtest (and not at all while
it is down). With the expiry on the order, backtest, paper and live leave it on the book for the
same candles: those opened before `expires_at`, the N after the one it was decided on (see
`expiry_after`). It also keeps this worker stateless: the expiry is an order event the account
names as an active row of a columnar replay, not a row this worker must remember.
"""

from pydantic import Field

from backend.dtos import BaseContextDTO, OrderDTO, OrderSide, OrderType, TimeInForce, TradePlanDTO
from backend.dtos.execution import expiry_after
from backend.interfaces import WorkerParams, WorkerServices
from backend.workers.execution.market_order_executor import MarketOrderExecutor


class OrderExecutorParams(WorkerParams):
    post_only: bool = False  # a limit order that would execute at once is rejected instead (maker only)
    cancel_after_candles: int | None = Field(default=None, ge=1)  # an unfilled limit order expires after N candles
    protect: bool = True  # a buy carries the plan's stop_price and target_price as its protection on the venue


class OrderExecutor(MarketOrderExecutor):
    """Places the order the tick's trade plan asks for: at market, or (a plan with a limit_price)
    a limit order at that price, post-only if `post_only`, good for `cancel_after_candles`
    candles (GTD) if set; a buy's stop_price and target_price become its stop_loss_price and
    take_profit_price when `protect` (once it fills, the account holds a stop and a take-profit
    for the position on the venue). What became of the order at once (filled, resting, rejected)
    is the account's to book and log; a fill at once is this tick's FillDTO.

    Columnar: it acts on the tick's plan only; a resting order's fill or expiry is the account's
    active row."""

    plugin_name = "order_executor"
    Params = OrderExecutorParams
    params: OrderExecutorParams

    def __init__(self, params: OrderExecutorParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        if params.cancel_after_candles is not None and services.timeframe is None:
            raise ValueError("cancel_after_candles needs the run's timeframe (WorkerServices.timeframe)")

    def _order(self, asset: str, plan: TradePlanDTO, base: BaseContextDTO) -> OrderDTO:
        params = self.params
        stop = target = None
        if params.protect and plan.side is OrderSide.BUY and plan.stop_price is not None:
            stop, target = plan.stop_price, plan.target_price
        if plan.limit_price is None:
            return OrderDTO(asset=asset, side=plan.side, quantity=plan.quantity, reference_price=base.close,
                            reason=plan.reason, stop_loss_price=stop, take_profit_price=target)
        expires_at = None
        if params.cancel_after_candles is not None:
            assert self.services.timeframe is not None  # checked when built
            expires_at = expiry_after(params.cancel_after_candles, self.services.timeframe, base.timestamp)
        return OrderDTO(
            asset=asset, side=plan.side, quantity=plan.quantity, reference_price=base.close, reason=plan.reason,
            order_type=OrderType.LIMIT, limit_price=plan.limit_price, post_only=params.post_only,
            time_in_force=TimeInForce.GTC if expires_at is None else TimeInForce.GTD, expires_at=expires_at,
            stop_loss_price=stop, take_profit_price=target,
        )
