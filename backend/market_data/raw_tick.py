from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache

import numpy as np

from backend.dtos.base import DTO
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.candle_window import Candles, CandleWindow

# One row of a frame: the candles it is a row of, the row, and its tick.
FrameRow = tuple[CandleColumns, int, "RawTick"]


class RawTick(DTO):
    """One closed candle of one symbol (RAW_TICK): a row of a block of candles (CandleColumns, the
    form in which a source hands its candles on), as a run's workers process it.

    `RawTick(...)` validates; a source whose candles were checked already (a data file's rows,
    by candle_checks as they were read) builds them with `RawTick.trusted(...)`.
    """

    symbol: str
    timestamp: datetime  # candle open time, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    warmup: bool = False  # replayed history at start: context workers only, no trading
    missing_before: int = 0  # candles of the timeframe missing right before this one (a data gap)
    # A bar resampled from shorter base candles (backend.market_data.resample): how many of its
    # base candles never arrived, so it was built from the rest. 0 for a base candle.
    missing_within: int = 0


@lru_cache(maxsize=16)  # the blocks in flight (a window of several symbols: a block per symbol)
def shared_ticks_of(candles: CandleColumns) -> tuple[RawTick, ...]:
    """`ticks_of(candles)`, made once for all the runs that replay the block tick by tick."""
    return tuple(ticks_of(candles))


def ticks_of(candles: CandleColumns) -> Iterator[RawTick]:
    """The ticks of a block's rows, in order (checked already, as every block's rows are)."""
    symbol = candles.symbol
    return (
        RawTick.trusted(symbol=symbol, timestamp=open_time, open=open_, high=high, low=low, close=close,
                        volume=volume, missing_before=missing, warmup=warmup)
        for open_time, open_, high, low, close, volume, missing, warmup in zip(
            candles.open_datetimes, candles.open_values, candles.high_values, candles.low_values,
            candles.close_values, candles.volume_values, candles.missing_values, candles.warmup.tolist(),
            strict=True,
        )
    )


def tick_frames(candles: Candles) -> Iterator[tuple[FrameRow, ...]]:
    """The candles as frames, in time order: each frame the rows of one open time, in the window's
    symbol order (a block of one symbol: each row a frame of its own)."""
    if isinstance(candles, CandleWindow):
        ticks = [shared_ticks_of(columns) for columns in candles.columns]
        return (tuple((candles.columns[index], row, ticks[index][row]) for index, row in frame)
                for frame in candles.frames())
    ticks_of_rows = (tick_at(candles, 0),) if len(candles) == 1 else shared_ticks_of(candles)
    return (((candles, row, tick),) for row, tick in enumerate(ticks_of_rows))


def tick_at(candles: CandleColumns, row: int) -> RawTick:
    """The tick of one row of a block (`ticks_of` for every row is faster)."""
    return RawTick.trusted(  # item(): the Python value at once, no numpy scalar made first
        symbol=candles.symbol, timestamp=candles.open_time(row), open=candles.opens.item(row),
        high=candles.highs.item(row), low=candles.lows.item(row), close=candles.closes.item(row),
        volume=candles.volumes.item(row), missing_before=candles.missing_before.item(row),
        warmup=candles.warmup.item(row),
    )


def columns_of(ticks: Sequence[RawTick]) -> CandleColumns:
    """Checked ticks of one symbol, in time order, as a block of candles (a live candle: a block of
    one row)."""
    def column(name: str, dtype: type) -> np.ndarray:
        return np.array([getattr(tick, name) for tick in ticks], dtype=dtype)

    return CandleColumns(
        ticks[0].symbol, np.array([int(tick.timestamp.timestamp()) for tick in ticks], dtype=np.int64),
        column("open", float), column("high", float), column("low", float), column("close", float),
        column("volume", float), column("missing_before", np.int64), column("warmup", bool),
    )


def candles_of(ticks: Sequence[RawTick]) -> Candles:
    """Checked ticks in frame order (by open time, one symbol's in time order) as a run takes them:
    one symbol's as a block, several symbols' as a window of each one's block (in the order the
    symbols first appear)."""
    by_symbol: dict[str, list[RawTick]] = {}
    for tick in ticks:
        by_symbol.setdefault(tick.symbol, []).append(tick)
    if len(by_symbol) == 1:
        return columns_of(ticks)
    return CandleWindow(tuple(columns_of(symbol_ticks) for symbol_ticks in by_symbol.values()))
