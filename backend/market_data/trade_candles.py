"""Candles built from trades, one timeframe per builder.

Invariant: a candle is the trades whose time falls in [open, open + step) on the UTC epoch grid:
the first trade's price, the highest, the lowest, the last, and the volumes summed in trade order;
an interval without a trade has no candle (a gap, never an invented one). A candle is handed out
(closed) once, when a trade of a later interval arrives or `close_before` says its interval has
ended; until then it is the builder's `forming` candle, which is all a builder's state holds: a
builder made again from it (`CandleBuilder(timeframe, forming)`) goes on exactly as if it had
never stopped (its floats go through JSON unchanged: repr round-trips).
"""

import math

from backend.market_data.timeframes import timeframe_seconds
from backend.market_data.trade_history import Candle, Trade


class CandleBuilder:
    def __init__(self, timeframe: str, forming: list[float] | None = None) -> None:
        self.timeframe = timeframe
        self._step = timeframe_seconds(timeframe)
        self.forming = forming  # [open time, open, high, low, close, volume] of the interval being traded

    def add(self, trade: Trade) -> Candle | None:
        """Take a trade (in time order); the candle it closed, if any."""
        opened = math.floor(trade.time) // self._step * self._step
        forming = self.forming
        if forming is not None and opened == forming[0]:
            forming[2], forming[3] = max(forming[2], trade.price), min(forming[3], trade.price)
            forming[4] = trade.price
            forming[5] += trade.volume
            return None
        if forming is not None and opened < forming[0]:
            raise ValueError(f"trade at {trade.time} is before the candle forming at {forming[0]}")
        closed = self._closed()
        self.forming = [opened, trade.price, trade.price, trade.price, trade.price, trade.volume]
        return closed

    def close_before(self, moment: int) -> Candle | None:
        """The forming candle, closed, when its interval ends at or before moment (epoch seconds)."""
        if self.forming is None or self.forming[0] + self._step > moment:
            return None
        closed = self._closed()
        self.forming = None
        return closed

    def _closed(self) -> Candle | None:
        if self.forming is None:
            return None
        opened, open_, high, low, close, volume = self.forming
        return int(opened), open_, high, low, close, volume
