"""Context DTOs: what the market and the strategy's own account look like on this tick."""

from datetime import datetime
from enum import StrEnum

from backend import equity_curve
from backend.dtos.base import DTO


class PortfolioSnapshotDTO(DTO):
    cash: float
    position_qty: float
    avg_entry_price: float | None
    equity: float
    peak_equity: float

    @property
    def drawdown_pct(self) -> float:
        return equity_curve.drawdown_pct(self.equity, self.peak_equity)


class BaseContextDTO(DTO):
    """The raw tick of one asset plus this strategy's account, the root of every tick."""

    asset: str
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    portfolio: PortfolioSnapshotDTO


class EmaDTO(DTO):
    fast_period: int
    slow_period: int
    fast: float | None  # None while warming up
    slow: float | None

    @property
    def is_ready(self) -> bool:
        return self.fast is not None and self.slow is not None

    @property
    def spread_pct(self) -> float | None:
        if self.fast is None or self.slow is None:
            return None
        return (self.fast - self.slow) / self.slow * 100


class Regime(StrEnum):
    WARMING_UP = "warming_up"
    TRENDING_UP = "trending_up"
    TRENDING_DOWN = "trending_down"
    RANGING = "ranging"
    VOLATILE = "volatile"


class MarketRegimeDTO(DTO):
    regime: Regime
    trend_strength_pct: float | None  # EMA spread in percent of the slow EMA
    volatility_pct: float | None  # stdev of close-to-close returns, in percent


class RiskLevel(StrEnum):
    WARMING_UP = "warming_up"
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class VolatilityDTO(DTO):
    atr: float | None
    atr_pct: float | None
    risk_level: RiskLevel


class GapZone(DTO):
    bottom: float
    top: float
    formed_at: datetime


class MarketStructure(StrEnum):
    BULLISH = "bullish"  # last break of structure was upward
    BEARISH = "bearish"
    NEUTRAL = "neutral"


class FairValueGapDTO(DTO):
    bullish_gap: GapZone | None  # most recent unfilled bullish gap
    bearish_gap: GapZone | None
    price_in_bullish_gap: bool  # this candle traded back into the bullish gap and held it
    structure: MarketStructure
    last_swing_high: float | None
    last_swing_low: float | None
