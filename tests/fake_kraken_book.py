"""The fake Kraken's order book rules, apart from its HTTP plumbing: how a resting order is
described, when a candle fills or triggers it, and the per-pair trading rate counter.

Invariant: these are pure rules over plain values; the FakeKraken (tests/fake_kraken.py) owns the
orders, balances and locking, and calls these to decide. The candle rules are the daemon's
simulator rules (docs/internals.md, "The fake exchange's order book"), so a backtest and a paper
run against the fake book the same fills.
"""

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

MAKER_FEE_RATE = 0.0016  # AssetPairs "fees_maker" first tier: 0.16 %
TAKER_FEE_RATE = 0.0026  # AssetPairs "fees" first tier: 0.26 %

# AddOrder, ordertype: "market", "limit", "iceberg", "stop-loss", "take-profit", "stop-loss-limit",
# "take-profit-limit", "trailing-stop", "trailing-stop-limit", "settle-position"; the fake speaks these.
RESTING_TYPES = ("limit", "stop-loss", "take-profit", "stop-loss-limit", "take-profit-limit", "trailing-stop")
TRIGGER_TYPES = ("stop-loss", "take-profit", "stop-loss-limit", "take-profit-limit")
# AddOrder, price: "Trailing Stops: Must use a relative price for this field, namely the `+` prefix,
# from which the direction will be automatic based on if the original order is a buy or sell (no
# need to use `-` or `#`). The `%` suffix also works for these order types to use a relative
# percentage price." (docs.kraken.com/api-reference/trading/add-order)
TRAILING_PRICE = re.compile(r"\+(\d+(?:\.\d+)?)(%?)")
# AddOrder, trigger: "Price signal used to trigger stop/take-profit orders"; possible values index,
# last; default last.
TRIGGER_SIGNALS = ("index", "last")
# AddOrder, timeinforce: "GTC" (good-'til-cancelled, the default), "IOC" (immediate-or-cancel),
# "GTD" (good-'til-date: expiretm must be given).
TIME_IN_FORCE = ("GTC", "IOC", "GTD")

LimitFill = Literal["through", "touch"]


@dataclass
class Candle:
    open_time: int
    open: float
    high: float
    low: float
    close: float


def triggered_at(order_type: str, side: str, trigger: float, candle: Candle) -> float | None:
    """The price at which a trigger order fires in the candle, or None.

    stop-loss: "A market order is triggered when the reference price reaches the stop price (from
    an unfavourable direction)"; take-profit: "(from a favourable direction)" (AddOrder, ordertype).
    A gap past the trigger fires at the open, else the trigger price itself when the range reaches it.
    """
    falling = (order_type.startswith("stop-loss")) == (side == "sell")  # fires on a fall in price
    if falling:
        if candle.open <= trigger:
            return candle.open
        return trigger if candle.low <= trigger else None
    if candle.open >= trigger:
        return candle.open
    return trigger if candle.high >= trigger else None


def trailing_trigger(side: str, extreme: float, amount: float | None, percent: float | None) -> float:
    """A trailing stop's trigger: "Trailing stop Sell orders follow the market up and trigger after
    price declines by a specified amount from the highest price after order entry"; "Trailing stop
    Buy orders follow the market down and trigger after price rises by a specified amount from the
    lowest price after order entry" (support.kraken.com, "Trailing stop orders"); extreme is that
    highest (lowest) price, the amount in quote or a percent of it."""
    distance = amount if amount is not None else extreme * ((percent or 0.0) / 100)
    return extreme - distance if side == "sell" else extreme + distance


