from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

from pydantic import Field

from backend.dtos import EmaDTO, MarketRegimeDTO, Regime
from backend.errors import MissingDTOError
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.context_provider import DtoColumns
from backend.workers.indicators import volatility_of_returns_pct


class MarketRegimeParams(WorkerParams):
    trend_threshold_pct: float = Field(default=0.3, gt=0)  # EMA spread that counts as a trend
    volatility_window: int = Field(default=24, ge=2)
    high_volatility_pct: float = Field(default=1.5, gt=0)  # return stdev above this is volatile

    def history_needed(self) -> int:
        return self.volatility_window + 1  # closes for volatility_window returns


@dataclass(frozen=True)
class MarketRegimeColumns(DtoColumns[MarketRegimeDTO]):
    """The MarketRegimeDTO of every row of a block, each computed when first asked for (most rows
    of a backtest are never looked at)."""

    dto_type = MarketRegimeDTO
    regime_at: Callable[[int], MarketRegimeDTO]
    rows: int

    def at(self, row: int) -> MarketRegimeDTO:
        return self.regime_at(row)

    def __len__(self) -> int:
        return self.rows


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
    columnar = True
    columnar_across_assets = True  # its state is per asset
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
        self.context.set_result_dto(asset, self._regime(close, ema, returns))

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        # Every return since the last hole before the block, then the block's: each row's window
        # is the slice of them `process` would hold in its deque on that row.
        window = self.params.volatility_window
        returns = list(self._returns.get(asset, ()))
        last_close = self._last_close.get(asset)
        first_return = 0  # where the returns since the last hole start, in `returns`
        starts, ends = [], []
        for close, missing in zip(candles.close_values, candles.missing_values, strict=True):
            if last_close is None or missing:
                first_return = len(returns)
            else:
                returns.append(close / last_close - 1)
            last_close = close
            starts.append(first_return)
            ends.append(len(returns))
        emas = self._require_columns(asset, EmaDTO)
        closes = candles.close_values

        def regime_at(row: int) -> MarketRegimeDTO:
            ema = emas.at(row)
            if ema is None:  # as `process` would have found none
                raise MissingDTOError(self.name, EmaDTO, asset)
            return self._regime(closes[row], ema, returns[max(starts[row], ends[row] - window):ends[row]])

        self.context.set_result_columns(asset, MarketRegimeColumns(regime_at, len(candles)))
        self._returns[asset] = deque(returns[max(starts[-1], ends[-1] - window):ends[-1]], maxlen=window)
        self._last_close[asset] = closes[-1]

    def _regime(self, close: float, ema: EmaDTO, returns: Collection[float]) -> MarketRegimeDTO:
        """The regime given the close, the EMAs and the returns since the last hole (at most a window's)."""
        volatility = volatility_of_returns_pct(returns) if len(returns) == self.params.volatility_window else None
        spread = ema.spread_pct
        return MarketRegimeDTO.trusted(
            regime=self._classify(close, ema, spread, volatility),
            trend_strength_pct=spread,
            volatility_pct=volatility,
        )

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
