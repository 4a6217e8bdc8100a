"""The candle history of one strategy run: a ring buffer per asset.

Invariants: at most `capacity` candles are kept per asset (memory stays bounded however long the
run); only candles actually received are kept, in the order received, never invented ones; one
run's thread is the only user, so there is no lock; after `expect_hole`, the next candle of each
asset counts the bars it skipped (a run stopped and started again never joins a hole silently).
"""

from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from itertools import islice

from backend.interfaces.ohlcv_provider import Candle, IOhlcvProvider


class OhlcvProvider(IOhlcvProvider):
    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must not be negative, got {capacity}")
        self._capacity = capacity
        self._candles: dict[str, deque[Candle]] = {}
        self._hole_bar: timedelta | None = None  # set by expect_hole: the bar length to count a hole in
        self._hole_assets: set[str] = set()

    @property
    def capacity(self) -> int:
        return self._capacity

    def append(self, asset: str, candle: Candle) -> None:
        """Record the current tick's candle of asset (the oldest drops out once full)."""
        candles = self._candles.setdefault(asset, deque(maxlen=self._capacity))
        if self._hole_assets and asset in self._hole_assets:
            self._hole_assets.discard(asset)
            candle = self._with_hole_counted(candles, candle)
        candles.append(candle)

    def expect_hole(self, bar: timedelta) -> None:
        """Candles stopped coming for a while (the run was stopped): the next candle of each asset
        kept here carries, in missing_before, the bars of length bar since the asset's last one."""
        self._hole_bar = bar
        self._hole_assets = {asset for asset, candles in self._candles.items() if candles}

    def _with_hole_counted(self, candles: deque[Candle], candle: Candle) -> Candle:
        if not candles or self._hole_bar is None:
            return candle
        skipped = (candle.open_time - candles[-1].open_time) // self._hole_bar - 1
        return replace(candle, missing_before=skipped) if skipped > candle.missing_before else candle

    def history(self, asset: str, length: int) -> Sequence[Candle]:
        if not 0 <= length <= self._capacity:
            raise ValueError(
                f"history length must be between 0 and the declared need {self._capacity}, got {length}"
            )
        candles = self._candles.get(asset, ())
        # A tuple: workers get a snapshot they cannot change.
        return tuple(islice(candles, max(0, len(candles) - length), None))
