"""Where a strategy account writes down what it does, before and after it does it."""

from abc import ABC, abstractmethod
from datetime import datetime

from backend.dtos import AccountState, FillDTO
from backend.interfaces.order_gateway import OrderOutcome, OrderRequest


class IAccountJournal(ABC):
    """One strategy account's journal (it knows which account; callers never pass an id)."""

    # False for a journal that keeps nothing (backtests): the account then skips the per-candle
    # save, the one call it would make on every tick.
    durable: bool = True

    @abstractmethod
    def record_intent(self, request: OrderRequest, reason: str) -> None:
        """Durably note an order about to be sent; called before the gateway sees it."""

    @abstractmethod
    def record_outcome(self, request: OrderRequest, outcome: OrderOutcome, fill: FillDTO | None,
                       account: AccountState) -> None:
        """The order's outcome and, with a fill, the account it produced: all or nothing."""

    @abstractmethod
    def unsettled(self) -> list[OrderRequest]:
        """Orders sent whose outcome is not known yet (oldest first)."""

    def fill_booked(self, exchange_order_id: str) -> bool:
        """Whether a fill of this exchange order is booked already (by whatever path reported it)."""
        return False

    @abstractmethod
    def save(self, account: AccountState, symbol: str, candle_time: datetime) -> None:
        """The account after a processed candle, with that candle as the symbol's cursor."""

    @abstractmethod
    def cursors(self) -> dict[str, datetime]:
        """Per symbol, the last candle processed (by an earlier run of the daemon too)."""


class InMemoryJournal(IAccountJournal):
    """Backtests: nothing survives the process, nothing is slowed down by disk writes."""

    durable = False

    def record_intent(self, request: OrderRequest, reason: str) -> None:
        pass

    def record_outcome(self, request: OrderRequest, outcome: OrderOutcome, fill: FillDTO | None,
                       account: AccountState) -> None:
        pass

    def unsettled(self) -> list[OrderRequest]:
        return []

    def save(self, account: AccountState, symbol: str, candle_time: datetime) -> None:
        pass

    def cursors(self) -> dict[str, datetime]:
        return {}
