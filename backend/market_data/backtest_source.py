"""Replays one environment's [start, end) range of its checked CandleFiles (one per symbol) as
blocks of RAW_TICKs.

Invariant: every tick is a candle of the range, in time order per symbol; a tick right after a
hole of its symbol carries `missing_before` > 0 and is announced with a `data_gap` line, while a
symbol's first tick of the range carries 0 (candles missing at the range's edges are reported
once per symbol, as `data_range_partial`). One symbol's candles come as blocks of columns
(CandleColumns), BLOCK_CANDLES rows at most; several symbols' as CandleWindows, each covering
the same `window_candles` timeframes of every symbol (a symbol without a candle at a timestamp
has no row there). Each source replays its files itself (CandleFile.blocks: streamed from the
file, one block of rows at a time, or from the checked rows a short file keeps), and
environments sharing a file share only its check pass, hole index and kept rows.
"""

import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime

import numpy as np
import structlog

from backend.config.schema import BacktestEnvironment
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.candle_window import Candles, CandleWindow
from backend.market_data.candle_checks import log_data_gap
from backend.market_data.candle_file import CandleFile, read_candle_file
from backend.market_data.tick_source import TickSource
from backend.market_data.timeframes import as_utc, timeframe_seconds, utc_from_epoch

log = structlog.get_logger(__name__)

BLOCK_CANDLES = 4096  # per block handed to the runs: a few milliseconds of a columnar replay
GAPS_LISTED = 5  # the `data_gaps` summary names the first few holes; each has its own `data_gap` line


class BacktestSource(TickSource):
    def __init__(self, environment: BacktestEnvironment, candle_files: Mapping[str, CandleFile] | None = None,
                 window_candles: int = BLOCK_CANDLES) -> None:
        """candle_files: each symbol's checked data file, shared with other environments
        (services.execution_environments); checked here when not given. window_candles: the
        timeframes a window of several symbols spans. Raises ConfigError when a symbol has no
        candle opening in [start, end)."""
        start, end = as_utc(environment.start), as_utc(environment.end)
        self._timeframe = environment.timeframe
        self._ranges = [
            _SymbolRange(symbol, read_candle_file(environment.data_file_of(symbol), environment.timeframe)
                         if candle_files is None else candle_files[symbol], start, end)
            for symbol in environment.symbols
        ]
        self._window_seconds = window_candles * timeframe_seconds(self._timeframe)
        self.total_ticks = sum(len(symbol_range.rows) for symbol_range in self._ranges)

    def prepare(self) -> None:
        """Report, once and before any tick, what the range lacks (the feed has bound the environment)."""
        for symbol_range in self._ranges:
            symbol_range.warn_if_partial()
            symbol_range.summarize_gaps()

    def blocks(self, stop: threading.Event) -> Iterator[Candles]:
        """The range's candles, BLOCK_CANDLES at a time (several symbols: a window at a time), each
        gap announced with a `data_gap` line."""
        if len(self._ranges) > 1:
            yield from self._windows(stop)
            return
        (symbol_range,) = self._ranges
        for block in symbol_range.blocks():
            for start in range(0, len(block), BLOCK_CANDLES):
                if stop.is_set():
                    return
                candles = block.rows(start, start + BLOCK_CANDLES)
                symbol_range.announce_gaps(candles)
                yield candles

    def _windows(self, stop: threading.Event) -> Iterator[CandleWindow]:
        """Every symbol's candles of [t, t + window) as one CandleWindow, window after window."""
        cursors = [_Cursor(symbol_range.blocks()) for symbol_range in self._ranges]
        window_start = min(symbol_range.first_epoch for symbol_range in self._ranges)
        while not all(cursor.done for cursor in cursors):
            if stop.is_set():
                return
            window_start += self._window_seconds
            columns = tuple(cursor.take_before(window_start) for cursor in cursors)
            for symbol_range, candles in zip(self._ranges, columns, strict=True):
                symbol_range.announce_gaps(candles)
            if any(len(candles) for candles in columns):
                yield CandleWindow(columns)


class _SymbolRange:
    """One symbol's candles of the range, in its checked file."""

    def __init__(self, symbol: str, candles: CandleFile, start: datetime, end: datetime) -> None:
        self.symbol = symbol
        self._candles = candles
        self._start, self._end = start, end
        self.rows = candles.rows_between(start, end)

    @property
    def first_epoch(self) -> int:
        return self._candles.open_epoch(self.rows.start)

    def blocks(self) -> Iterator[CandleColumns]:
        """The range's candles as the file's blocks, named for the symbol, no gap before the first."""
        for block in self._candles.blocks(self.rows):
            block = replace(block, symbol=self.symbol)
            if block.first_row == self.rows.start:  # no gap before the range: it starts here
                block = block.with_missing_before_first(0)
            yield block

    def announce_gaps(self, candles: CandleColumns) -> None:
        for row in np.flatnonzero(candles.missing_before).tolist():
            log_data_gap(self.symbol, candles.open_time(row), int(candles.missing_before[row]), self._candles.timeframe)

    def warn_if_partial(self) -> None:
        """The range should hold every candle of the timeframe's grid in [start, end)."""
        step = self._candles.step
        first_expected = math.ceil(self._start.timestamp() / step) * step
        last_expected = (math.ceil(self._end.timestamp() / step) - 1) * step
        first, last = self.first_epoch, self._candles.open_epoch(self.rows[-1])
        if first > first_expected or last < last_expected:
            log.warning(
                "data_range_partial", data_file=str(self._candles.path), symbol=self.symbol,
                requested_start=self._start.isoformat(), requested_end=self._end.isoformat(),
                first_candle=_iso(first), last_candle=_iso(last),
                missing_at_start=(first - first_expected) // step, missing_at_end=(last_expected - last) // step,
            )

    def summarize_gaps(self) -> None:
        holes = self._candles.holes_within(self.rows)
        if not holes:
            return
        step = self._candles.step
        listed = []
        for hole in map(self._candles.hole, holes[:GAPS_LISTED]):
            gap_to = self._candles.open_epoch(hole.row)
            listed.append({"gap_from": _iso(gap_to - hole.missing * step), "gap_to": _iso(gap_to)})
        log.warning(
            "data_gaps", data_file=str(self._candles.path), symbol=self.symbol, gaps=len(holes),
            missing_candles=self._candles.missing_in(holes), first_gaps=listed,
        )


class _Cursor:
    """Where one symbol's replay has got to, in its stream of blocks."""

    def __init__(self, blocks: Iterator[CandleColumns]) -> None:
        self._blocks = blocks
        self._block: CandleColumns | None = next(blocks, None)
        self._row = 0  # in _block
        self.symbol = "" if self._block is None else self._block.symbol

    @property
    def done(self) -> bool:
        return self._block is None

    def take_before(self, end_epoch: int) -> CandleColumns:
        """The next candles opening before end_epoch (none, as an empty block, if there are none)."""
        parts = []
        while self._block is not None:
            block, row = self._block, self._row
            stop = int(np.searchsorted(block.open_times, end_epoch, side="left"))
            parts.append(block.rows(row, max(row, stop)))
            if stop < len(block):
                self._row = max(row, stop)
                break
            self._block, self._row = next(self._blocks, None), 0
        return CandleColumns.concatenated(parts) if parts else CandleColumns.empty(self.symbol)


def _iso(epoch_seconds: int) -> str:
    return utc_from_epoch(epoch_seconds).isoformat()

