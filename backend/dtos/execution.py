"""Plans, orders and fills."""

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar

import numpy as np
from pydantic import Field, model_validator

from backend.dtos.base import DTO


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    """What the venue does with an order: at once (market), resting at a price (limit), or waiting
    for a trigger price and then at market (stop_loss, take_profit) or at a limit (*_limit). A
    stop is reached from the unfavourable side (a sell stop below the price), a take-profit from the
    favourable one (a sell take-profit above it). A trailing stop's trigger follows the market: a
    fixed distance below the highest price since it was placed (a sell; above the lowest, a buy),
    then at market."""

    MARKET = "market"
    LIMIT = "limit"
    STOP_LOSS = "stop_loss"
    STOP_LOSS_LIMIT = "stop_loss_limit"
    TAKE_PROFIT = "take_profit"
    TAKE_PROFIT_LIMIT = "take_profit_limit"
    TRAILING_STOP = "trailing_stop"

    @property
    def has_limit(self) -> bool:
        return self in (OrderType.LIMIT, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT)

    @property
    def has_trigger(self) -> bool:
        """Waits for a fixed trigger_price (a trailing stop's trigger moves: its offset is fixed)."""
        return self not in (OrderType.MARKET, OrderType.LIMIT, OrderType.TRAILING_STOP)


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till cancelled
    IOC = "ioc"  # immediate or cancel: what does not fill at once expires
    GTD = "gtd"  # good till date: expires at `expires_at`


class OrderStatus(StrEnum):
    """One order's state machine, for every venue and the simulator:
    pending -> open -> partially_filled -> filled | canceled | expired | rejected, and unknown
    (the outcome is ambiguous: settled by looking the order up, never by sending it again)."""

    PENDING = "pending"  # journaled, not yet acknowledged by the venue
    OPEN = "open"  # resting on the venue (a trigger order waiting for its price)
    PARTIALLY_FILLED = "partially_filled"  # still open, part of it executed
    FILLED = "filled"
    CANCELED = "canceled"  # by the strategy, the operator or the venue (possibly after a partial fill)
    EXPIRED = "expired"  # its time in force ran out (possibly after a partial fill)
    REJECTED = "rejected"  # refused: nothing executed
    UNKNOWN = "unknown"

    @property
    def done(self) -> bool:
        """Final: nothing more will execute."""
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED)

    @property
    def working(self) -> bool:
        """On the venue and able to execute more."""
        return self in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


class TradePlanDTO(DTO):
    """What a planner asks the tick's executor for: buy or sell quantity, at market or, with a
    limit_price, with a limit order resting at that price; a buy's stop_price and target_price say
    where the plan exits (an executor that protects orders holds them on the venue)."""

    side: OrderSide
    quantity: float = Field(gt=0)
    reason: str
    stop_price: float | None = None
    target_price: float | None = None
    limit_price: float | None = Field(default=None, gt=0)  # None: at market


Price = TypeVar("Price", float, np.ndarray)


def trailing_trigger(side: OrderSide, extreme: Price, offset: float | None, offset_pct: float | None) -> Price:
    """A trailing stop's trigger when the best price since it was placed (the peak for a sell, the
    trough for a buy) is extreme: offset (quote) or offset_pct percent of extreme away from it,
    against the order. The one formula of the simulator, tick by tick and on columns of peaks."""
    distance = offset if offset is not None else extreme * ((offset_pct or 0.0) / 100)
    return extreme - distance if side is OrderSide.SELL else extreme + distance


class PricedOrder(Protocol):
    """An order's prices (an OrderDTO's, an OrderRequest's), read-only."""

    @property
    def side(self) -> OrderSide: ...
    @property
    def order_type(self) -> "OrderType": ...
    @property
    def reference_price(self) -> float: ...
    @property
    def limit_price(self) -> float | None: ...
    @property
    def trigger_price(self) -> float | None: ...
    @property
    def trailing_offset(self) -> float | None: ...
    @property
    def trailing_offset_pct(self) -> float | None: ...


def sizing_price(order: PricedOrder) -> float:
    """The price a non-market order is sized and reserved at: its limit, else its trigger, else (a
    trailing stop) its first trigger, as placed at the reference price."""
    if order.order_type is OrderType.TRAILING_STOP:
        return trailing_trigger(order.side, order.reference_price, order.trailing_offset, order.trailing_offset_pct)
    return order.limit_price or order.trigger_price or order.reference_price


class OrderDTO(DTO):
    """An order a worker asks its broker for. A market order (the default) needs nothing more; a
    limit order its limit_price; a stop or take-profit its trigger_price (and a *_limit one both);
    a trailing stop one of trailing_offset and trailing_offset_pct."""

    asset: str
    side: OrderSide
    quantity: float = Field(gt=0)
    reference_price: float = Field(gt=0)  # the price the plan was made at
    reason: str
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = Field(default=None, gt=0)
    trigger_price: float | None = Field(default=None, gt=0)
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_at: datetime | None = None  # GTD only
    post_only: bool = False  # a limit order that would execute at once is rejected instead (maker only)
    # A trailing stop's distance from the peak (a sell) or trough (a buy) since it was placed: in the
    # quote currency, or in percent of that peak or trough (2.5: 2.5 %).
    trailing_offset: float | None = Field(default=None, gt=0)
    trailing_offset_pct: float | None = Field(default=None, gt=0, lt=100)
    # A buy's protection: once it fills, the position is protected by a stop (and a take-profit) on the
    # venue, as `broker.protect` sets it.
    stop_loss_price: float | None = Field(default=None, gt=0)
    take_profit_price: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _prices_match_the_type(self) -> "OrderDTO":
        kind = self.order_type
        if kind.has_limit != (self.limit_price is not None):
            raise ValueError(f"a {kind} order {'needs' if kind.has_limit else 'takes no'} limit_price")
        if kind.has_trigger != (self.trigger_price is not None):
            raise ValueError(f"a {kind} order {'needs' if kind.has_trigger else 'takes no'} trigger_price")
        trails = kind is OrderType.TRAILING_STOP
        offsets = (self.trailing_offset is not None) + (self.trailing_offset_pct is not None)
        if offsets != (1 if trails else 0):
            raise ValueError("a trailing_stop order needs one of trailing_offset and trailing_offset_pct" if trails
                             else f"a {kind} order takes no trailing_offset nor trailing_offset_pct")
        if trails and self.time_in_force is TimeInForce.IOC:
            raise ValueError("a trailing_stop order waits for the market: gtc or gtd, not ioc")
        if (self.time_in_force is TimeInForce.GTD) != (self.expires_at is not None):
            raise ValueError("expires_at goes with time_in_force gtd, and only with it")
        if self.post_only and kind is not OrderType.LIMIT:
            raise ValueError("post_only is for limit orders")
        if self.side is OrderSide.SELL and (self.stop_loss_price or self.take_profit_price):
            raise ValueError("stop_loss_price and take_profit_price protect what a buy opens")
        if self.take_profit_price is not None and self.stop_loss_price is None:
            raise ValueError("a take_profit_price goes with a stop_loss_price")
        return self


class FillDTO(DTO):
    asset: str
    side: OrderSide
    quantity: float
    price: float
    fee: float
    timestamp: datetime
    order_id: str | None = None  # the exchange's id for live orders


def expiry_after(candles: int, timeframe: timedelta, placed_at: datetime) -> datetime:
    """The GTD expiry of an order placed on the candle opened at placed_at that may fill on the next
    `candles` candles: it expires at the open of the one after them."""
    return placed_at + timeframe * (candles + 1)
