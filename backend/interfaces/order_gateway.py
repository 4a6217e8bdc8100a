"""Where an account's orders are executed: a simulator or an exchange. A gateway turns an order
into an outcome and nothing else; it never touches the account (StrategyAccount books fills)."""

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from backend.dtos import OrderSide


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str  # unique per order; journaled before the order is sent
    asset: str
    side: OrderSide
    quantity: float  # already capped to what the account can do
    reference_price: float  # the candle close the plan was made at
    journaled_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    reason: str = ""  # why it was planned (the plan's reason), for its log lines


class OutcomeStatus(StrEnum):
    FILLED = "filled"  # done, with `filled_quantity` > 0 (possibly less than asked)
    REJECTED = "rejected"  # done with nothing executed (refused, canceled, expired)
    UNKNOWN = "unknown"  # may or may not exist on the venue: settle it, never send it again


@dataclass(frozen=True)
class OrderOutcome:
    status: OutcomeStatus
    filled_quantity: float = 0.0
    average_price: float = 0.0
    fee: float = 0.0  # in the quote currency
    exchange_order_id: str | None = None
    reason: str | None = None
    complete: bool = True  # False: the venue ended the order with part of it unfilled


class IOrderGateway(ABC):
    # Gateways trading the same venue account share this object (their client), so that
    # reconciliation can add up what the strategies on one account hold.
    venue_account: object | None = None

    def new_client_order_id(self) -> str:
        """A new order's id, unique across restarts, in the form the venue accepts (a UUID here)."""
        return str(uuid.uuid4())

    def minimum_quantity(self, asset: str) -> float:
        """The smallest order of asset the venue takes (0: any); a position below it is dust."""
        return 0.0

    @abstractmethod
    def sizing(self, asset: str, side: OrderSide, reference_price: float) -> tuple[float, float]:
        """(price, fee rate) to size an order on: a buy is sized on the worst price the gateway may
        fill at, so that the fill can never cost more cash than the account has."""

    @abstractmethod
    def execute(self, request: OrderRequest) -> OrderOutcome:
        """Send the order once and report what became of it; UNKNOWN when that cannot be told.
        Raises OrderNotPlacedError when the venue refused the request itself (nothing executed)."""

    @abstractmethod
    def settle(self, request: OrderRequest) -> OrderOutcome:
        """Look up an order whose outcome was UNKNOWN (by its client order id); never re-sends it."""

    def open_orders(self) -> list[str] | None:
        """Client order ids (or the venue's ids) of the orders open on the venue that belong to this
        gateway's strategy link, for reconciliation; None for a simulated venue."""
        return None

    def holdings(self) -> dict[str, float] | None:
        """What the venue account holds per currency (e.g. {"BTC": 0.5, "USD": 1000.0}), for
        reconciliation; None for a simulated venue, which has nothing to reconcile with."""
        return None
