"""Replays one environment's [start, end) range of a checked CandleFile as blocks of RAW_TICKs.

Invariant: every tick is a candle of the range, in time order; a tick right after a hole carries
`missing_before` > 0 and is announced with a `data_gap` line, while the range's first tick
carries 0 (candles missing at the range's edges are reported once, as `data_range_partial`).
The candles come as blocks of columns (`blocks`), BLOCK_CANDLES rows at most.
Each source replays the file itself (CandleFile.blocks: streamed from the file, one block of
rows at a time, or from the checked rows a short file keeps), and environments sharing a file
share only its check pass, hole index and kept rows.
"""

import math
import threading
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import structlog

from backend.config.schema import BacktestEnvironment
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.candle_checks import log_data_gap
from backend.market_data.candle_file import CandleFile, read_candle_file
from backend.market_data.tick_source import TickSource
from backend.market_data.timeframes import as_utc, timeframe_seconds, utc_from_epoch

log = structlog.get_logger(__name__)

BLOCK_CANDLES = 4096  # per block handed to the runs: a few milliseconds of a columnar replay
GAPS_LISTED = 5  # the `data_gaps` summary names the first few holes; each has its own `data_gap` line


class BacktestSource(TickSource):
    def __init__(self, environment: BacktestEnvironment, candle_file: CandleFile | None = None) -> None:
        """candle_file: the checked data file, shared with other environments (services.execution_environments);
        checked here when not given. Raises ConfigError when no candle opens in [start, end)."""
        self._candles = (
            read_candle_file(environment.data_file, environment.timeframe) if candle_file is None else candle_file
        )
        self._symbol = environment.symbol
        self._timeframe = environment.timeframe
        self._start, self._end = as_utc(environment.start), as_utc(environment.end)
        self._rows = self._candles.rows_between(self._start, self._end)
        self.total_ticks = len(self._rows)

    def prepare(self) -> None:
        """Report, once and before any tick, what the range lacks (the feed has bound the environment)."""
        self._warn_if_range_partial()
        self._summarize_gaps()

    def blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        """The range's candles, BLOCK_CANDLES at a time, each gap announced with a `data_gap` line."""
        for block in self._candles.blocks(self._rows):
            block = replace(block, symbol=self._symbol)
            if block.first_row == self._rows.start:  # no gap before the range: it starts here
                block = block.with_missing_before_first(0)
            for start in range(0, len(block), BLOCK_CANDLES):
                if stop.is_set():
                    return
                candles = block.rows(start, start + BLOCK_CANDLES)
                for row in np.flatnonzero(candles.missing_before).tolist():
                    log_data_gap(self._symbol, candles.open_time(row), int(candles.missing_before[row]),
                                 self._timeframe)
                yield candles

    def _warn_if_range_partial(self) -> None:
        """The range should hold every candle of the timeframe's grid in [start, end)."""
        step = timeframe_seconds(self._timeframe)
        first_expected = math.ceil(self._start.timestamp() / step) * step
        last_expected = (math.ceil(self._end.timestamp() / step) - 1) * step
        first, last = self._candles.open_epoch(self._rows.start), self._candles.open_epoch(self._rows[-1])
        if first > first_expected or last < last_expected:
            log.warning(
                "data_range_partial", data_file=str(self._candles.path), symbol=self._symbol,
                requested_start=self._start.isoformat(), requested_end=self._end.isoformat(),
                first_candle=_iso(first), last_candle=_iso(last),
                missing_at_start=(first - first_expected) // step, missing_at_end=(last_expected - last) // step,
            )

    def _summarize_gaps(self) -> None:
        holes = self._candles.holes_within(self._rows)
        if not holes:
            return
        step = timeframe_seconds(self._timeframe)
        listed = []
        for hole in map(self._candles.hole, holes[:GAPS_LISTED]):
            gap_to = self._candles.open_epoch(hole.row)
            listed.append({"gap_from": _iso(gap_to - hole.missing * step), "gap_to": _iso(gap_to)})
        log.warning(
            "data_gaps", data_file=str(self._candles.path), symbol=self._symbol, gaps=len(holes),
            missing_candles=self._candles.missing_in(holes), first_gaps=listed,
        )


def _iso(epoch_seconds: int) -> str:
    return utc_from_epoch(epoch_seconds).isoformat()

