"""Consecutive candles of one asset as columns: the one form in which candles travel from an
execution environment's source to its runs (a backtest's a few thousand at a time, a live candle
as a block of one row).

Invariant: the rows are in time order and each was checked where it entered the process (the
data file's check pass, the live source's candle checks), so a Candle or RawTick taken from a row
needs no validation; `missing_before[row]` counts the candles missing right before that row (0 for
a range's first); `warmup[row]` marks replayed history (context workers only, no trading), and
warm-up rows come before any other of the stream. One block goes to every run of an environment,
so nothing in it can be changed: its arrays are read-only and its Python copies of them are tuples.
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np

from backend.interfaces.ohlcv_provider import Candle


@dataclass(frozen=True, eq=False)
class CandleColumns:
    symbol: str  # "" for a data file's rows as read: the environment replaying them names the symbol
    open_times: np.ndarray  # int64 epoch seconds, UTC
    opens: np.ndarray  # float64, as the four columns below
    highs: np.ndarray
    lows: np.ndarray
    closes: np.ndarray
    volumes: np.ndarray
    missing_before: np.ndarray  # int64
    # bool; None when built: no warm-up row (a backtest's blocks have none)
    warmup: np.ndarray = field(default=None)  # type: ignore[arg-type]
    first_row: int = 0  # index of the block's first row in the stream it was cut from (a data file's rows)
    # Values computed from the block once for all the runs that replay it (a context worker's
    # columns shared by several runs: services.shared_context), by their owner; they go with the block.
    derived: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.warmup is None:
            object.__setattr__(self, "warmup", np.zeros(len(self.open_times), dtype=bool))
        for column in (self.open_times, self.opens, self.highs, self.lows, self.closes, self.volumes,
                       self.missing_before, self.warmup):
            column.flags.writeable = False

    def __len__(self) -> int:
        return len(self.open_times)

    def rows(self, start: int, stop: int) -> "CandleColumns":
        """Rows [start, stop) of the block (views, no copy)."""
        part = slice(start, stop)
        return CandleColumns(
            self.symbol, self.open_times[part], self.opens[part], self.highs[part], self.lows[part],
            self.closes[part], self.volumes[part], self.missing_before[part], self.warmup[part],
            self.first_row + min(start, len(self)),
        )

    def stream_rows(self, start: int, stop: int) -> "CandleColumns":
        """The rows whose indices in the stream (`first_row` on) are in [start, stop)."""
        return self.rows(max(start - self.first_row, 0), max(stop - self.first_row, 0))

    def with_missing_before_first(self, missing: int) -> "CandleColumns":
        """The block with its first row's `missing_before` set to missing (a copy of that column)."""
        missing_before = self.missing_before.copy()
        missing_before[0] = missing
        return replace(self, missing_before=missing_before)

    @classmethod
    def empty(cls, symbol: str) -> "CandleColumns":
        """No candle of symbol (a window's symbol without a candle in its span)."""
        none, times = np.empty(0), np.empty(0, dtype=np.int64)
        return cls(symbol, times, none, none, none, none, none, times)

    @property
    def missing_candles(self) -> int:
        """Rows right after a hole."""
        return int(np.count_nonzero(self.missing_before))

    @classmethod
    def concatenated(cls, parts: "Sequence[CandleColumns]") -> "CandleColumns":
        """Consecutive blocks of one symbol as one block (a copy; the first one as it is when alone)."""
        if len(parts) == 1:
            return parts[0]
        column = lambda name: np.concatenate([getattr(part, name) for part in parts])  # noqa: E731
        return CandleColumns(parts[0].symbol, column("open_times"), column("opens"), column("highs"), column("lows"),
                             column("closes"), column("volumes"), column("missing_before"), column("warmup"),
                             parts[0].first_row)

    def open_time(self, row: int) -> datetime:
        return datetime.fromtimestamp(self.open_times.item(row), UTC)

    def candle(self, row: int) -> Candle:
        # The open times as date-times if a row-by-row replay made them already (it needs them all).
        open_datetimes = self.__dict__.get("open_datetimes")
        return Candle(
            self.open_time(row) if open_datetimes is None else open_datetimes[row], self.open_values[row],
            self.high_values[row], self.low_values[row], self.close_values[row], self.volume_values[row],
            self.missing_values[row],
        )

    # The columns as Python values, made once per block for workers that loop over rows in Python
    # (a tuple's floats are read far faster than a numpy array's, one at a time).
    @cached_property
    def open_datetimes(self) -> tuple[datetime, ...]:
        return tuple(datetime.fromtimestamp(epoch, UTC) for epoch in self.open_times.tolist())

    @cached_property
    def open_values(self) -> tuple[float, ...]:
        return tuple(self.opens.tolist())

    @cached_property
    def volume_values(self) -> tuple[float, ...]:
        return tuple(self.volumes.tolist())

    @cached_property
    def close_values(self) -> tuple[float, ...]:
        return tuple(self.closes.tolist())

    @cached_property
    def high_values(self) -> tuple[float, ...]:
        return tuple(self.highs.tolist())

    @cached_property
    def low_values(self) -> tuple[float, ...]:
        return tuple(self.lows.tolist())

    @cached_property
    def missing_values(self) -> tuple[int, ...]:
        return tuple(self.missing_before.tolist())
