from datetime import datetime

from backend.dtos.base import DTO


class RawTick(DTO):
    """One closed candle of one symbol, as an execution environment emits it (RAW_TICK).

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
