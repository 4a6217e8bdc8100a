from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from backend.dtos import FairValueGapDTO, GapZone, MarketStructure
from backend.interfaces import Candle, IWorker, WorkerCategory, WorkerParams, WorkerServices


class FairValueGapParams(WorkerParams):
    min_gap_pct: float = Field(default=0.05, ge=0)  # ignore gaps smaller than this
    swing_lookback: int = Field(default=2, ge=1)  # candles each side of a swing point

    def history_needed(self) -> int:
        return 2 * self.swing_lookback + 1  # a swing window (at least the 3 candles of a gap)


@dataclass
class _AssetState:
    window: deque[Candle]  # the latest candles since the last hole, as many as a swing needs
    bullish_gap: GapZone | None = None
    bearish_gap: GapZone | None = None
    structure: MarketStructure = MarketStructure.NEUTRAL
    swing_high: float | None = None
    swing_low: float | None = None


class FairValueGapDetector(IWorker):
    """ICT fair value gaps and market structure.

    A bullish gap forms when a candle's low is above the high two candles earlier (bearish:
    high below the low); it is filled once price trades through it. A swing high/low is a
    candle whose high/low beats `swing_lookback` candles on each side; a close beyond the last
    swing high (low) is a break of structure to bullish (bearish).

    Candles come from the run's history (the current one each tick, kept in a window of the
    last `2 * swing_lookback + 1`) and a pattern never spans a hole in the data. After a hole
    everything is forgotten (open gaps, swings, structure): price may have filled or broken them
    while no candle was seen.
    """

    plugin_name = "fair_value_gap_detector"
    category = WorkerCategory.CONTEXT
    Params = FairValueGapParams
    produces = (FairValueGapDTO,)
    params: FairValueGapParams

    def __init__(self, params: FairValueGapParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._states: dict[str, _AssetState] = {}

    def process(self, asset: str) -> None:
        candle = self._candle(asset)
        state = self._states.get(asset)
        if state is None or candle.missing_before:
            state = self._states[asset] = _AssetState(deque(maxlen=self.params.history_needed()))
        candles = state.window
        candles.append(candle)

        self._fill_gaps(state, candle)
        gap = state.bullish_gap
        in_bullish_gap = gap is not None and candle.low <= gap.top and candle.close >= gap.bottom
        self._form_gaps(state, candles)
        self._update_structure(state, candles)

        self.context.set_result_dto(asset, FairValueGapDTO.trusted(
            bullish_gap=state.bullish_gap,
            bearish_gap=state.bearish_gap,
            price_in_bullish_gap=in_bullish_gap,
            structure=state.structure,
            last_swing_high=state.swing_high,
            last_swing_low=state.swing_low,
        ))

    @staticmethod
    def _fill_gaps(state: _AssetState, candle: Candle) -> None:
        if state.bullish_gap and candle.low < state.bullish_gap.bottom:
            state.bullish_gap = None
        if state.bearish_gap and candle.high > state.bearish_gap.top:
            state.bearish_gap = None

    def _form_gaps(self, state: _AssetState, candles: Sequence[Candle]) -> None:
        if len(candles) < 3:
            return
        first, candle = candles[-3], candles[-1]
        min_size = self.params.min_gap_pct / 100
        if candle.low > first.high and candle.low - first.high >= first.high * min_size:
            state.bullish_gap = GapZone.trusted(bottom=first.high, top=candle.low, formed_at=candle.open_time)
        if candle.high < first.low and first.low - candle.high >= first.low * min_size:
            state.bearish_gap = GapZone.trusted(bottom=candle.high, top=first.low, formed_at=candle.open_time)

    def _update_structure(self, state: _AssetState, candles: Sequence[Candle]) -> None:
        # Break of structure is judged against swings confirmed before this candle.
        close = candles[-1].close
        if state.swing_high is not None and close > state.swing_high:
            state.structure = MarketStructure.BULLISH
        elif state.swing_low is not None and close < state.swing_low:
            state.structure = MarketStructure.BEARISH
        if len(candles) < self.params.history_needed():
            return
        lookback = self.params.swing_lookback
        middle = candles[lookback]
        others = [candle for index, candle in enumerate(candles) if index != lookback]
        if middle.high > max([c.high for c in others]):
            state.swing_high = middle.high
        if middle.low < min([c.low for c in others]):
            state.swing_low = middle.low
