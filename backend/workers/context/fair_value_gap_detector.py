from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from backend.dtos import FairValueGapDTO, GapZone, MarketStructure
from backend.interfaces import Candle, IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.context_provider import DtoColumns


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


@dataclass(frozen=True)
class FairValueGapColumns(DtoColumns):
    """The FairValueGapDTO of every row of a block, built when asked for from what the detector
    recorded per row (the gap objects themselves, shared by the rows they stay open on).

    `in_bullish_gap`, `bullish_structure` and `has_bullish_gap` are the rows' price_in_bullish_gap,
    `structure is BULLISH` and `bullish_gap is not None` as numpy bool arrays (for gates)."""

    dto_type = FairValueGapDTO
    bullish_gaps: list[GapZone | None]
    bearish_gaps: list[GapZone | None]
    in_gap: list[bool]
    structures: list[MarketStructure]
    swing_highs: list[float | None]
    swing_lows: list[float | None]

    def at(self, row: int) -> FairValueGapDTO:
        return FairValueGapDTO.trusted(
            bullish_gap=self.bullish_gaps[row],
            bearish_gap=self.bearish_gaps[row],
            price_in_bullish_gap=self.in_gap[row],
            structure=self.structures[row],
            last_swing_high=self.swing_highs[row],
            last_swing_low=self.swing_lows[row],
        )

    @property
    def in_bullish_gap(self) -> np.ndarray:
        return np.array(self.in_gap, dtype=bool)

    @property
    def bullish_structure(self) -> np.ndarray:
        return np.array([structure is MarketStructure.BULLISH for structure in self.structures], dtype=bool)

    @property
    def has_bullish_gap(self) -> np.ndarray:
        return np.array([gap is not None for gap in self.bullish_gaps], dtype=bool)


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
    columnar = True
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

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        """`process` over the block's rows in one loop over its lists: the same comparisons on the
        same floats, the state held in locals (gaps as GapZone objects, made only when one forms),
        a row's values appended to lists its DTO is built from when asked for."""
        highs, lows, closes, missing = candles.high_list, candles.low_list, candles.close_list, candles.missing_list
        need, lookback = self.params.history_needed(), self.params.swing_lookback
        min_size = self.params.min_gap_pct / 100
        bullish_structure, bearish_structure = MarketStructure.BULLISH, MarketStructure.BEARISH
        state = self._states.get(asset)
        # The window's candles since the last hole, then the block's: `seen` rows of them are
        # before the block (row r of the block is index r + seen); `since` indexes the segment's first.
        window = [] if state is None else list(state.window)
        seen = len(window)
        all_highs, all_lows = [c.high for c in window] + highs, [c.low for c in window] + lows
        if state is None:
            state = _AssetState(deque(maxlen=need))
        bullish, bearish, structure = state.bullish_gap, state.bearish_gap, state.structure
        swing_high, swing_low = state.swing_high, state.swing_low
        since = 0 if window else seen  # no state yet: a reset on the first row, as for a hole
        bullish_gaps: list[GapZone | None] = []
        bearish_gaps: list[GapZone | None] = []
        in_gap: list[bool] = []
        structures: list[MarketStructure] = []
        swing_highs: list[float | None] = []
        swing_lows: list[float | None] = []
        for row in range(len(highs)):
            index = row + seen
            if missing[row] or index == since:
                since = index
                bullish = bearish = swing_high = swing_low = None
                structure = MarketStructure.NEUTRAL
            high, low, close = highs[row], lows[row], closes[row]
            # _fill_gaps, the bullish gap test, _form_gaps, _update_structure: in process's order.
            if bullish is not None and low < bullish.bottom:
                bullish = None
            if bearish is not None and high > bearish.top:
                bearish = None
            in_gap.append(bullish is not None and low <= bullish.top and close >= bullish.bottom)
            if index - since >= 2:
                first_high, first_low = all_highs[index - 2], all_lows[index - 2]
                if low > first_high and low - first_high >= first_high * min_size:
                    bullish = GapZone.trusted(bottom=first_high, top=low, formed_at=candles.open_time(row))
                if high < first_low and first_low - high >= first_low * min_size:
                    bearish = GapZone.trusted(bottom=high, top=first_low, formed_at=candles.open_time(row))
            if swing_high is not None and close > swing_high:
                structure = bullish_structure
            elif swing_low is not None and close < swing_low:
                structure = bearish_structure
            if index - since >= need - 1:
                middle = index - lookback
                middle_high, middle_low = all_highs[middle], all_lows[middle]
                if middle_high > max(max(all_highs[middle - lookback:middle]), max(all_highs[middle + 1:index + 1])):
                    swing_high = middle_high
                if middle_low < min(min(all_lows[middle - lookback:middle]), min(all_lows[middle + 1:index + 1])):
                    swing_low = middle_low
            bullish_gaps.append(bullish)
            bearish_gaps.append(bearish)
            structures.append(structure)
            swing_highs.append(swing_high)
            swing_lows.append(swing_low)
        self.context.set_result_columns(asset, FairValueGapColumns(
            bullish_gaps, bearish_gaps, in_gap, structures, swing_highs, swing_lows
        ))
        # The state `process` leaves: the window holds the last candles since the last hole.
        last = len(highs) + seen
        kept = [window[index] if index < seen else candles.candle(index - seen)
                for index in range(max(since, last - need), last)]
        self._states[asset] = _AssetState(deque(kept, maxlen=need), bullish, bearish, structure, swing_high, swing_low)

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
