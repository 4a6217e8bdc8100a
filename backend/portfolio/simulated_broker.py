from datetime import datetime

import structlog

from backend.dtos import FillDTO, OrderDTO, OrderSide
from backend.interfaces import IBroker
from backend.portfolio.ledger import Ledger

log = structlog.get_logger(__name__)

MIN_NOTIONAL = 0.01  # quote currency; smaller remainders (float dust) are not orders


class SimulatedBroker(IBroker):
    """Fills market orders at the reference price moved against us by the slippage, charges the
    fee on the notional, and never lets the spot account go short or below zero cash."""

    def __init__(self, ledger: Ledger, fee_rate: float, slippage_bps: float = 0.0) -> None:
        self._ledger = ledger
        self._fee_rate = fee_rate
        self._slippage = slippage_bps / 10_000

    def submit(self, order: OrderDTO, timestamp: datetime) -> FillDTO | None:
        direction = 1 if order.side is OrderSide.BUY else -1
        price = order.reference_price * (1 + direction * self._slippage)
        quantity = self._ledger.capped_quantity(order.asset, order.side, order.quantity, price, self._fee_rate)
        if quantity * price < MIN_NOTIONAL:
            log.warning("order_rejected", asset=order.asset, side=order.side.value,
                        reason="no cash" if order.side is OrderSide.BUY else "no position")
            return None
        fill = FillDTO(
            asset=order.asset,
            side=order.side,
            quantity=quantity,
            price=price,
            fee=quantity * price * self._fee_rate,
            timestamp=timestamp,
        )
        self._ledger.apply_fill(fill)
        return fill
