"""Read-only history of closed candles, for the workers of ONE strategy run.

Invariants: candles are oldest first and the newest is the current tick's candle (it is recorded
before any worker runs); a hole in the data is never filled with invented bars, the candle right
after it carries `missing_before` instead; nothing here takes a strategy id, isolation comes from
every run owning its own provider.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple


class Candle(NamedTuple):
    """One closed candle of one asset (an immutable named tuple: cheap to build on every tick)."""

    open_time: datetime  # UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    missing_before: int = 0  # candles of the timeframe missing right before this one (a data gap)


class IOhlcvProvider(ABC):
    """Recent closed candles per asset, as many as the run's workforce declared it needs."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """Candles kept per asset: the largest `WorkerParams.history_needed()` of the workforce."""

    @abstractmethod
    def history(self, asset: str, length: int) -> Sequence[Candle]:
        """The last `length` candles of asset, oldest first, ending with the current tick's candle;
        fewer when fewer have been seen. Raises ValueError when length is negative or more than
        `capacity` (a worker reading more than it declared)."""

    def latest(self, asset: str) -> Candle:
        """The current tick's candle of asset: `history(asset, 1)[-1]`, the same errors (a
        provider may override it with a faster one)."""
        return self.history(asset, 1)[-1]


def since_last_gap(candles: Sequence[Candle]) -> Sequence[Candle]:
    """The tail of candles that has no hole in it: from the newest candle carrying a gap
    (`missing_before > 0`) onward, or all of them when none does."""
    for index in range(len(candles) - 1, -1, -1):
        if candles[index].missing_before:
            return candles[index:]
    return candles
