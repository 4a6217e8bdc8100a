from pydantic import Field

from backend.dtos import EmaDTO, MarketRegimeDTO, Regime
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, since_last_gap
from backend.workers.indicators import return_volatility_pct


class MarketRegimeParams(WorkerParams):
    trend_threshold_pct: float = Field(default=0.3, gt=0)  # EMA spread that counts as a trend
    volatility_window: int = Field(default=24, ge=2)
    high_volatility_pct: float = Field(default=1.5, gt=0)  # return stdev above this is volatile

    def history_needed(self) -> int:
        return self.volatility_window + 1  # closes for volatility_window returns


class MarketRegimeClassifier(IWorker):
    """Volatile when returns swing more than high_volatility_pct; otherwise trending when the
    EMA spread exceeds the threshold and the close is on the same side of the slow EMA;
    otherwise ranging. Returns are taken from the run's history and never across a hole in the
    data, so after one the regime is warming up until `volatility_window` returns follow it."""

    plugin_name = "market_regime_classifier"
    category = WorkerCategory.CONTEXT
    Params = MarketRegimeParams
    requires = (EmaDTO,)
    produces = (MarketRegimeDTO,)
    params: MarketRegimeParams

    def process(self, asset: str) -> None:
        close = self._base(asset).close
        ema = self._require(asset, EmaDTO)
        needed = self.params.history_needed()
        closes = [candle.close for candle in since_last_gap(self.ohlcv.history(asset, needed))]
        volatility = return_volatility_pct(closes) if len(closes) == needed else None
        spread = ema.spread_pct
        self.context.set_result_dto(asset, MarketRegimeDTO(
            regime=self._classify(close, ema, spread, volatility),
            trend_strength_pct=spread,
            volatility_pct=volatility,
        ))

    def _classify(
        self, close: float, ema: EmaDTO, spread: float | None, volatility: float | None
    ) -> Regime:
        if spread is None or volatility is None or ema.slow is None:
            return Regime.WARMING_UP
        if volatility > self.params.high_volatility_pct:
            return Regime.VOLATILE
        threshold = self.params.trend_threshold_pct
        if spread > threshold and close > ema.slow:
            return Regime.TRENDING_UP
        if spread < -threshold and close < ema.slow:
            return Regime.TRENDING_DOWN
        return Regime.RANGING
