"""Parquet data files: streamed as checked blocks of CandleColumns (a record batch of at most
`batch_rows` rows at a time, its columns turned into numpy and checked by `check_block`), and
written from numpy columns (candle_writer).

Invariant: the only module of market_data that imports pyarrow, and it is imported only where a
Parquet file is read or written: a CSV backtest never loads pyarrow. Arrays are made from and read
through their buffers, never with `pa.array`, `to_numpy` or a timestamp's `as_py` (each makes
pyarrow import pandas, ~0.2 s and ~75 MB), except to say what is wrong with a bad row.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from backend.errors import ConfigError
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.candle_blocks import (
    COLUMNS,
    UNITS_PER_SECOND,
    BadRowError,
    ColumnTypeError,
    EpochColumn,
    check_block,
    epoch_micros,
)

BUFFER_BYTES = 1 << 20  # column chunks are read through a buffer this size, not whole


def parquet_blocks(path: Path, timeframe: str, batch_rows: int) -> Iterator[CandleColumns]:
    try:
        # pre_buffer off: on, pyarrow keeps the ranges it read ahead, so memory grows with the file;
        # buffer_size: column chunks are read through a buffer, not whole (a row group can be huge).
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=BUFFER_BYTES)
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
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            if not batch.num_rows:
                continue
            times, *numbers = (batch.column(column) for column in columns)

            def cells(index: int, times: pa.Array = times, numbers: list[pa.Array] = numbers) -> tuple[object, list]:
                return times[index].as_py(), [column[index].as_py() for column in numbers]

            block = check_block(rows, _epoch_column(times), [_floats(column) for column in numbers], previous_open,
                                timeframe, cells)
            yield block
            rows, previous_open = rows + len(block), int(block.open_times[-1])
    except BadRowError as bad:
        raise ConfigError(path, bad.reason, f"row {bad.row + 1}") from None
    except ColumnTypeError as exc:
        raise ConfigError(path, str(exc)) from None
    except pa.ArrowInvalid as exc:
        raise ConfigError(path, f"not a readable Parquet file: {exc}") from None


def _epoch_column(times: pa.Array) -> EpochColumn:
    if pa.types.is_timestamp(times.type):
        return EpochColumn(_values(times.cast(pa.int64()), np.int64), UNITS_PER_SECOND[times.type.unit],
                           _valid(times))
    if not (pa.types.is_string(times.type) or pa.types.is_large_string(times.type)):
        raise ColumnTypeError(f"the timestamp column holds {times.type}: expected ISO 8601 text or timestamps")
    # Fast: all with an offset ("Z" included), or all without (UTC). Anything else row by row.
    for target in (pa.timestamp("us", "UTC"), pa.timestamp("us")):
        try:
            parsed = pc.cast(times, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return EpochColumn(_values(parsed.cast(pa.int64()), np.int64), UNITS_PER_SECOND["us"], _valid(parsed))
    return EpochColumn.of_micros([epoch_micros(value) for value in times.to_pylist()])


def _floats(column: pa.Array) -> np.ndarray:
    """float64 values, NaN where a cell is null or not a number (the reference decides which)."""
    try:
        values = pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # spellings only Python reads, or real junk
        return np.array([_float_or_nan(value) for value in column.to_pylist()], dtype=np.float64)
    floats = _values(values, np.float64)
    valid = _valid(values)
    return floats if valid is None else np.where(valid, floats, np.nan)


def _float_or_nan(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan


def _values(values: pa.Array, dtype: type[np.generic]) -> np.ndarray:
    """A fixed-width array's values from its data buffer (a null's slot holds anything: mask it)."""
    size = np.dtype(dtype).itemsize
    return np.frombuffer(values.buffers()[1], dtype=dtype, count=len(values), offset=values.offset * size)


def _valid(values: pa.Array) -> np.ndarray | None:
    """False where a cell is null; None when none is."""
    if values.null_count == 0:
        return None
    bits = np.frombuffer(values.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, count=values.offset + len(values), bitorder="little")[values.offset:].astype(bool)


def write_parquet(handle: BinaryIO, times: np.ndarray, numbers: Sequence[np.ndarray]) -> None:
    """COLUMNS: UTC timestamps (epoch seconds in `times`) and float64 numbers, in NUMBER_COLUMNS order."""
    arrays = [pa.Array.from_buffers(pa.timestamp("s", "UTC"), len(times), [None, pa.py_buffer(
        np.ascontiguousarray(times, dtype=np.int64))])]
    arrays += [pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(
        np.ascontiguousarray(values, dtype=np.float64))]) for values in numbers]
    pq.write_table(pa.Table.from_arrays(arrays, names=list(COLUMNS)), handle)
