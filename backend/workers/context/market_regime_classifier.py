from collections import deque

from pydantic import Field

from backend.dtos import EmaDTO, MarketRegimeDTO, Regime
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.workers.indicators import volatility_of_returns_pct


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
    data, so after one the regime is warming up until `volatility_window` returns follow it.

    The returns are kept as they come (one division per candle, not a window's worth): they are
    exactly those of the last `volatility_window + 1` closes of the history since its last hole."""

    plugin_name = "market_regime_classifier"
    category = WorkerCategory.CONTEXT
    Params = MarketRegimeParams
    requires = (EmaDTO,)
    produces = (MarketRegimeDTO,)
    params: MarketRegimeParams

    def __init__(self, params: MarketRegimeParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._returns: dict[str, deque[float]] = {}  # per asset, the latest returns since the last hole
        self._last_close: dict[str, float] = {}

    def process(self, asset: str) -> None:
        candle = self._candle(asset)
        close = candle.close
        ema = self._require(asset, EmaDTO)
        returns = self._returns.get(asset)
        if returns is None or candle.missing_before:
            returns = self._returns[asset] = deque(maxlen=self.params.volatility_window)
        else:
            returns.append(close / self._last_close[asset] - 1)
        self._last_close[asset] = close
        volatility = volatility_of_returns_pct(returns) if len(returns) == self.params.volatility_window else None
        spread = ema.spread_pct
        self.context.set_result_dto(asset, MarketRegimeDTO.trusted(
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
