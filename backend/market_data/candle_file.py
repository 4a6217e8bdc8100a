"""A backtest data file (CSV or Parquet), checked once in a streaming pass and replayed by
streaming it again: its rows are never all in memory.

Invariant: a CandleFile is made only by `read_candle_file` after every row of the file passed the
checks of backend.market_data.candle_readers (each candle `candle_problem`-free, open times
aligned to the timeframe and strictly increasing) and the spacing check (the most common spacing
between rows is the timeframe itself: no daily file behind a 1h environment); the file holds at
least one candle. It keeps only what locates a row without reading the file: the first and last
open times and, per hole, the row after it and the candles missing so far (16 bytes a hole, none
a row), so a row's open time is `first + (row + missing before it) * step`. Memory, in the check
pass and in each replay, is one block of rows plus that hole index, whatever the file's length,
except that a file of at most KEEP_ROWS candles keeps its checked rows (at most ~30 MB of
columns) and is replayed from them. A longer one is replayed from the file, re-checking every row;
a file changed since its check is then refused.
The readers are imported where a file is read (pyarrow only for a Parquet file): a live-only
daemon never loads them.
"""

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from backend.errors import ConfigError, DataRangeError
from backend.market_data.timeframes import as_utc, timeframe_seconds, utc_from_epoch

if TYPE_CHECKING:
    from backend.interfaces.candle_columns import CandleColumns

# A file of at most this many candles is replayed from its checked rows (7 columns of 8 bytes:
# ~30 MB at most, shared by every environment replaying it), a longer one from the file again.
KEEP_ROWS = 1 << 19


def describe_seconds(seconds: int) -> str:
    """A spacing in the units timeframes use: 86400 -> '1d', 7200 -> '2h', 90 -> '90s'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Hole:
    row: int  # the row right after the hole
    missing: int  # candles of the timeframe missing right before that row


@dataclass
class CandleFile:
    """What the check pass learnt about one data file, shared read-only by every environment
    that replays it (each replays it with its own pass over the file)."""

    path: Path
    timeframe: str
    rows: int
    first_epoch: int  # open time of the first and the last candle, epoch seconds
    last_epoch: int
    version: tuple[int, int]  # (size, mtime_ns) of the file that was checked
    hole_rows: array  # int64, ascending: the row right after each hole
    missing_through: array  # int64: the candles missing in that hole and all earlier ones
    kept: "list[CandleColumns] | None" = None  # a short file's checked rows, replayed instead of the file

    def __len__(self) -> int:
        return self.rows

    @property
    def step(self) -> int:
        return timeframe_seconds(self.timeframe)

    @property
    def first_open(self) -> datetime:
        return utc_from_epoch(self.first_epoch)

    @property
    def last_open(self) -> datetime:
        return utc_from_epoch(self.last_epoch)

    def open_epoch(self, row: int) -> int:
        """Open time of candle `row` (epoch seconds), from the hole index alone."""
        missing = self._missing_in_first(bisect_right(self.hole_rows, row))
        return self.first_epoch + (row + missing) * self.step

    def rows_between(self, start: datetime, end: datetime) -> range:
        """Indices of the candles opening in [start, end); a ConfigError when there are none."""
        start, end = as_utc(start), as_utc(end)
        every_row = range(self.rows)
        rows = range(
            bisect_left(every_row, start.timestamp(), key=self.open_epoch),
            bisect_left(every_row, end.timestamp(), key=self.open_epoch),
        )
        if not rows:
            raise DataRangeError(
                self.path,
                f"no candles between {start.isoformat()} and {end.isoformat()}: "
                f"the file covers {self.first_open.isoformat()} to {self.last_open.isoformat()}",
            )
        return rows

    def holes_within(self, rows: range) -> range:
        """Indices (for `hole`) of the holes right before the rows of `rows` after its first: what
        precedes a range is not in it."""
        return range(bisect_left(self.hole_rows, rows.start + 1), bisect_left(self.hole_rows, rows.stop))

    def hole(self, index: int) -> Hole:
        return Hole(self.hole_rows[index], self._missing_in_first(index + 1) - self._missing_in_first(index))

    def missing_in(self, holes: range) -> int:
        """Candles missing in these holes (an index range from `holes_within`), added up."""
        return self._missing_in_first(holes.stop) - self._missing_in_first(holes.start)

    def blocks(self, rows: range) -> Iterator["CandleColumns"]:
        """The candles `rows`, read again from the file and checked again, a block at a time."""
        from backend.market_data.candle_readers import candle_blocks  # the readers: imported by backtests only

        if self.kept is not None:
            yield from (block.stream_rows(rows.start, rows.stop) for block in self.kept
                        if block.first_row < rows.stop and block.first_row + len(block) > rows.start)
            return
        if _version(self.path) != self.version:
            raise ConfigError(self.path, "the data file changed after it was checked: start the run again")
        for block in candle_blocks(self.path, self.timeframe):
            if block.first_row >= rows.stop:
                return
            if block.first_row + len(block) > rows.start:
                yield block.stream_rows(rows.start, rows.stop)

    def _missing_in_first(self, holes: int) -> int:
        """Candles missing in the file's first `holes` holes."""
        return self.missing_through[holes - 1] if holes else 0


