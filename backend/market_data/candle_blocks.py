"""Candle rows checked a block at a time: vectorised tests find the first bad row of a block, the
row-by-row reference rules (`parse_row`, `candle_problem`, `CandleSequence`) say what is wrong with it.

Invariant: `check_block` returns a block of CandleColumns only when every row of the block passes, in order,
exactly the rules `parse_row` and `CandleSequence` apply row by row (the vectorised tests accept
nothing the reference refuses, and their values equal the reference's); otherwise it raises
BadRowError for the first row that fails, with the reference's reason for it.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.candle_checks import CandleSequence, candle_problem
from backend.market_data.timeframes import as_utc, timeframe_seconds, utc_from_epoch

NUMBER_COLUMNS = ("open", "high", "low", "close", "volume")
UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
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


def check_block(
    first_row: int, times: pa.Array, numbers: Sequence[pa.Array], previous_open: int | None, timeframe: str
) -> CandleColumns:
    """Check one block read from a file: its rows as CandleColumns of no symbol yet, whose
    `missing_before[i]` counts the candles missing between row i and the row before it in the file
    (0 for the file's first row). times: ISO 8601 strings or timestamps; numbers: the five number
    columns in NUMBER_COLUMNS order, of any type that casts to float64 (text included);
    previous_open: the epoch seconds of the file's row before this block (None at the file's start)."""
    timeframe_step = timeframe_seconds(timeframe)
    epochs, time_ok, units = _epoch_units(times)
    opens, highs, lows, closes, volumes = columns = [_floats(column) for column in numbers]
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
    if time_ok is not None:
        bad |= ~time_ok
    if bad.any():
        index = int(bad.argmax())
        earlier = int(previous[index] // units) if index or previous_open is not None else None
        raise BadRowError(first_row + index, _reference_reason(times, numbers, index, earlier, timeframe))
    seconds = epochs // units
    missing = (seconds - previous // units) // timeframe_step - 1
    return CandleColumns("", seconds, opens, highs, lows, closes, volumes, missing, first_row=first_row)


def _reference_reason(
    times: pa.Array, numbers: Sequence[pa.Array], index: int, previous_open: int | None, timeframe: str
) -> str:
    try:
        open_time, _ = parse_row(times[index].as_py(), [column[index].as_py() for column in numbers])
        sequence = CandleSequence(timeframe)
        sequence.last = None if previous_open is None else utc_from_epoch(previous_open)
        sequence.missing_before(open_time)
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"row {index} of a block failed the vectorised checks but passes the reference")


def _epoch_units(times: pa.Array) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(int64 times since the epoch, validity mask or None when all are valid, units per second)."""
    if pa.types.is_timestamp(times.type):
        return _int64s(times.cast(pa.int64())), _valid(times), UNITS_PER_SECOND[times.type.unit]
    if not (pa.types.is_string(times.type) or pa.types.is_large_string(times.type)):
        raise ColumnTypeError(f"the timestamp column holds {times.type}: expected ISO 8601 text or timestamps")
    # Fast: all with an offset ("Z" included), or all without (UTC). Anything else row by row.
    for target in (pa.timestamp("us", "UTC"), pa.timestamp("us")):
        try:
            parsed = pc.cast(times, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return _int64s(parsed.cast(pa.int64())), _valid(parsed), UNITS_PER_SECOND["us"]
    micros = [_epoch_micros(value) for value in times.to_pylist()]
    valid = np.array([value is not None for value in micros])
    return np.array([value or 0 for value in micros], dtype=np.int64), valid, UNITS_PER_SECOND["us"]


def _epoch_micros(value: object) -> int | None:
    try:
        return (parse_time(value) - EPOCH) // MICROSECOND
    except ValueError:
        return None


def _floats(column: pa.Array) -> np.ndarray:
    """float64 values, NaN where a cell is null or not a number (the reference decides which)."""
    try:
        values = pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # spellings only Python reads, or real junk
        return np.array([_float_or_nan(value) for value in column.to_pylist()], dtype=np.float64)
    return values.fill_null(np.nan).to_numpy(zero_copy_only=False)


def _float_or_nan(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan


def _int64s(values: pa.Array) -> np.ndarray:
    return values.fill_null(0).to_numpy(zero_copy_only=False)


def _valid(values: pa.Array) -> np.ndarray | None:
    return None if values.null_count == 0 else values.is_valid().to_numpy(zero_copy_only=False)
