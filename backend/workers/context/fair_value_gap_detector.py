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


# What a FairValueGapDTO holds but the row's own flag: bullish and bearish gap, structure, swing high and low.
_Gaps = tuple[GapZone | None, GapZone | None, MarketStructure, float | None, float | None]
_GAPS_FIELDS = ("bullish_gap", "bearish_gap", "structure", "last_swing_high", "last_swing_low")


@dataclass(frozen=True)
class FairValueGapColumns(DtoColumns[FairValueGapDTO]):
    """The FairValueGapDTO of every row of a block, built when asked for: a row's gaps, structure
    and swings are `states[versions[row]]` (a state is recorded once, when it changes, and
    shared by the rows it lasts; the gaps are the detector's own GapZone objects), its
    price_in_bullish_gap `in_gap[row]`; `values` reads a field once per state, not per row."""

    dto_type = FairValueGapDTO
    states: list[_Gaps]
    versions: list[int]
    in_gap: list[bool]

    def at(self, row: int) -> FairValueGapDTO:
        bullish, bearish, structure, swing_high, swing_low = self.states[self.versions[row]]
        return FairValueGapDTO.trusted(
            bullish_gap=bullish,
            bearish_gap=bearish,
            price_in_bullish_gap=self.in_gap[row],
            structure=structure,
            last_swing_high=swing_high,
            last_swing_low=swing_low,
        )

    def __len__(self) -> int:
        return len(self.versions)

    def values(self, field: str, dtype: type = float) -> np.ndarray:
        if field == "price_in_bullish_gap":
            return np.array(self.in_gap, dtype=dtype)
        index = _GAPS_FIELDS.index(field)
        per_state = [state[index] for state in self.states]
        found = np.fromiter(per_state, dtype=object, count=len(per_state)) if dtype is object else \
            np.array(per_state, dtype=dtype)
        return found[self.versions]


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
        """`process` over the block's rows: the comparisons that depend on the candles alone (a gap
        formed, a swing confirmed) with numpy over the window's candles and the block's, the
        state machine in one loop over lists, the state in locals. The same comparisons on the
        same floats as `process`; a pattern counts only when its candles are all after the last
        hole (`since`), as the window `process` keeps holds only those."""
        need, lookback = self.params.history_needed(), self.params.swing_lookback
        state = self._states.get(asset)
        # The window's candles, then the block's: row r of the block is index r + seen.
        window = [] if state is None else list(state.window)
        seen = len(window)
        highs = np.concatenate(([c.high for c in window], candles.highs))
        lows = np.concatenate(([c.low for c in window], candles.lows))
        bullish_forms, bearish_forms = self._gaps_formed(highs, lows)
        swing_highs, swing_lows = self._swings(highs, lows)
        all_highs, all_lows = highs.tolist(), lows.tolist()
        block_highs, block_lows = candles.high_values, candles.low_values
        closes, missing = candles.close_values, candles.missing_values
        if state is None:
            state = _AssetState(deque(maxlen=need))
        bullish, bearish, structure = state.bullish_gap, state.bearish_gap, state.structure
        swing_high, swing_low = state.swing_high, state.swing_low
        since = 0 if window else seen  # no state yet: a reset on the first row, as after a hole
        states: list[_Gaps] = [(bullish, bearish, structure, swing_high, swing_low)]
        versions: list[int] = []
        in_gap: list[bool] = []
        changed = False
        for row in range(len(closes)):
            index = row + seen
            if missing[row] or index == since:
                since = index
                bullish = bearish = swing_high = swing_low = None
                structure, changed = MarketStructure.NEUTRAL, True
            high, low, close = block_highs[row], block_lows[row], closes[row]
            # _fill_gaps, the bullish gap test, _form_gaps, _update_structure: in process's order.
            if bullish is not None and low < bullish.bottom:
                bullish, changed = None, True
            if bearish is not None and high > bearish.top:
                bearish, changed = None, True
            in_gap.append(bullish is not None and low <= bullish.top and close >= bullish.bottom)
            if index - since >= 2:
                if bullish_forms[index]:
                    first_high = all_highs[index - 2]
                    bullish = GapZone.trusted(bottom=first_high, top=low, formed_at=candles.open_time(row))
                    changed = True
                if bearish_forms[index]:
                    first_low = all_lows[index - 2]
                    bearish = GapZone.trusted(bottom=high, top=first_low, formed_at=candles.open_time(row))
                    changed = True
            if swing_high is not None and close > swing_high:
                structure, changed = MarketStructure.BULLISH, True
            elif swing_low is not None and close < swing_low:
                structure, changed = MarketStructure.BEARISH, True
            if index - since >= need - 1:
                if swing_highs[index]:
                    swing_high, changed = all_highs[index - lookback], True
                if swing_lows[index]:
                    swing_low, changed = all_lows[index - lookback], True
            if changed:
                states.append((bullish, bearish, structure, swing_high, swing_low))
                changed = False
            versions.append(len(states) - 1)
        self.context.set_result_columns(asset, FairValueGapColumns(states, versions, in_gap))
        # The state `process` leaves: the window holds the last candles since the last hole.
        last = len(closes) + seen
        kept = [window[index] if index < seen else candles.candle(index - seen)
                for index in range(max(since, last - need), last)]
        self._states[asset] = _AssetState(deque(kept, maxlen=need), bullish, bearish, structure, swing_high, swing_low)

    def _gaps_formed(self, highs: np.ndarray, lows: np.ndarray) -> tuple[list[bool], list[bool]]:
        """Per index, whether its candle and the one two before form a bullish (bearish) gap as
        `_form_gaps` tests it (the first two: never)."""
        min_size = self.params.min_gap_pct / 100
        bullish, bearish = np.zeros(len(highs), dtype=bool), np.zeros(len(highs), dtype=bool)
        first_high, first_low, high, low = highs[:-2], lows[:-2], highs[2:], lows[2:]
        bullish[2:] = (low > first_high) & (low - first_high >= first_high * min_size)
        bearish[2:] = (high < first_low) & (first_low - high >= first_low * min_size)
        return bullish.tolist(), bearish.tolist()

    def _swings(self, highs: np.ndarray, lows: np.ndarray) -> tuple[list[bool], list[bool]]:
        """Per index, whether the candle `swing_lookback` before it is a swing high (low) of the
        window ending there, as `_update_structure` tests it (before a full window: never)."""
        lookback, count = self.params.swing_lookback, len(highs)
        swing_highs, swing_lows = np.zeros(count, dtype=bool), np.zeros(count, dtype=bool)
        if count >= 2 * lookback + 1:
            # Max (min) of each run of `lookback` candles: those before the middle and after it.
            runs_high = np.lib.stride_tricks.sliding_window_view(highs, lookback).max(axis=1)
            runs_low = np.lib.stride_tricks.sliding_window_view(lows, lookback).min(axis=1)
            before, after = slice(0, count - 2 * lookback), slice(lookback + 1, None)
            middle = slice(lookback, count - lookback)
            swing_highs[2 * lookback:] = highs[middle] > np.maximum(runs_high[before], runs_high[after])
            swing_lows[2 * lookback:] = lows[middle] < np.minimum(runs_low[before], runs_low[after])
        return swing_highs.tolist(), swing_lows.tolist()

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
