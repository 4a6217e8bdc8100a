"""An exchange's market rules per symbol (tick, lot, minimum order and cost) and `markets.json`,
their cache beside downloaded data (docs/configuration.md, "Market rules").

Invariants: the rules only ever make an order coarser, never larger: a quantity is truncated to the
lot (never above what was asked), a limit price moves to the tick on the side that is never worse
for its order (a buy's down, a sell's up), a trigger price and a trailing offset to the nearest tick
(as the venue's client rounds them; there is no worse side to a trigger), and no price below one
tick; `NO_RULES` (all unset) changes nothing and refuses nothing. markets.json is written whole or
not at all (a file beside it, fsynced, renamed over it) and reads back into equal rules; a file
that is not such a document is refused as a ConfigError naming it and the key that is wrong.
"""

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from backend.atomic_file import replace_atomically
from backend.errors import ConfigError

MARKETS_FILE_NAME = "markets.json"  # beside the data files it describes
# A position is a sum of fills in whole lots, held as a float a hair below or above it (0.7 + 0.1 ==
# 0.7999999999999999): nudged up before truncating to the lot, so that selling all of it sells all of
# it instead of leaving one lot behind as dust.
LOT_NUDGE = 1 + 1e-12


@dataclass(frozen=True)
class MarketRules:
    price_increment: float | None = None  # the tick: every price is a multiple of it (None: any)
    amount_increment: float | None = None  # the lot: every quantity is a multiple of it (None: any)
    min_quantity: float = 0.0  # the smallest order, in the base currency; a position below it is dust
    min_cost: float = 0.0  # the smallest order's quantity x price, in the quote currency

    def quantity(self, quantity: float) -> float:
        """quantity truncated to the lot, never above quantity."""
        lot = self.amount_increment
        if lot is None:
            return quantity
        return min(quantity, _to_step(quantity * LOT_NUDGE, lot, ROUND_FLOOR))

    def limit_price(self, price: float, buy: bool) -> float:
        """A limit price on the tick, never worse for its order: a buy's down, a sell's up."""
        return self._on_tick(price, ROUND_FLOOR if buy else ROUND_CEILING)

    def trigger_price(self, price: float) -> float:
        """A trigger price (or a trailing offset) on the nearest tick."""
        return self._on_tick(price, ROUND_HALF_UP)

    def _on_tick(self, price: float, rounding: str) -> float:
        tick = self.price_increment
        return price if tick is None else max(_to_step(price, tick, rounding), tick)

    def below_minimum(self, quantity: float, price: float) -> str | None:
        """Why an order of quantity at price is too small for the market; None when it is not."""
        if quantity <= 0:
            return f"less than one lot ({self.amount_increment}) of the market"
        if quantity < self.min_quantity:
            return f"quantity {quantity:g} is below the market's minimum order of {self.min_quantity:g}"
        if quantity * price < self.min_cost:
            return f"cost {quantity * price:.6g} is below the market's minimum order cost of {self.min_cost:g}"
        return None


NO_RULES = MarketRules()


def _to_step(value: float, step: float, rounding: str) -> float:
    """value as a whole number of steps (exactly, in decimal: 0.3 stays 0.3 on a 0.1 step)."""
    exact_step = Decimal(repr(step))
    steps = (Decimal(repr(value)) / exact_step).to_integral_value(rounding)
    return float(steps * exact_step)


@dataclass(frozen=True)
class MarketRulesFile:
    """What markets.json holds: the exchange's rules per symbol, as fetched at fetched_at."""

    exchange: str
    fetched_at: datetime
    markets: dict[str, MarketRules]


def save_market_rules(path: Path, exchange: str, rules: Mapping[str, MarketRules],
                      fetched_at: datetime | None = None) -> None:
    """Write markets.json at path: the exchange's name (e.g. "kraken"), the rules of each symbol
    (e.g. from backend.venues.kraken.market_rules.fetch_market_rules) and when they were fetched
    (default: now), replacing any file there atomically."""
    document = {
        "exchange": exchange,
        "fetched_at": (fetched_at or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "markets": {symbol: asdict(rules[symbol]) for symbol in sorted(rules)},
    }
    text = json.dumps(document, indent=2) + "\n"
    replace_atomically(path, lambda file: file.write(text.encode()))


def load_market_rules(path: Path) -> MarketRulesFile:
    """markets.json as written by save_market_rules; a ConfigError naming the file and the key
    that is wrong (`markets.BTC/USD.min_cost`), or that it cannot be read."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(path, f"cannot read the markets file: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(path, f"not a JSON markets file: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(path, "expected a JSON object with exchange, fetched_at and markets")
    exchange = document.get("exchange")
    if not isinstance(exchange, str) or not exchange:
        raise ConfigError(path, "expected the exchange's name, e.g. \"kraken\"", "exchange")
    try:
        fetched_at = datetime.fromisoformat(str(document.get("fetched_at")))
    except ValueError:
        raise ConfigError(path, "expected an ISO 8601 time (when the rules were fetched)", "fetched_at") from None
    markets = document.get("markets")
    if not isinstance(markets, dict) or not markets:
        raise ConfigError(path, "expected an object of market rules per symbol, e.g. \"BTC/USD\": {...}", "markets")
    rules = {symbol: _market(path, f"markets.{symbol}", entry) for symbol, entry in markets.items()}
    return MarketRulesFile(exchange, fetched_at if fetched_at.tzinfo else fetched_at.replace(tzinfo=UTC), rules)


def _market(path: Path, key: str, entry: Any) -> MarketRules:
    names = [field.name for field in fields(MarketRules)]
    if not isinstance(entry, dict):
        raise ConfigError(path, f"expected an object of {', '.join(names)}", key)
    unknown = sorted(set(entry) - set(names))
    if unknown:
        raise ConfigError(path, f"unknown key (known: {', '.join(names)})", f"{key}.{unknown[0]}")
    values: list[float | None] = []
    for name in names:
        if name not in entry:
            raise ConfigError(path, "missing", f"{key}.{name}")
        value, increment = entry[name], name.endswith("_increment")
        if value is None and increment:
            values.append(None)
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or value < 0 or (increment and value == 0):
            wanted = "a positive number (or null: any)" if increment else "a number, 0 or more"
            raise ConfigError(path, f"expected {wanted}, got {value!r}", f"{key}.{name}")
        else:
            values.append(float(value))
    price_increment, amount_increment, min_quantity, min_cost = values
    return MarketRules(price_increment, amount_increment, min_quantity or 0.0, min_cost or 0.0)
