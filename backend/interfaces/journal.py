"""Where a strategy account writes down what it does, before and after it does it."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from backend.dtos import AccountState, FillDTO
from backend.interfaces.order_gateway import OrderOutcome, OrderRequest


@dataclass(frozen=True)
class JournaledOrder:
    """An order not done yet, as the journal knows it: its request, and its status with what was
    booked of it (cumulative filled quantity, average price and fee) as an outcome."""

    request: OrderRequest
    booked: OrderOutcome


@dataclass(frozen=True)
class Protection:
    """What a held position is protected by: a stop on the venue, and optionally a take-profit."""

    stop_price: float
    take_profit_price: float | None = None


class IAccountJournal(ABC):
    """One strategy account's journal (it knows which account; callers never pass an id)."""

    # False for a journal that keeps nothing (backtests): the account then skips the per-candle
    # save, the one call it would make on every tick.
    durable: bool = True

    @abstractmethod
    def record_intent(self, request: OrderRequest) -> None:
        """Durably note an order about to be sent (pending); called before the gateway sees it."""

    @abstractmethod
    def record_update(self, request: OrderRequest, booked: OrderOutcome, fill: FillDTO | None,
                      account: AccountState) -> None:
        """The order's new state with all that is booked of it (cumulative) and, with a fill, the fill
        and the account it produced: all or nothing, and one event in the order's history."""

    @abstractmethod
    def open_orders(self) -> list[JournaledOrder]:
        """Orders not done (pending, open, partly filled, unknown), oldest first."""

    def booked(self, client_order_id: str) -> OrderOutcome | None:
        """What is booked of an order by whatever wrote this account (None: nothing journaled)."""
        return None

    @abstractmethod
    def save(self, account: AccountState, symbol: str, candle_time: datetime) -> None:
        """The account after a processed candle, with that candle as the symbol's cursor."""

    @abstractmethod
    def cursors(self) -> dict[str, datetime]:
        """Per symbol, the last candle processed (by an earlier run of the daemon too)."""

    def protections(self) -> dict[str, Protection]:
        """Per asset, the protection asked for its position (across restarts)."""
        return {}

    def save_protection(self, asset: str, protection: Protection | None) -> None:  # noqa: B027 (keeps nothing)
        """Asset's protection from now on (None: none)."""


class InMemoryJournal(IAccountJournal):
    """Backtests: nothing survives the process, nothing is slowed down by disk writes."""

    durable = False

    def record_intent(self, request: OrderRequest) -> None:
        pass

    def record_update(self, request: OrderRequest, booked: OrderOutcome, fill: FillDTO | None,
                      account: AccountState) -> None:
        pass

    def open_orders(self) -> list[JournaledOrder]:
        return []

    def save(self, account: AccountState, symbol: str, candle_time: datetime) -> None:
        pass

    def cursors(self) -> dict[str, datetime]:
        return {}
