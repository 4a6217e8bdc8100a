"""Stream a backtest data file (CSV, or Parquet by its extension) as checked CandleBlocks.

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
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

from backend.errors import ConfigError
from backend.market_data.candle_blocks import (
    NUMBER_COLUMNS,
    BadRowError,
    CandleBlock,
    ColumnTypeError,
    check_block,
    parse_row,
)
from backend.market_data.candle_checks import CandleSequence
from backend.market_data.candle_file import utc_from_epoch

COLUMNS = ("timestamp", *NUMBER_COLUMNS)
PARQUET_SUFFIXES = (".parquet", ".pq")
BLOCK_BYTES = 1 << 20  # of CSV text per block: ~17,000 rows of a typical candle file
BLOCK_ROWS = 1 << 14  # Parquet rows per batch, and the row-by-row reference loop's block


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def candle_blocks(path: Path, timeframe: str) -> Iterator[CandleBlock]:
    """Every candle of the file, in file order, checked, a block at a time."""
    blocks = _parquet_blocks(path, timeframe) if is_parquet(path) else _csv_blocks(path, timeframe)
    try:
        yield from blocks
    except IsADirectoryError:
        raise ConfigError(path, "data file is a directory, not a CSV or Parquet file") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read data file: {exc.strerror or exc}") from None


# --- CSV ------------------------------------------------------------------------------------


def _csv_blocks(path: Path, timeframe: str) -> Iterator[CandleBlock]:
    header, first_time = _csv_start(path)
    indices = [header.index(column) for column in COLUMNS]
    # Our own column names (the header's may repeat). pyarrow converts the cells itself (four
    # times faster than text then cast) and refuses any cell it cannot read exactly as Python
    # would; no cell is null (null_values=[]): an empty one is refused, not made a NaN.
    names = [f"column_{index}" for index in range(len(header))]
    types = dict.fromkeys(names, pa.string())  # extra columns: text, so bad UTF-8 is refused anywhere
    types[names[indices[0]]] = _timestamp_type(first_time)
    types.update((names[index], pa.float64()) for index in indices[1:])
    rows, previous_open = 0, None
    try:
        reader = arrow_csv.open_csv(
            path,
            # One thread: as fast on a busy machine, and environments replaying at once add no pools.
            read_options=arrow_csv.ReadOptions(
                skip_rows=1, column_names=names, block_size=BLOCK_BYTES, use_threads=False,
            ),
            convert_options=arrow_csv.ConvertOptions(
                column_types=types, null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            if not batch.num_rows:
                continue
            times, *numbers = (batch.column(index) for index in indices)
            block = check_block(rows, times, numbers, previous_open, timeframe)
            yield block
            rows, previous_open = rows + len(block), int(block.open_times[-1])
    except (pa.ArrowInvalid, BadRowError):
        yield from _csv_reference_blocks(path, header, rows, previous_open, timeframe)


def _timestamp_type(first_time: str | None) -> pa.DataType:
    """Timestamps with an offset ("Z" included) or without (UTC): the first row says which the
    file has; a file that mixes both is read row by row from the first block that does."""
    try:
        naive = first_time is not None and datetime.fromisoformat(first_time).tzinfo is None
    except ValueError:
        naive = False
    return pa.timestamp("us") if naive else pa.timestamp("us", "UTC")


def _csv_start(path: Path) -> tuple[list[str], str | None]:
    """The header's column names and the first row's timestamp cell (None without rows)."""
    try:
        # utf-8-sig: a BOM written by spreadsheet tools must not end up in the first column's name.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            first_row = next((record for record in reader if record), None)
    except UnicodeDecodeError:
        raise ConfigError(path, "not a UTF-8 text file") from None
    except csv.Error as exc:
        raise ConfigError(path, f"not a readable CSV file: {exc}") from None
    if not header:
        raise ConfigError(path, f"the file is empty: expected the header {','.join(COLUMNS)}")
    absent = [column for column in COLUMNS if column not in header]
    if absent:
        raise ConfigError(path, f"missing column(s): {', '.join(absent)}", "line 1")
    time_index = header.index(COLUMNS[0])
    return header, first_row[time_index] if first_row and len(first_row) > time_index else None


def _csv_reference_blocks(
    path: Path, header: list[str], from_row: int, previous_open: int | None, timeframe: str
) -> Iterator[CandleBlock]:
    """The rows from `from_row` on, read and checked row by row with Python's csv module."""
    width = len(header)
    time_index, *number_indices = (header.index(column) for column in COLUMNS)
    sequence = CandleSequence(timeframe)
    sequence.last = None if previous_open is None else utc_from_epoch(previous_open)
    block = _BlockBuilder(from_row)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            next(reader)  # the header
            for record in islice((record for record in reader if record), from_row, None):  # blank lines: no rows
                if len(record) != width:
                    raise ConfigError(
                        path, f"expected {width} fields: {','.join(header)} (got {len(record)})",
                        f"line {reader.line_num}",
                    )
                try:
                    open_time, numbers = parse_row(record[time_index], [record[index] for index in number_indices])
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
    """Rows checked one by one, gathered into a CandleBlock of at most BLOCK_ROWS rows."""

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

    def build(self) -> CandleBlock:
        opens, highs, lows, closes, volumes = np.array(self.numbers, dtype=np.float64).T
        return CandleBlock(
            self.first_row, np.array(self.open_times, dtype=np.int64), opens, highs, lows, closes, volumes,
            np.array(self.missing, dtype=np.int64),
        )


# --- Parquet --------------------------------------------------------------------------------


def _parquet_blocks(path: Path, timeframe: str) -> Iterator[CandleBlock]:
    try:
        # pre_buffer off: on, pyarrow keeps the ranges it read ahead, so memory grows with the file;
        # buffer_size: column chunks are read through a buffer, not whole (a row group can be huge).
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=BLOCK_BYTES)
    except pa.ArrowInvalid as exc:
        raise ConfigError(path, f"not a readable Parquet file: {exc}") from None
    absent = [column for column in COLUMNS if column not in parquet.schema_arrow.names]
    if absent:
        raise ConfigError(path, f"missing column(s): {', '.join(absent)}")
    rows, previous_open = 0, None
    try:
        for batch in parquet.iter_batches(batch_size=BLOCK_ROWS, columns=list(COLUMNS)):
            if not batch.num_rows:
                continue
            times, *numbers = (batch.column(column) for column in COLUMNS)
            block = check_block(rows, times, numbers, previous_open, timeframe)
            yield block
            rows, previous_open = rows + len(block), int(block.open_times[-1])
    except BadRowError as bad:
        raise ConfigError(path, bad.reason, f"row {bad.row + 1}") from None
    except ColumnTypeError as exc:
        raise ConfigError(path, str(exc)) from None
    except pa.ArrowInvalid as exc:
        raise ConfigError(path, f"not a readable Parquet file: {exc}") from None


