"""The operator's view of a link's orders, read from one AccountSnapshot: its open orders, each
position's protection, and what leaves a position unprotected (for /strategies, /metrics, /readyz).

Invariant: everything here is computed from the snapshot alone (and the wall clock, for ages),
so every figure of one answer is of the same moment.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend.dtos import OrderType
from backend.interfaces.broker import OrderView
from backend.portfolio.ledger import AccountSnapshot, OpenPosition


def order_age_seconds(order: OrderView, now: datetime) -> float:
    """Since the order was journaled (wall time)."""
    return (now - order.journaled_at).total_seconds()


def oldest_order_age_seconds(account: AccountSnapshot, now: datetime) -> float | None:
    """The age of the oldest open order, None when none is open."""
    return max((order_age_seconds(order, now) for order in account.open_orders), default=None)


def describe_order(order: OrderView, now: datetime) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id, "asset": order.asset, "side": order.side.value,
        "type": order.order_type.value, "quantity": order.quantity, "filled_quantity": order.filled_quantity,
        "limit_price": order.limit_price, "trigger_price": order.trigger_price, "status": order.status.value,
        "age_seconds": order_age_seconds(order, now), "protective": order.protective,
        "placed_at": order.placed_at.isoformat() if order.placed_at else None,
        "exchange_order_id": order.exchange_order_id, "reason": order.reason,
    }


@dataclass(frozen=True)
class ProtectiveLeg:
    """A stop (or take-profit) asked for a position, and the order that carries it, if any."""

    price: float
    order: OrderView | None

    @property
    def open(self) -> bool:
        """An order is actually working on the venue."""
        return self.order is not None and self.order.status.working

    def describe(self) -> dict[str, Any]:
        order = self.order
        return {"price": self.price, "client_order_id": order.client_order_id if order else None,
                "status": order.status.value if order else None, "open": self.open}


def protective_leg(account: AccountSnapshot, asset: str, kind: OrderType) -> ProtectiveLeg | None:
    """The stop (kind stop_loss) or take-profit asked for asset's position; None if none was asked."""
    protection = account.protections.get(asset)
    price = None if protection is None else (
        protection.stop_price if kind is OrderType.STOP_LOSS else protection.take_profit_price)
    if price is None:
        return None
    orders = [order for order in account.open_orders
              if order.asset == asset and order.protective and order.order_type is kind]
    # A working order first: it is what protects; else the one not settled yet.
    orders.sort(key=lambda order: not order.status.working)
    return ProtectiveLeg(price, orders[0] if orders else None)


def describe_protection(account: AccountSnapshot, asset: str) -> dict[str, Any] | None:
    """The stop and take-profit asked for asset's position and their orders; None if none asked."""
    stop = protective_leg(account, asset, OrderType.STOP_LOSS)
    if stop is None:
        return None
    take_profit = protective_leg(account, asset, OrderType.TAKE_PROFIT)
    return {"stop": stop.describe(), "take_profit": None if take_profit is None else take_profit.describe()}


def unprotected_positions(account: AccountSnapshot) -> list[tuple[OpenPosition, str]]:
    """Positions (not dust) with a stop asked for them but none working on the venue, each with why."""
    gaps = []
    for position in account.positions:
        stop = protective_leg(account, position.asset, OrderType.STOP_LOSS)
        if position.dust or stop is None or stop.open:
            continue
        if stop.order is None:
            why = f"position in {position.asset} has no open protective stop (asked at {stop.price:g})"
        else:
            why = (f"protective stop of {position.asset} (at {stop.price:g}) is {stop.order.status.value} "
                   "until settled")
        gaps.append((position, why))
    return gaps
