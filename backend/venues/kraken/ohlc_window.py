"""Kraken's latest candles of a timeframe from its public `OHLC` endpoint, in one request (the
`recent_candles` of backend.venues.kraken.trade_history.KrakenTradeHistory).

docs.kraken.com/api-reference/market-data/get-ohlc-data: "Returns up to 720 of the most recent
entries (older data cannot be retrieved, regardless of the value of `since`)", so one request
without `since` is the whole window; "The last entry in the OHLC array is for the current,
not-yet-committed timeframe": it is never handed out. Each row is [time, open, high, low, close,
vwap, volume, count]; an interval without a trade comes as a row of count 0 and volume 0 at the
previous close (github.com/dominiktraxl/pykrakenapi issue 55), which is a gap, never a candle.

The endpoint is called through ccxt's `publicGetOHLC` (same client, rate limiter and error
handling as `fetch_ohlcv`), not `fetch_ohlcv` itself: that one drops the `count` column
(ccxt's kraken parse_ohlcv keeps time, open, high, low, close and volume), and the count is what
tells an interval without trades from one with.

Invariant: only the timeframes whose Kraken interval lies on the UTC epoch grid the files use are
served (1m to 1d: Kraken's week and 15 days are left out); any other is None.
"""

from backend.errors import ExchangeError
from backend.market_data.timeframes import timeframe_seconds
from backend.market_data.trade_history import Candle, RecentCandleRows
from backend.venues.kraken.client import AccountClient

INTERVAL_MINUTES = (1, 5, 15, 30, 60, 240, 1440)  # Get OHLC Data: `interval`, up to a day


def recent_candles(client: AccountClient, symbol: str, timeframe: str) -> RecentCandleRows | None:
    """ccxt's errors leave as they are (the caller translates them)."""
    minutes, remainder = divmod(timeframe_seconds(timeframe), 60)
    if remainder or minutes not in INTERVAL_MINUTES:
        return None
    result = client.publicGetOHLC({"pair": client.market(symbol)["id"], "interval": minutes})["result"]
    rows: list[list] = next((rows for key, rows in result.items() if key != "last"), [])
    parsed = [_parsed(row) for row in rows]
    candles = [candle for candle, count in parsed[:-1] if count > 0]  # the last: still forming
    return RecentCandleRows(parsed[0][0][0] if parsed else None, candles)


def _parsed(row: list) -> tuple[Candle, int]:
    """[time, open, high, low, close, vwap, volume, count]: the candle and its count of trades."""
    try:
        opened, count = int(row[0]), int(row[7])
        open_, high, low, close, volume = (float(row[index]) for index in (1, 2, 3, 4, 6))
    except (IndexError, TypeError, ValueError):
        raise ExchangeError(f"kraken's OHLC sent a row that is not [time, open, high, low, close, vwap, volume, "
                            f"count]: {row!r:.120}") from None
    return (opened, open_, high, low, close, volume), count
