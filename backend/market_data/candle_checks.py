"""The checks every candle passes before a strategy sees it, whether it comes from a file or an exchange.

Invariant: `candle_problem` returns None only for finite, positive prices with
low <= min(open, close) and max(open, close) <= high, and a finite, non-negative volume.
`CandleSequence` accepts only open times aligned to the timeframe (on the UTC epoch) and strictly
later than the previous accepted one, and tells how many whole intervals are missing before each.
"""

import math
from datetime import UTC, datetime

import structlog

from backend.market_data.timeframes import timeframe_seconds

log = structlog.get_logger(__name__)

def candle_problem(open_: float, high: float, low: float, close: float, volume: float) -> str | None:
    """Why this candle cannot be traded on, or None when it is sound."""
    if not all(math.isfinite(value) for value in (open_, high, low, close, volume)):
        return "prices and volume must be finite numbers"
    if min(open_, high, low, close) <= 0:
        return "prices must be positive"
    if volume < 0:
        return "volume must not be negative"
    if low > min(open_, close) or high < max(open_, close):
        return f"low {low} / high {high} do not contain open {open_} and close {close}"
    return None


class CandleSequence:
    """Open times of one symbol's candles, in the order they arrive."""

    def __init__(self, timeframe: str) -> None:
        self.timeframe = timeframe
        self._seconds = timeframe_seconds(timeframe)
        self.last: datetime | None = None

    def missing_before(self, open_time: datetime) -> int:
        """Accept open_time; return how many candles are missing between the previous one and it.

        Raises ValueError, leaving the sequence unchanged, when open_time is not aligned to the
        timeframe or not after the previous candle.
        """
        epoch = open_time.timestamp()
        if epoch % self._seconds:
            raise ValueError(f"timestamp {open_time.isoformat()} is not aligned to the {self.timeframe} timeframe")
        missing = 0
        if self.last is not None:
            if open_time <= self.last:
                raise ValueError(
                    f"timestamp {open_time.isoformat()} is not after the previous candle's ({self.last.isoformat()})"
                )
            missing = round((epoch - self.last.timestamp()) / self._seconds) - 1
        self.last = open_time
        return missing


def log_data_gap(symbol: str, open_time: datetime, missing: int, timeframe: str) -> None:
    """One `data_gap` line for the `missing` candles right before the candle opening at open_time:
    the hole is [gap_from, gap_to)."""
    gap_from = datetime.fromtimestamp(open_time.timestamp() - missing * timeframe_seconds(timeframe), tz=UTC)
    log.warning("data_gap", symbol=symbol, timeframe=timeframe, missing_candles=missing,
                gap_from=gap_from.isoformat(), gap_to=open_time.isoformat())
