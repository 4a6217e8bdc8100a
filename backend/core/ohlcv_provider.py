"""The candle history of one strategy run: a ring buffer per asset.

Invariants: at most `capacity` candles are kept per asset (memory stays bounded however long the
run); only candles actually received are kept, in the order received, never invented ones; one
run's thread is the only user, so there is no lock. Candles are recorded as rows of the blocks
they came in (`append`: a live candle, a block of one row); a stretch of rows is turned into
Candles only when the history is read (most of a columnar replay's never are).
"""

from collections import deque
from collections.abc import Sequence
from itertools import islice

from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.ohlcv_provider import Candle, IOhlcvProvider


class OhlcvProvider(IOhlcvProvider):
    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must not be negative, got {capacity}")
        self._capacity = capacity
        self._candles: dict[str, deque[Candle]] = {}
        self._pending: dict[str, tuple[CandleColumns, int, int]] = {}  # rows [start, stop) of a block, not yet Candles

    def append(self, asset: str, candles: CandleColumns, start: int, stop: int) -> None:
        """Record rows [start, stop) of a block of asset's candles, after what was recorded before
        (a tick: one row; the oldest drop out once `capacity` are kept)."""
        pending = self._pending.get(asset)
        if pending is not None:
            if pending[0] is candles and pending[2] == start:
                self._pending[asset] = (candles, pending[1], stop)
                return
            self._record_pending(asset)
        if stop - start == 1:  # a tick's candle, which its workers are likely to read: at once
            self._append(asset, candles.candle(start))
        else:
            self._pending[asset] = (candles, start, stop)

    def _record_pending(self, asset: str) -> None:
        pending = self._pending.pop(asset, None)
        if pending is not None:
            candles, start, stop = pending
            for row in range(max(start, stop - self._capacity), stop):
                self._append(asset, candles.candle(row))

    @property
    def capacity(self) -> int:
        return self._capacity

    def _append(self, asset: str, candle: Candle) -> None:
        candles = self._candles.get(asset)
        if candles is None:  # not setdefault: that would build a deque on every call
            candles = self._candles[asset] = deque(maxlen=self._capacity)
        candles.append(candle)

    def latest(self, asset: str) -> Candle:
        if self._pending:
            self._record_pending(asset)
        candles = self._candles.get(asset)
        if not candles:  # nothing recorded, or a need of 0: the errors history() gives
            return self.history(asset, 1)[-1]
        return candles[-1]

    def history(self, asset: str, length: int) -> Sequence[Candle]:
        if not 0 <= length <= self._capacity:
            raise ValueError(
                f"history length must be between 0 and the declared need {self._capacity}, got {length}"
            )
        if self._pending:
            self._record_pending(asset)
        candles = self._candles.get(asset, ())
        # A tuple: workers get a snapshot they cannot change.
        return tuple(islice(candles, max(0, len(candles) - length), None))
