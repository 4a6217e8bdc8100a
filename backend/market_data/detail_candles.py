"""A backtest's finer candles (`detail_data_file`, e.g. 5m under a 1h backtest): what happened inside
one of its candles, in time order, so the simulator can tell which of two prices was reached first.

Invariant: a detail file's timeframe is the most common spacing of its first rows
(`detail_timeframe`), finer than the environment's and dividing it (`detail_timeframe_problem`);
its candles are read in full, each passing every check a data file's does (read_candle_file at
that timeframe), once, and only when `within` is first asked (a backtest whose orders never rest
never reads it). `within` returns views of ascending, unique open times: the candles opening in
[open_time, open_time + seconds), none invented where the file has a hole.
"""

import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from backend.market_data.candle_file import describe_seconds, read_candle_file
from backend.market_data.timeframes import timeframe_seconds

# Every timeframe opens on a whole minute: a file's rows are aligned to it, whatever its own timeframe.
FINEST_TIMEFRAME = "1m"

DetailRows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # opens, highs, lows, closes
# The finer candles inside the candle opened at a time (of one length): what the simulator asks.
Intrabar = Callable[[datetime], DetailRows | None]


def detail_timeframe(path: Path) -> str:
    """The timeframe of a candle file: the most common spacing between the rows of its first block
    (ties: the shortest). A ConfigError naming the file (and line or row) when the readers refuse it."""
    from backend.market_data.candle_readers import candle_blocks  # the readers: imported by backtests only

    first = next(candle_blocks(path, FINEST_TIMEFRAME), None)  # the rest is never read
    spacings = Counter(np.diff(first.open_times).tolist()) if first is not None else Counter()
    if not spacings:  # a single row (or none: read_candle_file says so) tells nothing finer
        return FINEST_TIMEFRAME
    return describe_seconds(max(spacings, key=lambda spacing: (spacings[spacing], -spacing)))


def detail_timeframe_problem(detail: str, timeframe: str) -> str | None:
    """Why candles of `detail` cannot tell what happened inside candles of `timeframe`, or None."""
    detail_seconds, seconds = timeframe_seconds(detail), timeframe_seconds(timeframe)
    if detail_seconds >= seconds:
        return f"its candles are {detail}, not finer than the environment's {timeframe} timeframe"
    if seconds % detail_seconds:
        return f"its candles are {detail}, which does not divide the environment's {timeframe} timeframe"
    return None


class DetailCandles:
    """One detail file's candles, loaded on the first `within` (thread-safe: the strategy runs on
    one environment share it), then kept as columns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._open_times: np.ndarray | None = None  # int64 epoch seconds, ascending
        self._rows: DetailRows = (np.empty(0), np.empty(0), np.empty(0), np.empty(0))

    def load(self) -> "DetailCandles":
        """Read and check the whole file, once (`within` does it when first asked; validate at once)."""
        if self._open_times is not None:  # loaded: no lock on the hot path
            return self
        with self._lock:
            if self._open_times is None:
                candle_file = read_candle_file(self.path, detail_timeframe(self.path))
                blocks = list(candle_file.blocks(range(len(candle_file))))
                column = lambda name: np.concatenate([getattr(block, name) for block in blocks])  # noqa: E731
                self._rows = (column("opens"), column("highs"), column("lows"), column("closes"))
                self._open_times = column("open_times").astype(np.int64)
        return self

    def intrabar(self, seconds: int) -> Intrabar:
        """`within` for candles `seconds` long (those the simulator is polled on)."""
        return lambda open_time: self.within(open_time, seconds)

    def within(self, open_time: datetime, seconds: int) -> DetailRows | None:
        """(opens, highs, lows, closes) of the candles opening in [open_time, open_time + seconds),
        in time order; None when the file has none there."""
        open_times = self.load()._open_times
        assert open_times is not None
        start = int(open_time.timestamp())
        first, stop = np.searchsorted(open_times, (start, start + seconds), side="left").tolist()
        if first == stop:
            return None
        opens, highs, lows, closes = self._rows
        return opens[first:stop], highs[first:stop], lows[first:stop], closes[first:stop]
