"""What a strategy's workers place orders through: its own account (no strategy id anywhere)."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from backend.dtos import FillDTO, OrderDTO, OrderSide, OrderStatus, OrderType


@dataclass(frozen=True)
class OrderView:
    """An order of the run's account as it stands (read-only)."""

    client_order_id: str
    asset: str
    side: OrderSide
    order_type: OrderType
    quantity: float
    filled_quantity: float
    average_price: float  # of what filled (0 before any fill)
    fee: float  # of what filled, in the quote currency
    limit_price: float | None
    trigger_price: float | None
    status: OrderStatus
    placed_at: datetime | None  # the candle it was decided on
    journaled_at: datetime
    protective: bool  # a position's protective stop or take-profit, kept by the account
    exchange_order_id: str | None
    reason: str  # why it was placed
    detail: str | None  # why it is in its state, as the venue said (a refusal, an expiry)


class OrderTicket(NamedTuple):
    """What became of an order at once: its id (None when it was never placed: skipped, or too
    small), its status, and the fill booked at placement if any (a market order's). A named tuple:
    one per order, built on a backtest's hot path."""

    client_order_id: str | None
    status: OrderStatus
    fill: FillDTO | None = None


class IBroker(ABC):
    """Where a strategy's orders go: a simulator (backtest, paper) or a live exchange."""

    @abstractmethod
    def place(self, order: OrderDTO, timestamp: datetime) -> OrderTicket:
        """Place any order on the candle opened at timestamp; what became of it at once."""

    def submit(self, order: OrderDTO, timestamp: datetime) -> FillDTO | None:
        """Place a market order: its fill, or None when nothing was filled (the reason is logged)."""
        return self.place(order, timestamp).fill

    @abstractmethod
    def cancel(self, client_order_id: str) -> OrderStatus:
        """Cancel an open order of this account: its status afterwards (filled, if it filled first)."""

    @abstractmethod
    def amend(self, client_order_id: str, quantity: float | None = None, limit_price: float | None = None,
              trigger_price: float | None = None) -> OrderStatus:
        """Change an open order's quantity or prices in place: its status afterwards."""

    @abstractmethod
    def open_orders(self, asset: str | None = None) -> list[OrderView]:
        """The account's orders not done yet (of one asset), oldest first."""

    @abstractmethod
    def protect(self, asset: str, stop_price: float | None, take_profit_price: float | None = None) -> None:
        """From now on, hold a stop (and a take-profit) on the venue for the whole position in asset,
        moved here when called again with other prices; None: no protection (its orders are
        cancelled)."""
