"""A backtest OHLCV CSV file, parsed once into compact columns, every row checked.

Invariant: a CandleFile holds at least one candle; every candle passed `candle_problem`; open
times are aligned to the timeframe and strictly increasing (`CandleSequence`); the most common
spacing between rows is the timeframe itself (no daily file behind a 1h environment); and
`missing_before[i]` is the number of candles missing between row i-1 and row i (0 for row 0).
Anything else is a ConfigError naming the file (and the line, for a row).
"""

import csv
from array import array
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from backend.errors import ConfigError
from backend.market_data.candle_checks import CandleSequence, candle_problem, timeframe_seconds

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = COLUMNS[1:]


def as_utc(moment: datetime) -> datetime:
    """Naive date-times are UTC; aware ones are converted to UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def utc_from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _describe_seconds(seconds: int) -> str:
    """A spacing in the units timeframes use: 86400 -> '1d', 7200 -> '2h', 90 -> '90s'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass
class CandleFile:
    """One data file's candles as parallel arrays (8 bytes a value, not a Python object a value),
    shared read-only by every environment that replays it."""

    path: Path
    timeframe: str
    open_times: array = field(default_factory=lambda: array("q"))  # epoch seconds, UTC
    opens: array = field(default_factory=lambda: array("d"))
    highs: array = field(default_factory=lambda: array("d"))
    lows: array = field(default_factory=lambda: array("d"))
    closes: array = field(default_factory=lambda: array("d"))
    volumes: array = field(default_factory=lambda: array("d"))
    missing_before: array = field(default_factory=lambda: array("q"))
    gap_rows: list[int] = field(default_factory=list)  # indices i with missing_before[i] > 0

    def __len__(self) -> int:
        return len(self.open_times)

    @property
    def first_open(self) -> datetime:
        return utc_from_epoch(self.open_times[0])

    @property
    def last_open(self) -> datetime:
        return utc_from_epoch(self.open_times[-1])

    def rows_between(self, start: datetime, end: datetime) -> range:
        """Indices of the candles opening in [start, end); a ConfigError when there are none."""
        start, end = as_utc(start), as_utc(end)
        rows = range(
            bisect_left(self.open_times, start.timestamp()),
            bisect_left(self.open_times, end.timestamp()),
        )
        if not rows:
            raise ConfigError(
                self.path,
                f"no candles between {start.isoformat()} and {end.isoformat()}: "
                f"the file covers {self.first_open.isoformat()} to {self.last_open.isoformat()}",
            )
        return rows

    def gaps_within(self, rows: range) -> list[int]:
        """Indices of the rows in `rows`, after its first, that follow a hole."""
        return self.gap_rows[bisect_left(self.gap_rows, rows.start + 1):bisect_left(self.gap_rows, rows.stop)]


def read_candle_file(path: Path, timeframe: str) -> CandleFile:
    """Parse and check every row of a `timestamp,open,high,low,close,volume` CSV (any column
    order, extra columns ignored, UTF-8 with or without a BOM)."""
    candles = CandleFile(path, timeframe)
    try:
        # utf-8-sig: a BOM written by spreadsheet tools must not end up in the first column's name.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            _read_rows(handle, candles)
    except IsADirectoryError:
        raise ConfigError(path, "data file is a directory, not a CSV file") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read data file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "not a UTF-8 text file") from None
    except csv.Error as exc:
        raise ConfigError(path, f"not a readable CSV file: {exc}") from None
    if not candles.open_times:
        raise ConfigError(path, "no candles: the file has a header but no rows")
    _check_spacing(candles)
    return candles


def _read_rows(handle: TextIO, candles: CandleFile) -> None:
    path = candles.path
    reader = csv.reader(handle)
    header = [name.strip() for name in next(reader, [])]
    if not header:
        raise ConfigError(path, f"the file is empty: expected the header {','.join(COLUMNS)}")
    absent = [column for column in COLUMNS if column not in header]
    if absent:
        raise ConfigError(path, f"missing column(s): {', '.join(absent)}", "line 1")
    width = len(header)
    time_index, *price_indices = (header.index(column) for column in COLUMNS)
    open_index, high_index, low_index, close_index, volume_index = price_indices
    sequence = CandleSequence(candles.timeframe)
    # Bound methods, looked up once: this loop runs once per row of files of millions of rows.
    add_time, add_missing = candles.open_times.append, candles.missing_before.append
    add_open, add_high, add_low = candles.opens.append, candles.highs.append, candles.lows.append
    add_close, add_volume = candles.closes.append, candles.volumes.append
    for record in reader:
        if not record:  # a blank line
            continue
        if len(record) != width:
            raise ConfigError(
                path, f"expected {width} fields: {','.join(header)} (got {len(record)})", f"line {reader.line_num}"
            )
        try:
            open_time = as_utc(datetime.fromisoformat(record[time_index]))
        except ValueError:
            raise ConfigError(
                path, f"timestamp {record[time_index]!r} is not an ISO 8601 date-time", f"line {reader.line_num}"
            ) from None
        try:
            open_, high, low, close, volume = (
                float(record[open_index]), float(record[high_index]), float(record[low_index]),
                float(record[close_index]), float(record[volume_index]),
            )
        except ValueError:
            raise ConfigError(path, _not_a_number(record, price_indices), f"line {reader.line_num}") from None
        problem = candle_problem(open_, high, low, close, volume)
        if problem is not None:
            raise ConfigError(path, problem, f"line {reader.line_num}")
        try:
            missing_before = sequence.missing_before(open_time)
        except ValueError as exc:
            raise ConfigError(path, str(exc), f"line {reader.line_num}") from None
        if missing_before:
            candles.gap_rows.append(len(candles.open_times))
        add_time(int(open_time.timestamp()))
        add_open(open_)
        add_high(high)
        add_low(low)
        add_close(close)
        add_volume(volume)
        add_missing(missing_before)


def _not_a_number(record: list[str], price_indices: list[int]) -> str:
    for column, index in zip(PRICE_COLUMNS, price_indices, strict=True):
        try:
            float(record[index])
        except ValueError:
            return f"{column} {record[index]!r} is not a number"
    raise AssertionError("called for a row whose numbers all parse")


def _check_spacing(candles: CandleFile) -> None:
    """Alignment alone lets daily rows through a 1h environment (midnight is on the hourly
    grid); their spacing does not. Ties go to the timeframe: a file may have many holes."""
    spacings = Counter(candles.missing_before[row] + 1 for row in candles.gap_rows)  # in timeframes
    spacings[1] = len(candles) - 1 - len(candles.gap_rows)
    most_common = max(spacings, key=lambda spacing: (spacings[spacing], -spacing))
    if most_common > 1:
        step = timeframe_seconds(candles.timeframe)
        raise ConfigError(
            candles.path,
            f"rows are mostly {_describe_seconds(most_common * step)} apart, but the environment's "
            f"timeframe is {candles.timeframe}: is this {_describe_seconds(most_common * step)} data?",
        )
