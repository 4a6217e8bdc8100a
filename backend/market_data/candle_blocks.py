"""Candle rows checked a block at a time: vectorised tests find the first bad row of a block, the
row-by-row reference rules (`parse_row`, `candle_problem`, `CandleSequence`) say what is wrong with it.
numpy only: the readers turn their cells into numpy columns (pyarrow is the Parquet reader's alone).

Invariant: `check_block` returns a block of CandleColumns only when every row of the block passes, in order,
exactly the rules `parse_row` and `CandleSequence` apply row by row (the vectorised tests accept
nothing the reference refuses, and their values equal the reference's); otherwise it raises
BadRowError for the first row that fails, with the reference's reason for it.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.candle_checks import CandleSequence, candle_problem
from backend.market_data.timeframes import as_utc, timeframe_seconds, utc_from_epoch

NUMBER_COLUMNS = ("open", "high", "low", "close", "volume")
COLUMNS = ("timestamp", *NUMBER_COLUMNS)  # a data file's, by name (CSV headers, Parquet columns)
UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
EPOCH_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds"}  # the Unix time units of a CSV file
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class ColumnTypeError(Exception):
    """A typed file's column holds values of a type no candle is made of."""


class BadRowError(Exception):
    """Row `row` (index among the file's candles) breaks a rule: `reason` says which."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row = row
        self.reason = reason


def parse_time(value: object) -> datetime:
    """A timestamp cell (ISO 8601 text, or a date-time from a typed file) as a UTC date-time."""
    if isinstance(value, datetime):
        return as_utc(value)
    if value is None:  # a null cell of a typed file
        raise ValueError("timestamp is empty")
    try:
        return as_utc(datetime.fromisoformat(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"timestamp {value!r} is not an ISO 8601 date-time") from None


def parse_unix_time(cell: str, unit: str) -> datetime:
    """A Unix time cell (the unit is the file's: EPOCH_UNIT_NAMES) as a UTC date-time."""
    cell = cell.strip()
    try:
        if not cell.removeprefix("-").isdigit():  # as an int64 is written: digits, a minus sign
            raise ValueError
        return EPOCH + timedelta(**{EPOCH_UNIT_NAMES[unit]: int(cell)})
    except (ValueError, OverflowError):
        raise ValueError(f"timestamp {cell!r} is not a Unix time in {EPOCH_UNIT_NAMES[unit]}") from None


def parse_number(column: str, value: object) -> float:
    if value is None:
        raise ValueError(f"{column} is empty")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{column} {value!r} is not a number") from None


def parse_row(time_value: object, number_values: Sequence[object]) -> tuple[datetime, list[float]]:
    """The reference rules for one row, in the order they are reported: timestamp, numbers (the
    first bad column), then `candle_problem`. Raises ValueError with the reason."""
    open_time = parse_time(time_value)
    numbers = [parse_number(column, value) for column, value in zip(NUMBER_COLUMNS, number_values, strict=True)]
    problem = candle_problem(*numbers)
    if problem is not None:
        raise ValueError(problem)
    return open_time, numbers


@dataclass(frozen=True)
class EpochColumn:
    """A block's open times: int64 `units` (per second) since the epoch; `valid` False where a
    cell is no time the reference reads (its epoch is then meaningless), None when all are valid."""

    epochs: np.ndarray
    units: int
    valid: np.ndarray | None = None

    @classmethod
    def of_micros(cls, micros: Sequence[int | None]) -> "EpochColumn":
        """From per-cell microseconds (`epoch_micros`: None where the reference refuses the cell)."""
        valid = np.array([value is not None for value in micros], dtype=bool)
        return cls(np.array([value or 0 for value in micros], dtype=np.int64), UNITS_PER_SECOND["us"], valid)


def check_block(
    first_row: int,
    times: EpochColumn,
    numbers: Sequence[np.ndarray],
    previous_open: int | None,
    timeframe: str,
    cells: Callable[[int], tuple[object, list[object]]],
) -> CandleColumns:
    """Check one block read from a file: its rows as CandleColumns of no symbol yet, whose
    `missing_before[i]` counts the candles missing between row i and the row before it in the file
    (0 for the file's first row). times: the open times (EpochColumn); numbers: the five number
    columns in NUMBER_COLUMNS order as float64, NaN where a cell is null or not a number;
    previous_open: the epoch seconds of the file's row before this block (None at the file's
    start); cells(i): row i's cells as read (a timestamp, five numbers), for the reference's reason."""
    timeframe_step = timeframe_seconds(timeframe)
    epochs, units = times.epochs, times.units
    opens, highs, lows, closes, volumes = columns = list(numbers)
    step_units = timeframe_step * units
    previous = np.empty_like(epochs)  # each row's predecessor; the file's first row has none
    previous[1:] = epochs[:-1]
    previous[:1] = epochs[:1] - step_units if previous_open is None else previous_open * units
    # NaN (from a null or an unparsable cell) fails every comparison: `isfinite` flags it.
    bad = ~np.logical_and.reduce([np.isfinite(column) for column in columns])
    bad |= np.minimum(np.minimum(opens, highs), np.minimum(lows, closes)) <= 0
    bad |= volumes < 0
    bad |= (lows > np.minimum(opens, closes)) | (highs < np.maximum(opens, closes))
    bad |= epochs % step_units != 0
    bad |= epochs <= previous
    if times.valid is not None:
        bad |= ~times.valid
    if bad.any():
        index = int(bad.argmax())
        earlier = int(previous[index] // units) if index or previous_open is not None else None
        raise BadRowError(first_row + index, _reference_reason(cells, index, earlier, timeframe))
    seconds = epochs // units
    missing = (seconds - previous // units) // timeframe_step - 1
    return CandleColumns("", seconds, opens, highs, lows, closes, volumes, missing, first_row=first_row)


def _reference_reason(
    cells: Callable[[int], tuple[object, list[object]]], index: int, previous_open: int | None, timeframe: str
) -> str:
    try:
        open_time, _ = parse_row(*cells(index))
        sequence = CandleSequence(timeframe)
        sequence.last = None if previous_open is None else utc_from_epoch(previous_open)
        sequence.missing_before(open_time)
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"row {index} of a block failed the vectorised checks but passes the reference")


def epoch_micros(value: object) -> int | None:
    """A timestamp cell as microseconds since the epoch, as the reference reads it; None if it does not."""
    try:
        return (parse_time(value) - EPOCH) // MICROSECOND
    except ValueError:
        return None
