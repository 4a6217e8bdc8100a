"""Stream a backtest data file (CSV, gzip-compressed CSV by `.gz`, or Parquet by its extension) as
checked blocks of CandleColumns. A CSV file's layout (CsvLayout: a header in any case, or none as in Kraken's
OHLCVT export; ISO 8601 or Unix timestamps) is read from its first line and first row.

Invariant: memory is one block, never the file: CSV is read BLOCK_BYTES of text at a time, Parquet
a record batch of at most BLOCK_ROWS rows at a time (parquet_files, the only reader that imports
pyarrow, imported when a Parquet file is read); every row yielded passed `check_block` (so
`parse_row`, `candle_problem` and `CandleSequence`); anything else is a ConfigError naming the
file and the CSV line (as a text editor counts it) or the Parquet row (1 = the first candle). A
CSV chunk the vectorised reader does not read (csv_chunks: a quote, a row with the wrong number of
fields, bad UTF-8, spellings only Python reads such as `1_000`) or that fails a check is re-read
from its first row to the end of the file by the row-by-row reference loop (Python's csv module,
as the reader always did), which yields what it accepts and names the first line it refuses: the
vectorised reader only speeds the reading up, it never changes what is accepted or the error.
"""

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import TextIO

import numpy as np

from backend.errors import ConfigError
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.candle_blocks import (
    COLUMNS,
    NUMBER_COLUMNS,
    BadRowError,
    check_block,
    parse_row,
    parse_unix_time,
)
from backend.market_data.candle_checks import CandleSequence
from backend.market_data.csv_chunks import read_chunk
from backend.market_data.timeframes import utc_from_epoch

# Without a header, the fields are these, in this order: Kraken's OHLCVT export, or its first six.
HEADERLESS_COLUMNS = ("time", *NUMBER_COLUMNS, "trades")
ACCEPTED = (
    f"a header naming {','.join(COLUMNS)} (any case, any order, extra columns ignored), or no header and "
    f"the fields {','.join(HEADERLESS_COLUMNS)} (Kraken's OHLCVT export) or its first six; timestamps "
    "in ISO 8601 or Unix seconds or milliseconds"
)
PARQUET_SUFFIXES = (".parquet", ".pq")
BLOCK_BYTES = 1 << 18  # of CSV text per block: ~4,300 rows of a typical candle file
BLOCK_ROWS = 1 << 14  # Parquet rows per batch, and the row-by-row reference loop's block
UTF8_BOM = b"\xef\xbb\xbf"


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def candle_blocks(path: Path, timeframe: str) -> Iterator[CandleColumns]:
    """Every candle of the file, in file order, checked, a block at a time."""
    if is_parquet(path):
        from backend.market_data.parquet_files import parquet_blocks  # pyarrow: for Parquet files only

        blocks = parquet_blocks(path, timeframe, BLOCK_ROWS)
    else:
        blocks = _csv_blocks(path, timeframe)
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

    @property
    def columns(self) -> str:
        """The fields a row must have, for an error: the header, or the columns read without one."""
        return ",".join(self.header if self.header is not None else HEADERLESS_COLUMNS[:self.width])


def _csv_blocks(path: Path, timeframe: str) -> Iterator[CandleColumns]:
    layout = _csv_start(path)
    rows, previous_open = 0, None
    for chunk in _chunks(path, skip_header=layout.header is not None):
        block = _checked_chunk(chunk, layout, rows, previous_open, timeframe)
        del chunk  # not held while the block is replayed: memory is one chunk
        if block is None:  # from its first row on, the reference loop reads it (and names the bad line)
            yield from _csv_reference_blocks(path, layout, rows, previous_open, timeframe)
            return
        if len(block):
            yield block
            rows, previous_open = rows + len(block), int(block.open_times[-1])


def _checked_chunk(chunk: bytes, layout: CsvLayout, first_row: int, previous_open: int | None,
                   timeframe: str) -> CandleColumns | None:
    """The chunk's rows, checked; None when the vectorised reader does not read them or one fails."""
    columns = read_chunk(chunk, layout.width, layout.indices, layout.epoch_unit)
    if columns is None:
        return None
    try:
        return check_block(first_row, columns.times, columns.numbers, previous_open, timeframe, columns.cells)
    except BadRowError:
        return None


def _chunks(path: Path, skip_header: bool) -> Iterator[bytes]:
    """The file's lines about BLOCK_BYTES at a time, each chunk ended by a newline, without the
    header line (skip_header) or else without a UTF-8 BOM before the first row."""
    with _open_binary(path) as handle:
        if skip_header:
            handle.readline()  # a BOM before it included
        at_start = not skip_header
        while chunk := handle.read(BLOCK_BYTES):
            if at_start:
                chunk, at_start = chunk.removeprefix(UTF8_BOM), False
            chunk += handle.readline()  # to the end of its last line
            yield chunk if chunk.endswith(b"\n") else chunk + b"\n"


def _open_binary(path: Path) -> io.BufferedIOBase:
    """The file's bytes (a .gz file decompressed)."""
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb")


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
        return CsvLayout(None, len(first), list(range(len(COLUMNS))), _epoch_unit(first[0]))
    names = [name.lower() for name in first]
    absent = [column for column in COLUMNS if column not in names]
    if absent:
        raise ConfigError(path, f"missing column(s): {', '.join(absent)}; the header found: {','.join(first)}; "
                                f"expected {ACCEPTED}", "line 1")
    indices = [names.index(column) for column in COLUMNS]
    first_time = first_row[indices[0]].strip() if first_row and len(first_row) > indices[0] else None
    return CsvLayout(first, len(first), indices, None if first_time is None else _epoch_unit(first_time))


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
                    open_time, numbers = parse_row(time_cell if unit is None else parse_unix_time(time_cell, unit),
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
