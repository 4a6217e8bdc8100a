"""One account's orders not done yet, and what they promise of its cash and coins.

Invariant: it holds exactly the account's orders whose status is not done (pending, open, partly
filled, unknown), oldest first, each with its request and what is booked of it; the account adds
an order before its gateway sees it and removes it once done. Used by the account's thread only.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from backend.dtos import OrderSide, OrderStatus
from backend.interfaces.broker import OrderView
from backend.interfaces.journal import JournaledOrder
from backend.interfaces.order_gateway import OrderOutcome, OrderRequest

UNSETTLED = frozenset((OrderStatus.PENDING, OrderStatus.UNKNOWN))
PENDING = OrderOutcome(OrderStatus.PENDING)


@dataclass
class OpenOrder:
    """An order not done yet: its request, and its status with what is booked of it."""

    request: OrderRequest
    booked: OrderOutcome

    @property
    def remaining(self) -> float:
        return max(self.request.quantity - self.booked.filled_quantity, 0.0)

    def view(self) -> OrderView:
        request, booked = self.request, self.booked
        return OrderView(
            client_order_id=request.client_order_id, asset=request.asset, side=request.side,
            order_type=request.order_type, quantity=request.quantity, filled_quantity=booked.filled_quantity,
            average_price=booked.average_price, fee=booked.fee,
            limit_price=request.limit_price, trigger_price=request.trigger_price, status=booked.status,
            placed_at=request.placed_at, journaled_at=request.journaled_at, protective=request.protective,
            exchange_order_id=booked.exchange_order_id, reason=request.reason, detail=booked.reason,
        )


class OpenOrders(dict[str, OpenOrder]):
    """By client order id (a dict: `get`, `in` and truth cost what a dict's do, on every order)."""

    def __init__(self, journaled: Iterable[JournaledOrder] = ()) -> None:
        super().__init__((order.request.client_order_id, OpenOrder(order.request, order.booked))
                         for order in journaled)

    def add(self, request: OrderRequest) -> None:
        """An order about to be sent (pending)."""
        self[request.client_order_id] = OpenOrder(request, PENDING)

    def of(self, asset: str | None = None) -> list[OpenOrder]:
        return [order for order in self.values() if asset is None or order.request.asset == asset]

    def unsettled(self) -> list[OpenOrder]:
        """Orders whose outcome is unknown until they are looked up (or not yet acknowledged)."""
        return [order for order in self.values() if order.booked.status in UNSETTLED]

    def working(self, asset: str) -> list[OpenOrder]:
        """asset's orders on the venue able to execute more."""
        return [order for order in self.of(asset) if order.booked.status.working]

    def protective(self, asset: str) -> list[OpenOrder]:
        """asset's position's protective orders (a stop, a take-profit)."""
        return [order for order in self.of(asset) if order.request.protective]

    def entry_pending(self, asset: str) -> bool:
        """A buy of asset is open: a protection asked with it waits for its fill."""
        return any(order.request.side is OrderSide.BUY for order in self.of(asset))

    def selling(self, asset: str) -> float:
        """What the strategy's own open sells of asset may still sell (protective orders reserve
        nothing: they cover the position together)."""
        return sum(order.remaining for order in self.of(asset)
                   if order.request.side is OrderSide.SELL and not order.request.protective)

    def reserved_cash(self, fee_rate: Callable[[OrderRequest], float]) -> float:
        """What open buys may still spend, at their price with the fee."""
        reserved = 0.0
        for order in self.values():
            request = order.request
            if request.side is OrderSide.BUY and order.remaining > 0:
                reserved += order.remaining * request.price * (1 + fee_rate(request))
        return reserved
