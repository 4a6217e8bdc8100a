"""What a venue's public trade history hands out, page by page, and the window of recent candles
it serves in one request (the venue's side of backend.market_data.trade_download; Kraken's:
backend/venues/kraken/trade_history.py and ohlc_window.py).

Invariants: a page's trades are in time order, each handed out once over every page and run, and
all of them before the `end` it was asked for; its cursor, kept as JSON, is where the next page
starts. A window's candles are closed ones with at least one trade, on the UTC grid, oldest first.
Errors are the project's (backend.errors), translated by the venue.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from backend.market_data.market_rules import MarketRules

Candle = tuple[int, float, float, float, float, float]  # open time (epoch seconds), open, high, low, close, volume
Cursor = dict[str, Any]  # the venue's own: where its next page starts (kept in the download's state file)


@dataclass(frozen=True)
class Trade:
    time: float  # epoch seconds, as the exchange sent it
    price: float
    volume: float


@dataclass(frozen=True)
class TradePage:
    trades: list[Trade]  # not handed out before, oldest first, all before the `end` asked for
    cursor: Cursor  # where the page after these trades starts
    last: bool  # nothing more before `end`: the history has no later trade yet, or it reached `end`


@dataclass(frozen=True)
class RecentCandleRows:
    first_open: int | None  # open time of the oldest interval the venue sent (with trades or not); None: none
    candles: list[Candle]  # closed, with at least one trade, oldest first (an interval without one is a gap)


class RecentCandles(Protocol):
    def recent_candles(self, symbol: str, timeframe: str) -> RecentCandleRows | None:
        """The venue's latest candles of timeframe, one request's worth (all it serves: Kraken's
        OHLC, the last 720); None when it serves no candles of that timeframe."""
        ...


class TradeHistory(RecentCandles, Protocol):
    """A venue's public trade history, read page by page, and its window of recent candles;
    errors are the project's (backend.errors), translated by the venue."""

    name: str  # as said to people: "Kraken"

    def unlisted(self, symbols: Sequence[str]) -> list[str]:
        """Those of symbols the exchange lists no market for (its markets are loaded here)."""
        ...

    def market_rules(self, symbols: Sequence[str]) -> dict[str, MarketRules]:
        """The symbols' market rules as the exchange states them now (for markets.json)."""
        ...

    def now(self) -> float:
        """The exchange's clock, epoch seconds."""
        ...

    def start(self, since: int) -> Cursor:
        """The cursor of the first page: trades from `since` (epoch seconds) on."""
        ...

    def page(self, symbol: str, cursor: Cursor, end: float) -> TradePage:
        """The trades after cursor and before end (epoch seconds), one request's worth."""
        ...
