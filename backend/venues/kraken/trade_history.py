"""Kraken's whole trade history, page by page, from its public `Trades` endpoint (the
backend.market_data.trade_history.TradeHistory of Kraken; its recent candles: ohlc_window.py),
paged as freqtrade pages Kraken's:
`since` is a nanosecond cursor (support.kraken.com, "How to retrieve historical time and sales
... Trades endpoint": "a UNIX timestamp at nanosecond resolution"), each answer's `last` the
"ID to be used as since when polling for new trade data" (docs.kraken.com, Get Recent Trades),
up to 1000 trades an answer ("count ... up to 1000").

The endpoint is called through ccxt's `publicGetTrades` (same client, rate limiter and error
handling as `fetch_trades`), not `fetch_trades` itself: that one re-sorts the rows by millisecond
time and text id, and hides `last` at the end of the last row (ccxt issue 15827), while the order
Kraken sent and its `last` are what the paging needs.

Invariants:
- A trade is handed out once: a page may start with trades the previous one ended with (a
  `since` at a trade's own time); those not after the cursor's last trade (by Kraken's trade id
  when both have one, else by time) are dropped.
- Only trades before `end` are handed out. A page cut there keeps the cursor at the page's own
  start (with the last trade taken), so the next run reads the rest of it again.
- A page of fewer trades than asked is the end of the history (for now).
- ccxt's errors leave as the project's (translate_error).
"""

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import ccxt

from backend.errors import ExchangeError
from backend.market_data.market_rules import MarketRules
from backend.market_data.trade_history import Cursor, RecentCandleRows, Trade, TradePage
from backend.venues.kraken.client import AccountClient, translate_error
from backend.venues.kraken.market_rules import fetch_market_rules
from backend.venues.kraken.ohlc_window import recent_candles

PAGE_SIZE = 1000  # Get Recent Trades: count "up to 1000"
NANOSECONDS = 1_000_000_000


class KrakenTradeHistory:
    name = "Kraken"

    def __init__(self, client: AccountClient) -> None:
        self._client = client

    def unlisted(self, symbols: Sequence[str]) -> list[str]:
        try:
            markets = self._client.load_markets()
        except ccxt.BaseError as error:
            raise translate_error(error, self._client) from None
        return [symbol for symbol in symbols if symbol not in markets]

    def market_rules(self, symbols: Sequence[str]) -> dict[str, MarketRules]:
        try:
            return fetch_market_rules(self._client, symbols)
        except ccxt.BaseError as error:
            raise translate_error(error, self._client) from None

    def now(self) -> float:
        try:
            return self._client.fetch_time() / 1000
        except ccxt.BaseError as error:
            raise translate_error(error, self._client) from None

    def recent_candles(self, symbol: str, timeframe: str) -> RecentCandleRows | None:
        try:
            return recent_candles(self._client, symbol, timeframe)
        except ccxt.BaseError as error:
            raise translate_error(error, self._client) from None

    def start(self, since: int) -> Cursor:
        # Kraken answers the trades after `since`: one nanosecond earlier takes a trade at `since` too.
        return {"since": since * NANOSECONDS - 1, "last_trade_id": None, "last_trade_ns": None}

    def page(self, symbol: str, cursor: Cursor, end: float) -> TradePage:
        request = {"pair": self._client.market(symbol)["id"], "since": str(cursor["since"]), "count": PAGE_SIZE}
        try:
            result = self._client.publicGetTrades(request)["result"]
        except ccxt.BaseError as error:
            raise translate_error(error, self._client) from None
        rows: list[list] = next((rows for key, rows in result.items() if key != "last"), [])
        end_ns = int(Decimal(str(end)) * NANOSECONDS)
        last_id, last_ns = cursor["last_trade_id"], cursor["last_trade_ns"]
        trades: list[Trade] = []
        for row in rows:
            trade, trade_id, trade_ns = _parsed(row)
            if _seen(trade_id, trade_ns, last_id, last_ns):
                continue
            if trade_ns >= end_ns:  # the rest of this page is read again by the next run
                return TradePage(trades, {**cursor, "last_trade_id": last_id, "last_trade_ns": last_ns}, last=True)
            trades.append(trade)
            last_id, last_ns = trade_id, trade_ns
        following = int(result["last"])
        full = len(rows) >= PAGE_SIZE
        if full and following <= cursor["since"]:
            raise ExchangeError(f"kraken's Trades for {symbol}: `last` {following} does not move past `since` "
                                f"{cursor['since']}: the history cannot be paged")
        return TradePage(trades, {"since": following, "last_trade_id": last_id, "last_trade_ns": last_ns},
                         last=not full)


def _parsed(row: list) -> tuple[Trade, int | None, int]:
    """[price, volume, time, buy/sell, market/limit, miscellaneous, trade_id]: the trade, its id
    (older rows have none) and its time in nanoseconds (from the decimal text Kraken sent)."""
    try:
        nanoseconds = int(Decimal(str(row[2])) * NANOSECONDS)
        trade = Trade(float(row[2]), float(row[0]), float(row[1]))
        trade_id = int(row[6]) if len(row) > 6 else None
    except (IndexError, TypeError, ValueError, InvalidOperation):
        raise ExchangeError(f"kraken's Trades sent a row that is not [price, volume, time, ...]: "
                            f"{row!r:.120}") from None
    return trade, trade_id, nanoseconds


def _seen(trade_id: int | None, trade_ns: int, last_id: int | None, last_ns: int | None) -> bool:
    if trade_id is not None and last_id is not None:
        return trade_id <= last_id
    return last_ns is not None and trade_ns <= last_ns
