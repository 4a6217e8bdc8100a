from datetime import datetime

from pydantic import BaseModel, ConfigDict


class RawTick(BaseModel):
    """One closed candle of one symbol, as an execution environment emits it (RAW_TICK)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    timestamp: datetime  # candle open time, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    warmup: bool = False  # replayed history at start: context workers only, no trading
    missing_before: int = 0  # candles of the timeframe missing right before this one (a data gap)
