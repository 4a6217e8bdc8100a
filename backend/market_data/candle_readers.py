"""Stream a backtest data file (CSV, gzip-compressed CSV by `.gz`, or Parquet by its extension) as
checked blocks of CandleColumns. A CSV file's layout (CsvLayout: a header in any case, or none as in Kraken's
OHLCVT export; ISO 8601 or Unix timestamps) is read from its first line and first row.

Invariant: memory is one block, never the file: CSV is read by pyarrow's streaming reader
BLOCK_BYTES of text at a time, Parquet a record batch of at most BLOCK_ROWS rows at a time; every
row yielded passed `check_block` (so `parse_row`, `candle_problem` and `CandleSequence`); anything
else is a ConfigError naming the file and the CSV line (as a text editor counts it) or the
Parquet row (1 = the first candle). A CSV block pyarrow cannot read (a row with the wrong number
of fields, bad UTF-8, spellings only Python reads such as `1_000` or ` 1.5`) or that fails a check
is re-read from its first row to the end of the file by the row-by-row reference loop (Python's
csv module, as the reader always did), which yields what it accepts and names the first line it
refuses: pyarrow only speeds the reading up, it never changes what is accepted or the error.
"""

import csv
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

from backend.errors import ConfigError
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.candle_blocks import (
    EPOCH,
    NUMBER_COLUMNS,
    BadRowError,
    ColumnTypeError,
    check_block,
    parse_row,
)
from backend.market_data.candle_checks import CandleSequence
from backend.market_data.timeframes import utc_from_epoch

COLUMNS = ("timestamp", *NUMBER_COLUMNS)
# Without a header, the fields are these, in this order: Kraken's OHLCVT export, or its first six.
HEADERLESS_COLUMNS = ("time", *NUMBER_COLUMNS, "trades")
EPOCH_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds"}
ACCEPTED = (
    f"a header naming {','.join(COLUMNS)} (any case, any order, extra columns ignored), or no header and "
    f"the fields {','.join(HEADERLESS_COLUMNS)} (Kraken's OHLCVT export) or its first six; timestamps "
    "in ISO 8601 or Unix seconds or milliseconds"
)
PARQUET_SUFFIXES = (".parquet", ".pq")
BLOCK_BYTES = 1 << 20  # of CSV text per block: ~17,000 rows of a typical candle file
BLOCK_ROWS = 1 << 14  # Parquet rows per batch, and the row-by-row reference loop's block


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def candle_blocks(path: Path, timeframe: str) -> Iterator[CandleColumns]:
    """Every candle of the file, in file order, checked, a block at a time."""
    blocks = _parquet_blocks(path, timeframe) if is_parquet(path) else _csv_blocks(path, timeframe)
    try:
        yield from blocks
    except IsADirectoryError:
        raise ConfigError(path, "data file is a directory, not a CSV or Parquet file") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read data file: {exc.strerror or exc}") from None


# --- CSV ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvLayout:
    """Where a CSV file's candles are: its header (None: the file has none, its first line is a
    candle), its fields per row, the field of each of COLUMNS, and how its timestamps are
    written: EPOCH_UNITS' "s" or "ms" (Unix times, as the first row has them), or None (ISO 8601)."""

    header: list[str] | None
    width: int
    indices: list[int]
    epoch_unit: str | None
    first_time: str | None

    @property
    def columns(self) -> str:
        """The fields a row must have, for an error: the header, or the columns read without one."""
        return ",".join(self.header if self.header is not None else HEADERLESS_COLUMNS[:self.width])


