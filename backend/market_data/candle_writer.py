"""Candle files written whole and atomically, in the documented data file layout
(docs/configuration.md, "Backtest data files"): Parquet (`.parquet`: a UTC timestamp column and
float64 open, high, low, close, volume) or CSV (any other extension: the header
`timestamp,open,high,low,close,volume`, ISO 8601 UTC open times, floats as Python writes them).

Invariant: a file is replaced all or nothing (backend.atomic_file), after its new content was
checked as a backtest checks a data file (`read_candle_file`: a file a backtest would refuse is
never put in place). The same candles give the same bytes, however many appends built them.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np

from backend.atomic_file import replace_atomically
from backend.errors import ConfigError
from backend.market_data.candle_file import read_candle_file
from backend.market_data.candle_readers import COLUMNS, candle_blocks, is_parquet
from backend.market_data.trade_history import Candle


def append_candles(path: Path, timeframe: str, candles: Sequence[Candle]) -> None:
    """The file with `candles` after its own, rewritten whole and atomically (those not after its
    last candle are left out: an earlier run already wrote them; none left: the file is not
    touched). A file that does not exist yet is made of `candles` alone."""
    columns: list[list[np.ndarray]] = [[] for _ in COLUMNS]
    last = None
    if path.exists():
        for block in candle_blocks(path, timeframe):
            for column, values in zip(columns, (block.open_times, block.opens, block.highs, block.lows,
                                                block.closes, block.volumes), strict=True):
                column.append(values)
            last = int(block.open_times[-1])
    fresh = [candle for candle in candles if last is None or candle[0] > last]
    if not fresh:
        return
    for index, (column, fresh_values) in enumerate(zip(columns, zip(*fresh, strict=True), strict=True)):
        column.append(np.array(fresh_values, dtype=np.float64 if index else np.int64))
    joined = [np.concatenate(column) for column in columns]

    def check(temporary: Path) -> None:
        try:
            read_candle_file(temporary, timeframe)
        except ConfigError as error:  # named as the file it would have become
            raise ConfigError(path, error.reason, error.key) from None

    replace_atomically(path, lambda handle: _write(handle, path, joined), check)


def _write(handle: BinaryIO, path: Path, columns: list[np.ndarray]) -> None:
    times, *numbers = columns
    if is_parquet(path):
        from backend.market_data.parquet_files import write_parquet  # pyarrow: for Parquet files only

        write_parquet(handle, times, numbers)
        return
    lines = [",".join(COLUMNS)]
    for opened, *values in zip(times.tolist(), *(column.tolist() for column in numbers), strict=True):
        moment = datetime.fromtimestamp(opened, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(",".join([moment, *map(repr, values)]))
    handle.write(("\n".join(lines) + "\n").encode())
