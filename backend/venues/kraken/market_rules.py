"""Kraken's market rules, from its AssetPairs answer as ccxt's load_markets parses it.

docs.kraken.com/api-reference/market-data/get-tradable-asset-pairs lists, per pair: `pair_decimals`
("Scaling decimal places for pair": a price's decimals), `lot_decimals` ("Scaling decimal places
for volume"), `cost_decimals` ("Scaling decimal places for cost": a quote amount's, e.g. a market
buy's `viqc` volume, which ccxt's cost_to_precision rounds when it is sent), `ordermin` ("Minimum
order size (in terms of base currency)"), `costmin` ("Minimum order cost (in terms of quote
currency)") and `tick_size` (the pair's price increment); Kraken's FIX instrument list states
the same rules (docs.kraken.com/exchange/api-reference/unified-fix/sl:
QtyMin "Minimum order quantity allowed on asset pair", MinimumCost "Minimum cost (price x qty)
for new orders", TickSize "Specifies the price increment allowed on the asset pair").

Invariant: the rules are ccxt's precision and limits, which it sends orders by, so a simulated
order is rounded and refused exactly as a live one: the lot is ccxt's amount precision
(10^-lot_decimals, or the base currency's coarser precision), the minimums its limits (`ordermin`,
`costmin`); the tick is `tick_size` where Kraken gives one (a price on it is on ccxt's
10^-pair_decimals too, which ccxt then leaves as it is), else 10^-pair_decimals.
"""

from collections.abc import Iterable
from typing import Any

import ccxt

from backend.errors import SettingError
from backend.market_data.market_rules import MarketRules


def kraken_market_rules(market: dict[str, Any]) -> MarketRules:
    """One pair's rules from ccxt's parsed market (its `info` is Kraken's AssetPairs entry)."""
    tick_size = (market.get("info") or {}).get("tick_size")
    precision, limits = market["precision"], market["limits"]
    return MarketRules(
        price_increment=float(tick_size) if tick_size else _number(precision.get("price")),
        amount_increment=_number(precision.get("amount")),
        min_quantity=_number(limits["amount"].get("min")) or 0.0,
        min_cost=_number(limits["cost"].get("min")) or 0.0,
    )


def market_rules_of(client: ccxt.Exchange, symbol: str) -> MarketRules:
    """symbol's rules from the client's markets (loaded once: ccxt caches them, and a live run's
    start-up check has loaded them already)."""
    client.load_markets()
    return kraken_market_rules(client.market(symbol))


def fetch_market_rules(client: ccxt.Exchange, symbols: Iterable[str]) -> dict[str, MarketRules]:
    """The symbols' rules as Kraken states them now (one AssetPairs request unless ccxt has the
    markets already): what `save_market_rules(path, "kraken", ...)` caches beside downloaded data.
    A SettingError on `symbols` for a pair Kraken does not list."""
    markets = client.load_markets()
    symbols = list(symbols)
    unknown = [symbol for symbol in symbols if symbol not in markets]
    if unknown:
        raise SettingError("symbols", f"kraken has no market {', '.join(unknown)}")
    return {symbol: kraken_market_rules(markets[symbol]) for symbol in symbols}


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
