"""A chunk of CSV text (whole lines) as numpy columns, vectorised: the fast path of the CSV reader.

Invariant: `read_chunk` returns columns only for text that the reference loop (Python's csv
module, then `parse_row`) reads row for row the same, to the same values; for anything else it
returns None and the reader reads from there with the reference loop. So it refuses a quote, a
NUL byte, a carriage return not followed by a newline, a line whose number of fields is not the
file's, bad UTF-8, and a number `numpy.loadtxt` does not read (it reads a subset of what `float`
reads, through the same conversion: `1_000` or Arabic digits are left to the reference).
Timestamps are read vectorised when every row of the chunk has the same layout: ISO 8601 as
`YYYY-MM-DDTHH:MM:SS` (or a space for the T), alone (UTC), with `Z` or with `±HH:MM`; Unix times
as digits alone. Other spellings go cell by cell through the reference's own conversion.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from backend.market_data.candle_blocks import UNITS_PER_SECOND, EpochColumn, epoch_micros, parse_unix_time

NEWLINE, CARRIAGE_RETURN, COMMA, QUOTE, NUL = (ord(c) for c in "\n\r,\"\0")
DIGIT_0 = ord("0")
# The fixed characters of the ISO 8601 layouts read vectorised, by position; every other position
# of the date and time holds a digit; T may be a space. Python reads all of these (fromisoformat).
ISO_DATE_TIME = {4: b"-", 7: b"-", 10: b"T ", 13: b":", 16: b":"}
ISO_LAYOUTS = {
    19: ISO_DATE_TIME,  # 2023-01-01T00:00:00 (UTC)
    20: {**ISO_DATE_TIME, 19: b"Z"},  # 2023-01-01T00:00:00Z
    25: {**ISO_DATE_TIME, 19: b"+-", 22: b":"},  # 2023-01-01T00:00:00+00:00
}
# The first and last seconds datetime holds (0001-01-01 00:00:00, 9999-12-31 23:59:59).
FIRST_SECOND = int((datetime(1, 1, 1) - datetime(1970, 1, 1)).total_seconds())
LAST_SECOND = int((datetime(9999, 12, 31, 23, 59, 59) - datetime(1970, 1, 1)).total_seconds())
MAX_EPOCH_DIGITS = 15  # 253402300799999, the last millisecond, has 15


@dataclass(frozen=True)
class ChunkColumns:
    times: EpochColumn
    numbers: list[np.ndarray]  # float64, in NUMBER_COLUMNS order
    cells: Callable[[int], tuple[object, list[object]]]  # row i's cells, as the reference gets them


def read_chunk(chunk: bytes, width: int, indices: list[int], epoch_unit: str | None) -> ChunkColumns | None:
    """The rows of chunk (whole lines, the last one ended by a newline; blank lines are no rows)
    of `width` fields, those at `indices` read (the timestamp's, then the five numbers');
    epoch_unit: the file's Unix time unit, None for ISO 8601. None: read it with the reference loop."""
    if QUOTE in chunk or NUL in chunk:
        return None
    if CARRIAGE_RETURN in chunk:
        chunk = chunk.replace(b"\r\n", b"\n")
        if CARRIAGE_RETURN in chunk:  # a line ended by \r alone
            return None
    buffer = np.frombuffer(chunk, dtype=np.uint8)
    line_ends = np.flatnonzero(buffer == NEWLINE)
    line_starts = np.concatenate(([0], line_ends[:-1] + 1))
    filled = line_ends > line_starts  # blank lines are no rows
    starts, ends = line_starts[filled], line_ends[filled]
    separators = np.flatnonzero(buffer == COMMA)
    if len(separators) != len(starts) * (width - 1):
        return None
    # Row i's own width - 1 commas (in order) lie within its line: then no line has more or fewer.
    commas = separators.reshape(len(starts), width - 1)
    if ((commas[:, 0] < starts) | (commas[:, -1] >= ends)).any():
        return None
    time_index, number_indices = indices[0], indices[1:]

    def cells(row: int) -> tuple[object, list[object]]:
        fields = chunk[starts[row]:ends[row]].decode().split(",")
        time_cell = fields[time_index]
        return (time_cell if epoch_unit is None else parse_unix_time(time_cell, epoch_unit),
                [fields[index] for index in number_indices])

    if not len(starts):
        return ChunkColumns(EpochColumn(np.empty(0, dtype=np.int64), 1), [np.empty(0)] * len(number_indices), cells)
    try:  # loadtxt decodes every line: bad UTF-8 anywhere is a UnicodeDecodeError, a ValueError
        numbers = np.loadtxt(io.BytesIO(chunk), dtype=np.float64, delimiter=",", comments=None,
                             usecols=number_indices, ndmin=2, quotechar=None, encoding="utf-8")
    except ValueError:  # a number loadtxt does not read: the reference will say whether it is one
        return None
    if len(numbers) != len(starts):
        return None
    spans = (starts if time_index == 0 else commas[:, time_index - 1] + 1,
             ends if time_index == width - 1 else commas[:, time_index])
    times = _iso_times(buffer, *spans) if epoch_unit is None else _unix_times(buffer, *spans, epoch_unit)
    if times is None:  # cell by cell, as the reference reads them
        times = EpochColumn.of_micros([_micros(chunk[start:end].decode(), epoch_unit)
                                       for start, end in zip(*spans, strict=True)])
    return ChunkColumns(times, list(np.ascontiguousarray(numbers.T)), cells)


