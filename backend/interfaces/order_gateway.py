"""Where an account's orders are executed: a simulator or an exchange. A gateway turns an order
into outcomes and nothing else; it never touches the account (StrategyAccount books fills).

Invariant: an outcome reports the order as a whole: its filled quantity, average price and fee
are cumulative over the order's life, so the account books only what exceeds what it has booked of
that order, and a report repeated, late or out of order changes nothing.
"""

import os
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backend.dtos import OrderSide, OrderStatus, OrderType, TimeInForce
from backend.dtos.execution import sizing_price
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.ohlcv_provider import Candle
from backend.market_data.market_rules import NO_RULES, MarketRules

# Order ids need to be unique, not secret: drawn from a generator of their own, seeded from the OS's
# randomness (again in a forked child, which would otherwise repeat its parent's ids), so that a
# plugin's random.seed cannot repeat them. uuid.uuid4 reads the OS's randomness on every call: a
# system call and 2 µs, a tenth of a backtest's market order.
_order_ids = random.Random()
os.register_at_fork(after_in_child=_order_ids.seed)
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version and variant bits of a UUID
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122's variant


def random_uuid_hex() -> str:
    """The 32 hex digits of a new random (version 4) UUID."""
    return f"{_order_ids.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str  # unique per order; journaled before the order is sent
    asset: str
    side: OrderSide
    quantity: float  # already capped to what the account can do
    reference_price: float  # the candle close the plan was made at
    journaled_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    reason: str = ""  # why it was planned (the plan's reason), for its log lines
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    trigger_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_at: datetime | None = None
    post_only: bool = False
    placed_at: datetime | None = None  # the candle it was decided on: a simulator fills it on later ones
    protective: bool = False  # a position's protective stop or take-profit, kept by the account
    trailing_offset: float | None = None  # a trailing stop's distance from the peak / trough, in quote
    trailing_offset_pct: float | None = None  # or in percent of it

    @property
    def resting(self) -> bool:
        """Waits on the venue for a price (anything but a market order)."""
        return self.order_type is not OrderType.MARKET

    @property
    def price(self) -> float:
        """The price it is sized and reserved at (`sizing_price`)."""
        return sizing_price(self)


@dataclass(frozen=True)
class OrderOutcome:
    status: OrderStatus
    filled_quantity: float = 0.0  # cumulative
    average_price: float = 0.0  # of all that filled
    fee: float = 0.0  # cumulative, in the quote currency
    exchange_order_id: str | None = None
    reason: str | None = None

    @property
    def complete(self) -> bool:
        """False for an order the venue ended with part of it unfilled."""
        return self.status is not OrderStatus.CANCELED and self.status is not OrderStatus.EXPIRED


class IOrderGateway(ABC):
    # Gateways trading the same venue account share this object (their client), so that
    # reconciliation can add up what the strategies on one account hold.
    venue_account: object | None = None

    def new_client_order_id(self) -> str:
        """A new order's id, unique across restarts, in the form the venue accepts (a UUID here)."""
        digits = random_uuid_hex()
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"

    def market_rules(self, asset: str) -> MarketRules:
        """The venue's rules for orders of asset (tick, lot, minimum order and cost), which the
        account rounds and checks every order by before it reaches the gateway; a position below
        the minimum order is dust. NO_RULES: none known."""
        return NO_RULES

    @abstractmethod
    def sizing(self, asset: str, side: OrderSide, reference_price: float) -> tuple[float, float]:
        """(price, fee rate) to size a market order on: a buy is sized on the worst price the
        gateway may fill at, so that the fill can never cost more cash than the account has."""

    def maker_fee_rate(self, asset: str) -> float:
        """The fee rate of an order that rests on the book (to reserve a limit buy's cash)."""
        return self.sizing(asset, OrderSide.BUY, 1.0)[1]

    @abstractmethod
    def execute(self, request: OrderRequest) -> OrderOutcome:
        """Send the order once and report what became of it: a market order done (or UNKNOWN when
        that cannot be told), a resting one OPEN (or already done). Raises OrderNotPlacedError
        when the venue refused the request itself (nothing executed)."""

    @abstractmethod
    def settle(self, request: OrderRequest) -> OrderOutcome:
        """Look up an order whose outcome was UNKNOWN (by its client order id); never re-sends it."""

    def poll(self, orders: Sequence[tuple[OrderRequest, str | None]], symbol: str,
             candle: Candle) -> list[tuple[str, OrderOutcome]]:
        """What became of open orders (request, exchange order id) as of this closed candle of their
        asset: (client order id, outcome) for each whose state or fills changed (a simulator
        decides fills on the candle; a venue reports what it did)."""
        return []

    def next_event_row(self, symbol: str, candles: CandleColumns, start: int) -> int:
        """The first row at or after start of a block on which an open order of symbol could fill,
        trigger or expire (len(candles): none), for a columnar replay; a venue's orders may fill on
        any row."""
        return start

    def cancel(self, request: OrderRequest, exchange_order_id: str | None) -> OrderOutcome:
        """Cancel an open order: its outcome afterwards (CANCELED with what filled before, FILLED when
        it filled first, UNKNOWN when that cannot be told)."""
        raise NotImplementedError(f"{type(self).__name__} has no resting orders")

    def amend(self, request: OrderRequest, exchange_order_id: str | None, amended: OrderRequest) -> OrderOutcome:
        """Change an open order's quantity or prices in place (amended: the same order with them
        changed): its outcome afterwards."""
        raise NotImplementedError(f"{type(self).__name__} has no resting orders")

    def passed_quietly(self, symbol: str, candles: CandleColumns, rows: range) -> None:  # noqa: B027 (a venue saw them)
        """Candles of symbol a columnar replay passed over in bulk, on which no open order could fill
        (`next_event_row`): a simulator brings what it tracks from candle to candle (a trailing
        stop's peak) to where polling each of them would have."""

    def resume(self, orders: Sequence[tuple[OrderRequest, OrderOutcome]]) -> None:  # noqa: B027 (a venue keeps them)
        """Orders the journal knows as open after a restart, with what was booked of them: a
        simulator takes them back on its book (a venue keeps its own)."""

    def open_orders(self) -> list[str] | None:
        """Client order ids (or the venue's ids) of the orders open on the venue that belong to this
        gateway's strategy link, for reconciliation; None for a simulated venue."""
        return None

    def holdings(self) -> dict[str, float] | None:
        """What the venue account holds per currency (e.g. {"BTC": 0.5, "USD": 1000.0}), for
        reconciliation; None for a simulated venue, which has nothing to reconcile with."""
        return None
