"""The candles of several symbols over one span of time: how an environment of several symbols
hands its candles on (one symbol's keep coming as a CandleColumns): a backtest's a window of many
open times, a live one's a frame (backend.market_data.live_frames).

Invariant: `columns` holds one CandleColumns per symbol (a backtest's: every symbol of the
environment; a live frame's: those whose candle came), in the environment's symbol order, each
that symbol's consecutive candles (a backtest's: possibly none) opening in the same span; a
symbol without a candle at a timestamp has no row there (a gap of that symbol only, counted in
the `missing_before` of its next row). The rows are visited in frame order: by open time, and
within one open time in the symbol order; a frame is the rows of one open time.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from itertools import pairwise

import numpy as np

from backend.interfaces.candle_columns import CandleColumns


@dataclass(frozen=True, eq=False)
class CandleWindow:
    columns: tuple[CandleColumns, ...]

    def __len__(self) -> int:
        return sum(len(candles) for candles in self.columns)

    @property
    def missing_candles(self) -> int:
        """Rows right after a hole of their symbol."""
        return sum(int(np.count_nonzero(candles.missing_before)) for candles in self.columns)

    @cached_property
    def frame_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row in frame order, as (open times, the symbol's index in `columns`, its row there)."""
        times = np.concatenate([candles.open_times for candles in self.columns])
        symbols = np.concatenate([np.full(len(candles), index, dtype=np.int64)
                                  for index, candles in enumerate(self.columns)])
        rows = np.concatenate([np.arange(len(candles), dtype=np.int64) for candles in self.columns])
        order = np.lexsort((symbols, times))
        return times[order], symbols[order], rows[order]

    def open_time(self, row: int) -> datetime:
        """The open time of the window's row `row`, counted in frame order."""
        return datetime.fromtimestamp(int(self.frame_order[0][row]), UTC)

    def frames(self) -> Iterator[list[tuple[int, int]]]:
        """Each open time's rows, as (the symbol's index in `columns`, the row there), in the symbol order."""
        times, symbols, rows = self.frame_order
        bounds = [0, *(np.flatnonzero(np.diff(times)) + 1).tolist(), len(times)]
        symbol_list, row_list = symbols.tolist(), rows.tolist()
        for start, stop in pairwise(bounds):
            yield [(symbol_list[at], row_list[at]) for at in range(start, stop)]


Candles = CandleColumns | CandleWindow  # what a source yields and a run takes, block after block