def _micros(cell: str, epoch_unit: str | None) -> int | None:
    if epoch_unit is None:
        return epoch_micros(cell)
    try:
        return epoch_micros(parse_unix_time(cell, epoch_unit))
    except ValueError:
        return None


def _iso_times(buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> EpochColumn | None:
    """Every cell in one of ISO_LAYOUTS, a valid date-time and offset: their epoch seconds; else None."""
    length = int(ends[0] - starts[0])
    layout = ISO_LAYOUTS.get(length)
    if layout is None or (ends - starts != length).any():
        return None
    characters = buffer[starts[:, None] + np.arange(length)]
    for position, allowed in layout.items():
        if not np.logical_or.reduce([characters[:, position] == code for code in allowed]).all():
            return None
    digits = [position for position in range(length) if position not in layout]
    if ((characters[:, digits] - np.uint8(DIGIT_0)) > 9).any():  # uint8: below "0" wraps above 9
        return None
    try:  # numpy reads the date and time as Python does, and refuses the same days, hours...
        seconds = np.ascontiguousarray(characters[:, :19]).view("S19").ravel().astype("datetime64[s]")
    except ValueError:
        return None
    epochs = seconds.astype(np.int64)
    if (epochs < FIRST_SECOND).any():  # year 0, which numpy reads and Python does not
        return None
    if length == 25:  # minus the offset
        offset = (characters[:, [20, 21, 23, 24]].astype(np.int64) - DIGIT_0) @ np.array([36_000, 3_600, 600, 60])
        if (offset >= 86_400).any() or (characters[:, 23] > ord("5")).any():  # Python: under 24 h, minutes < 60
            return None
        epochs -= np.where(characters[:, 19] == ord("-"), -offset, offset)
        if ((epochs < FIRST_SECOND) | (epochs > LAST_SECOND)).any():  # out of datetime's range in UTC
            return None
    return EpochColumn(epochs, 1)


def _unix_times(buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray, unit: str) -> EpochColumn | None:
    """Every cell digits alone, within datetime's range: their values; else None."""
    lengths = ends - starts
    longest = int(lengths.max())
    if lengths.min() < 1 or longest > MAX_EPOCH_DIGITS:
        return None
    positions = ends[:, None] - longest + np.arange(longest)  # right-aligned: units in the last column
    inside = positions >= starts[:, None]
    digits = buffer[np.maximum(positions, 0)].astype(np.int16) - DIGIT_0
    if (inside & ((digits < 0) | (digits > 9))).any():
        return None
    values = np.where(inside, digits, 0) @ 10 ** np.arange(longest - 1, -1, -1, dtype=np.int64)
    units = UNITS_PER_SECOND[unit]
    if (values > LAST_SECOND * units + units - 1).any():
        return None
    return EpochColumn(values, units)