def trailing_fill_at(side: str, extreme: float, amount: float | None, percent: float | None,
                     candle: Candle) -> tuple[float | None, float]:
    """(the price a trailing stop fires at in the candle, or None; its peak / trough after it), by
    the daemon's simulator rule: at the open when the candle opens past the trigger, else at the
    trigger when its range reaches it; only a candle that did not fire it moves the peak (its high)
    or trough (its low): which of a candle's high and low came first is not known."""
    trigger = trailing_trigger(side, extreme, amount, percent)
    if side == "sell":
        if candle.open <= trigger:
            return candle.open, extreme
        return (trigger, extreme) if candle.low <= trigger else (None, max(extreme, candle.high))
    if candle.open >= trigger:
        return candle.open, extreme
    return (trigger, extreme) if candle.high >= trigger else (None, min(extreme, candle.low))


def limit_fill_at(side: str, limit: float, candle: Candle, rule: LimitFill) -> float | None:
    """The price at which a resting limit fills in the candle, or None: at the open when the
    candle opens at or better than the limit, else at the limit when the range goes through it
    ("through": strictly beyond; "touch": reaching it is enough)."""
    if side == "buy":
        if candle.open <= limit:
            return candle.open
        reached = candle.low < limit if rule == "through" else candle.low <= limit
    else:
        if candle.open >= limit:
            return candle.open
        reached = candle.high > limit if rule == "through" else candle.high >= limit
    return limit if reached else None


def crosses(side: str, limit: float, price: float) -> bool:
    """A limit at this price would execute at once against the market at `price`."""
    return limit >= price if side == "buy" else limit <= price


def fires_now(order_type: str, side: str, trigger: float, price: float) -> bool:
    """A trigger order placed while the market is already past its trigger fires at once."""
    return triggered_at(order_type, side, trigger, Candle(0, price, price, price, price)) is not None


def description(side: str, volume: float, altname: str, order_type: str, price: str, price2: str) -> str:
    """descr.order as Kraken words it (ccxt's parse_order reads it back word by word), e.g.
    "buy 0.01000000 XBTUSD @ limit 49000.0", "sell 0.01000000 XBTUSD @ stop loss 48000.0 -> limit 47900.0"."""
    head = f"{side} {volume:.8f} {altname} @ "
    if order_type == "limit":
        return head + f"limit {price}"
    words = order_type.removesuffix("-limit").replace("-", " ")
    return head + f"{words} {price}" + (f" -> limit {price2}" if order_type.endswith("-limit") else "")


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# docs.kraken.com "Spot Trading Limits", "Incrementing the rate counter": the extra count by the
# seconds since the order was created or amended (< 5s, < 10s, < 15s, < 45s, < 90s, < 300s).
_AGES = (5, 10, 15, 45, 90, 300)
_DECAYING = {
    "AddOrder": (0, 0, 0, 0, 0, 0),
    "AmendOrder": (3, 2, 1, 0, 0, 0),
    "CancelOrder": (8, 6, 5, 4, 2, 1),
}
_FIXED = {"AddOrder": 1, "AmendOrder": 1, "CancelOrder": 0}


@dataclass
class OrderRateCounter:
    """Kraken's per-pair trading rate counter ("Spot Trading Limits": "Each client has a rate
    counter per pair, the count starts at 0 and the count is incremented on each transaction ...
    The count is decremented over time by a decay rate based on client tier. When the rate counter
    threshold is reached, the engine will generate EOrder:Rate limit exceeded rejection message.")."""

    threshold: float
    decay_per_second: float
    counts: dict[str, float] = field(default_factory=dict)
    _at: dict[str, float] = field(default_factory=dict)

    def charge(self, pair: str, transaction: str, order_age: float | None = None) -> bool:
        """Count the transaction; False when it would pass the threshold (the count is refused)."""
        now = time.monotonic()
        count = max(0.0, self.counts.get(pair, 0.0) - (now - self._at.get(pair, now)) * self.decay_per_second)
        cost = float(_FIXED[transaction])
        if order_age is not None:
            cost += next((extra for limit, extra in zip(_AGES, _DECAYING[transaction], strict=True)
                          if order_age < limit), 0)
        self._at[pair] = now
        if count + cost > self.threshold:
            self.counts[pair] = count
            return False
        self.counts[pair] = count + cost
        return True