def _csv_blocks(path: Path, timeframe: str) -> Iterator[CandleColumns]:
    layout = _csv_start(path)
    indices = layout.indices
    # Our own column names (the header's may repeat). pyarrow converts the cells itself (four
    # times faster than text then cast) and refuses any cell it cannot read exactly as Python
    # would; no cell is null (null_values=[]): an empty one is refused, not made a NaN.
    names = [f"column_{index}" for index in range(layout.width)]
    types = dict.fromkeys(names, pa.string())  # extra columns: text, so bad UTF-8 is refused anywhere
    epoch_type = None if layout.epoch_unit is None else pa.timestamp(layout.epoch_unit, "UTC")
    types[names[indices[0]]] = _timestamp_type(layout.first_time) if epoch_type is None else pa.int64()
    types.update((names[index], pa.float64()) for index in indices[1:])
    rows, previous_open = 0, None
    try:
        reader = arrow_csv.open_csv(
            path,  # a .gz file is decompressed as it is read (pyarrow goes by the extension)
            # One thread: as fast on a busy machine, and environments replaying at once add no pools.
            read_options=arrow_csv.ReadOptions(
                skip_rows=0 if layout.header is None else 1, column_names=names, block_size=BLOCK_BYTES,
                use_threads=False,
            ),
            convert_options=arrow_csv.ConvertOptions(
                column_types=types, null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            if not batch.num_rows:
                continue
            times, *numbers = (batch.column(index) for index in indices)
            if epoch_type is not None:
                times = times.cast(epoch_type)
            block = check_block(rows, times, numbers, previous_open, timeframe)
            yield block
            rows, previous_open = rows + len(block), int(block.open_times[-1])
    except (pa.ArrowInvalid, BadRowError):
        yield from _csv_reference_blocks(path, layout, rows, previous_open, timeframe)


def _timestamp_type(first_time: str | None) -> pa.DataType:
    """Timestamps with an offset ("Z" included) or without (UTC): the first row says which the
    file has; a file that mixes both is read row by row from the first block that does."""
    try:
        naive = first_time is not None and datetime.fromisoformat(first_time).tzinfo is None
    except ValueError:
        naive = False
    return pa.timestamp("us") if naive else pa.timestamp("us", "UTC")


def _open_text(path: Path) -> TextIO:
    """The file as text for Python's csv module (a .gz file decompressed); utf-8-sig: a BOM
    written by spreadsheet tools must not end up in the first column's name."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return path.open(newline="", encoding="utf-8-sig")


def _csv_start(path: Path) -> CsvLayout:
    """The file's layout, from its first line and its first row (see ACCEPTED)."""
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            first = [cell.strip() for cell in next(reader, [])]
            first_row = next((record for record in reader if record), None)
    except UnicodeDecodeError:
        raise ConfigError(path, "not a UTF-8 text file") from None
    except csv.Error as exc:
        raise ConfigError(path, f"not a readable CSV file: {exc}") from None
    if not first:
        raise ConfigError(path, f"the file is empty: expected {ACCEPTED}")
    if _is_candle(first):  # no header: Kraken's own export, or a bare OHLCV dump
        if len(first) not in (len(COLUMNS), len(HEADERLESS_COLUMNS)):
            raise ConfigError(path, f"no header, and {len(first)} columns: expected {ACCEPTED}", "line 1")
        return CsvLayout(None, len(first), list(range(len(COLUMNS))), _epoch_unit(first[0]), first[0])
    names = [name.lower() for name in first]
    absent = [column for column in COLUMNS if column not in names]
    if absent:
        raise ConfigError(path, f"missing column(s): {', '.join(absent)}; the header found: {','.join(first)}; "
                                f"expected {ACCEPTED}", "line 1")
    indices = [names.index(column) for column in COLUMNS]
    first_time = first_row[indices[0]].strip() if first_row and len(first_row) > indices[0] else None
    return CsvLayout(first, len(first), indices, None if first_time is None else _epoch_unit(first_time), first_time)


def _is_candle(cells: list[str]) -> bool:
    """A line of candle fields, not a header: a timestamp (Unix or ISO 8601), then numbers."""
    try:
        [float(cell) for cell in cells[1:]]
        if _epoch_unit(cells[0]) is None:
            datetime.fromisoformat(cells[0])
    except ValueError:
        return False
    return len(cells) > 1


def _epoch_unit(first_time: str) -> str | None:
    """A Unix time's unit, from the file's first one ("s", or "ms" from 10^11 on: in seconds that
    is the year 5138, in milliseconds 1973); None when it is no Unix time (ISO 8601)."""
    if not first_time.isdigit():
        return None
    return "ms" if int(first_time) >= 10**11 else "s"


def _epoch_time(cell: str, unit: str) -> datetime:
    """A Unix time cell as the reference reads it (the unit is the file's)."""
    try:
        if not cell.removeprefix("-").isdigit():  # as pyarrow reads an int64: digits, a minus sign
            raise ValueError
        return EPOCH + timedelta(**{EPOCH_UNIT_NAMES[unit]: int(cell)})
    except (ValueError, OverflowError):
        raise ValueError(f"timestamp {cell!r} is not a Unix time in {EPOCH_UNIT_NAMES[unit]}") from None


def _csv_reference_blocks(
    path: Path, layout: CsvLayout, from_row: int, previous_open: int | None, timeframe: str
) -> Iterator[CandleColumns]:
    """The rows from `from_row` on, read and checked row by row with Python's csv module."""
    width, unit = layout.width, layout.epoch_unit
    time_index, *number_indices = layout.indices
    sequence = CandleSequence(timeframe)
    sequence.last = None if previous_open is None else utc_from_epoch(previous_open)
    block = _BlockBuilder(from_row)
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            if layout.header is not None:
                next(reader)
            for record in islice((record for record in reader if record), from_row, None):  # blank lines: no rows
                if len(record) != width:
                    raise ConfigError(
                        path, f"expected {width} fields: {layout.columns} (got {len(record)})",
                        f"line {reader.line_num}",
                    )
                try:
                    time_cell = record[time_index]
                    open_time, numbers = parse_row(time_cell if unit is None else _epoch_time(time_cell.strip(), unit),
                                                   [record[index] for index in number_indices])
                    block.add(open_time, numbers, sequence.missing_before(open_time))
                except ValueError as exc:
                    raise ConfigError(path, str(exc), f"line {reader.line_num}") from None
                if block.full:
                    yield block.build()
                    block = _BlockBuilder(block.first_row + BLOCK_ROWS)
    except UnicodeDecodeError:
        raise ConfigError(path, "not a UTF-8 text file") from None
    except csv.Error as exc:
        raise ConfigError(path, f"not a readable CSV file: {exc}") from None
    if block.open_times:
        yield block.build()


class _BlockBuilder:
    """Rows checked one by one, gathered into a block of at most BLOCK_ROWS rows."""

    def __init__(self, first_row: int) -> None:
        self.first_row = first_row
        self.open_times: list[int] = []
        self.numbers: list[list[float]] = []
        self.missing: list[int] = []

    @property
    def full(self) -> bool:
        return len(self.open_times) == BLOCK_ROWS

    def add(self, open_time: datetime, numbers: list[float], missing_before: int) -> None:
        self.open_times.append(int(open_time.timestamp()))
        self.numbers.append(numbers)
        self.missing.append(missing_before)

    def build(self) -> CandleColumns:
        opens, highs, lows, closes, volumes = np.array(self.numbers, dtype=np.float64).T
        return CandleColumns(
            "", np.array(self.open_times, dtype=np.int64), opens, highs, lows, closes, volumes,
            np.array(self.missing, dtype=np.int64), first_row=self.first_row,
        )


# --- Parquet --------------------------------------------------------------------------------


def _parquet_blocks(path: Path, timeframe: str) -> Iterator[CandleColumns]:
    try:
        # pre_buffer off: on, pyarrow keeps the ranges it read ahead, so memory grows with the file;
        # buffer_size: column chunks are read through a buffer, not whole (a row group can be huge).
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=BLOCK_BYTES)
    except pa.ArrowInvalid as exc:
        raise ConfigError(path, f"not a readable Parquet file: {exc}") from None
    found = parquet.schema_arrow.names
    names = {name.lower(): name for name in reversed(found)}  # any case; the first of a repeated name
    absent = [column for column in COLUMNS if column not in names]
    if absent:
        raise ConfigError(path, f"missing column(s): {', '.join(absent)}; the columns found: {','.join(found)}; "
                                f"expected columns named {','.join(COLUMNS)} (any case, extra ones ignored)")
    columns = [names[column] for column in COLUMNS]
    rows, previous_open = 0, None
    try:
        for batch in parquet.iter_batches(batch_size=BLOCK_ROWS, columns=columns):
            if not batch.num_rows:
                continue
            times, *numbers = (batch.column(column) for column in columns)
            block = check_block(rows, times, numbers, previous_open, timeframe)
            yield block
            rows, previous_open = rows + len(block), int(block.open_times[-1])
    except BadRowError as bad:
        raise ConfigError(path, bad.reason, f"row {bad.row + 1}") from None
    except ColumnTypeError as exc:
        raise ConfigError(path, str(exc)) from None
    except pa.ArrowInvalid as exc:
        raise ConfigError(path, f"not a readable Parquet file: {exc}") from None