def read_candle_file(path: Path, timeframe: str) -> CandleFile:
    """Check every row of a CSV file (`timestamp,open,high,low,close,volume` in any case and column
    order, extra columns ignored, or no header as Kraken's OHLCVT export; UTF-8 with or without a
    BOM; `.gz` compressed or not) or a Parquet file (`.parquet`, `.pq`) with those columns, in one
    streaming pass; a ConfigError naming the file, and the line or row (candle_readers.ACCEPTED)."""
    from backend.market_data.candle_readers import candle_blocks, is_parquet  # the readers: imported by backtests only

    version = _version(path)
    rows, first, last = 0, 0, 0
    hole_rows, missing_through = array("q"), array("q")
    missing_so_far = 0
    spacings: Counter[int] = Counter()  # in timeframes, between rows after a hole and the row before
    kept: list[CandleColumns] | None = []
    for block in candle_blocks(path, timeframe):
        if kept is not None and rows + len(block) <= KEEP_ROWS:
            kept.append(block)
        else:
            kept = None
        if not rows:
            first = int(block.open_times[0])
        last = int(block.open_times[-1])
        for index in block.missing_before.nonzero()[0].tolist():
            missing = int(block.missing_before[index])
            missing_so_far += missing
            hole_rows.append(block.first_row + index)
            missing_through.append(missing_so_far)
            spacings[missing + 1] += 1
        rows += len(block)
    if not rows:
        raise ConfigError(path, "no candles: the file has no rows" if is_parquet(path) else
                          "no candles: the file has a header but no rows")
    candles = CandleFile(path, timeframe, rows, first, last, version, hole_rows, missing_through, kept)
    spacings[1] = rows - 1 - len(hole_rows)
    _check_spacing(candles, spacings)
    return candles


def _check_spacing(candles: CandleFile, spacings: Counter[int]) -> None:
    """Alignment alone lets daily rows through a 1h environment (midnight is on the hourly
    grid); their spacing does not. Ties go to the timeframe: a file may have many holes."""
    most_common = max(spacings, key=lambda spacing: (spacings[spacing], -spacing))
    if most_common > 1:
        spacing = describe_seconds(most_common * candles.step)
        raise ConfigError(
            candles.path,
            f"rows are mostly {spacing} apart, but the environment's "
            f"timeframe is {candles.timeframe}: is this {spacing} data?",
        )


def _version(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except OSError as exc:
        raise ConfigError(path, f"cannot read data file: {exc.strerror}") from None
    return status.st_size, status.st_mtime_ns
