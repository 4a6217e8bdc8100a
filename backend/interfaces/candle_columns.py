"""Consecutive candles of one asset as columns: what a backtest hands its runs a block at a time.

Invariant: the rows are in time order and each was checked where it entered the process (the
data file's check pass), so a Candle or RawTick taken from a row needs no validation;
`missing_before[row]` counts the candles missing right before that row (0 for a range's first).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import numpy as np

from backend.interfaces.ohlcv_provider import Candle


@dataclass(frozen=True, eq=False)
class CandleColumns:
    symbol: str
    open_times: np.ndarray  # int64 epoch seconds, UTC
    opens: np.ndarray  # float64, as the four columns below
    highs: np.ndarray
    lows: np.ndarray
    closes: np.ndarray
    volumes: np.ndarray
    missing_before: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.open_times)

    def rows(self, start: int, stop: int) -> "CandleColumns":
        """Rows [start, stop) (views, no copy)."""
        part = slice(start, stop)
        return CandleColumns(
            self.symbol, self.open_times[part], self.opens[part], self.highs[part], self.lows[part],
            self.closes[part], self.volumes[part], self.missing_before[part],
        )

    def open_time(self, row: int) -> datetime:
        return datetime.fromtimestamp(int(self.open_times[row]), UTC)

    def candle(self, row: int) -> Candle:
        return Candle(
            self.open_time(row), float(self.opens[row]), float(self.highs[row]), float(self.lows[row]),
            float(self.closes[row]), float(self.volumes[row]), int(self.missing_before[row]),
        )

    # The columns as Python lists, made once per block for workers that loop over rows in Python
    # (a list's floats are read far faster than a numpy array's, one at a time).
    @cached_property
    def close_list(self) -> list[float]:
        return self.closes.tolist()

    @cached_property
    def high_list(self) -> list[float]:
        return self.highs.tolist()

    @cached_property
    def low_list(self) -> list[float]:
        return self.lows.tolist()

    @cached_property
    def missing_list(self) -> list[int]:
        return self.missing_before.tolist()
