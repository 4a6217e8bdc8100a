"""Simulated fills for backtests and paper trading.

Invariant: a simulated order is filled in the call that sends it, or never: one journaled but not
filled (the process died in between) was never executed, and settles as rejected."""

from backend.dtos import OrderSide, OrderStatus
from backend.interfaces.order_gateway import IOrderGateway, OrderOutcome, OrderRequest


class SimulatedGateway(IOrderGateway):
    """Fills every market order at once, at the reference price moved against the order by the
    slippage, with the fee charged on the notional in the quote currency."""

    def __init__(self, fee_rate: float, slippage_bps: float = 0.0) -> None:
        self._fee_rate = fee_rate
        self._slippage = slippage_bps / 10_000

    def sizing(self, asset: str, side: OrderSide, reference_price: float) -> tuple[float, float]:
        return self._fill_price(side, reference_price), self._fee_rate

    def execute(self, request: OrderRequest) -> OrderOutcome:
        price = self._fill_price(request.side, request.reference_price)
        return OrderOutcome(OrderStatus.FILLED, filled_quantity=request.quantity, average_price=price,
                            fee=request.quantity * price * self._fee_rate)

    def settle(self, request: OrderRequest) -> OrderOutcome:
        # The candle's cursor was written before the order: that candle is never traded again,
        # so settling as never executed cannot lose a trade that a restart would make.
        return OrderOutcome(OrderStatus.REJECTED, reason="never executed: the daemon stopped between the "
                                                           "order's intent and its simulated fill")

    def _fill_price(self, side: OrderSide, reference_price: float) -> float:
        direction = 1 if side is OrderSide.BUY else -1
        return reference_price * (1 + direction * self._slippage)
