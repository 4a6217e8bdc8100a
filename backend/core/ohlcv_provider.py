"""The candle history of one strategy run: a ring buffer per asset.

Invariants: at most `capacity` candles are kept per asset (memory stays bounded however long the
run); only candles actually received are kept, in the order received, never invented ones; one
run's thread is the only user, so there is no lock.
"""

from collections import deque
from collections.abc import Sequence
from itertools import islice

from backend.interfaces.ohlcv_provider import Candle, IOhlcvProvider


class OhlcvProvider(IOhlcvProvider):
    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must not be negative, got {capacity}")
        self._capacity = capacity
        self._candles: dict[str, deque[Candle]] = {}

    @property
    def capacity(self) -> int:
        return self._capacity

    def append(self, asset: str, candle: Candle) -> None:
        """Record the current tick's candle of asset (the oldest drops out once full)."""
        self._candles.setdefault(asset, deque(maxlen=self._capacity)).append(candle)

    def history(self, asset: str, length: int) -> Sequence[Candle]:
        if not 0 <= length <= self._capacity:
            raise ValueError(
                f"history length must be between 0 and the declared need {self._capacity}, got {length}"
            )
        candles = self._candles.get(asset, ())
        # A tuple: workers get a snapshot they cannot change.
        return tuple(islice(candles, max(0, len(candles) - length), None))
