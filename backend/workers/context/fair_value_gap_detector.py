from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

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


# What a FairValueGapDTO holds but the row's own flag: bullish and bearish gap, structure, swing high and low.
_Gaps = tuple[GapZone | None, GapZone | None, MarketStructure, float | None, float | None]
_GAPS_FIELDS = ("bullish_gap", "bearish_gap", "structure", "last_swing_high", "last_swing_low")
# What a candle forms with those before it: a bullish and a bearish gap, a swing high and low.
_Formed = tuple[GapZone | None, GapZone | None, float | None, float | None]
_NOTHING_FORMED: _Formed = (None, None, None, None)


@dataclass
class _AssetState:
    window: deque[Candle]  # the latest candles since the last hole, as many as a swing needs
    bullish_gap: GapZone | None = None
    bearish_gap: GapZone | None = None
    structure: MarketStructure = MarketStructure.NEUTRAL
    swing_high: float | None = None
    swing_low: float | None = None

    def gaps(self) -> _Gaps:
        return self.bullish_gap, self.bearish_gap, self.structure, self.swing_high, self.swing_low


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
        if dtype is object:
            return np.fromiter(per_state, dtype=object, count=len(per_state))[self.versions]
        return np.array(per_state, dtype=dtype)[self.versions]


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

    Each computation is written once: `_formed` (what a candle and those before it form) and
    `_advance` (the state machine), called by `process` on the tick's candle and by
    `prepare_block` on each row of a block; numpy there only finds the rows where `_formed` may
    find something (any superset of them would be as right).
    """

    plugin_name = "fair_value_gap_detector"
    category = WorkerCategory.CONTEXT
    Params = FairValueGapParams
    produces = (FairValueGapDTO,)
    columnar = True
    columnar_across_assets = True  # its state is per asset
    params: FairValueGapParams

    def __init__(self, params: FairValueGapParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._states: dict[str, _AssetState] = {}
        self._min_gap = params.min_gap_pct / 100  # a gap's least size, as a fraction of its far side

    def process(self, asset: str) -> None:
        candle = self._candle(asset)
        state = self._states.get(asset)
        if state is None or candle.missing_before:
            state = self._states[asset] = _AssetState(deque(maxlen=self.params.history_needed()))
        window = state.window
        window.append(candle)
        formed = self._formed([c.high for c in window], [c.low for c in window], len(window) - 1, 0,
                              lambda _: candle.open_time)
        in_bullish_gap, _ = self._advance(state, candle.high, candle.low, candle.close, formed)
        self.context.set_result_dto(asset, FairValueGapDTO.trusted(
            bullish_gap=state.bullish_gap,
            bearish_gap=state.bearish_gap,
            price_in_bullish_gap=in_bullish_gap,
            structure=state.structure,
            last_swing_high=state.swing_high,
            last_swing_low=state.swing_low,
        ))

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        """`process` over the block's rows, with the window's candles and the block's in lists
        (row r of the block is index r + seen); a pattern counts only when its candles are all
        after the last hole (`since`), as the window `process` keeps holds only those."""
        need = self.params.history_needed()
        state = self._states.get(asset)
        window = [] if state is None else list(state.window)
        seen = len(window)
        highs = np.concatenate(([c.high for c in window], candles.highs))
        lows = np.concatenate(([c.low for c in window], candles.lows))
        candidates = self._candidates(highs, lows)
        all_highs, all_lows = highs.tolist(), lows.tolist()
        block_highs, block_lows = candles.high_values, candles.low_values
        closes, missing = candles.close_values, candles.missing_values
        if state is None:
            state = _AssetState(deque(maxlen=need))
        since = 0 if window else seen  # no state yet: a reset on the first row, as after a hole
        open_time_at = lambda index: candles.open_time(index - seen)  # noqa: E731
        states: list[_Gaps] = [state.gaps()]
        versions: list[int] = []
        in_gap: list[bool] = []
        for row in range(len(closes)):
            index = row + seen
            reset = missing[row] or index == since
            if reset:
                since, state = index, _AssetState(deque(maxlen=need))
            formed = _NOTHING_FORMED
            if candidates[index]:
                formed = self._formed(all_highs, all_lows, index, since, open_time_at)
            in_bullish_gap, advanced = self._advance(state, block_highs[row], block_lows[row], closes[row], formed)
            in_gap.append(in_bullish_gap)
            if reset or advanced:
                states.append(state.gaps())
            versions.append(len(states) - 1)
        self.context.set_result_columns(asset, FairValueGapColumns(states, versions, in_gap))
        # The state `process` leaves: the window holds the last candles since the last hole.
        last = len(closes) + seen
        kept = [window[index] if index < seen else candles.candle(index - seen)
                for index in range(max(since, last - need), last)]
        state.window = deque(kept, maxlen=need)
        self._states[asset] = state

    def _candidates(self, highs: np.ndarray, lows: np.ndarray) -> list[bool]:
        """Per index, whether `_formed` may find a gap or a swing there: its comparisons on every
        index at once, before a hole is known of (so a superset of the indexes where it does)."""
        lookback, count, min_size = self.params.swing_lookback, len(highs), self._min_gap
        found = np.zeros(count, dtype=bool)
        first_high, first_low, high, low = highs[:-2], lows[:-2], highs[2:], lows[2:]
        found[2:] |= (low > first_high) & (low - first_high >= first_high * min_size)
        found[2:] |= (high < first_low) & (first_low - high >= first_low * min_size)
        if count >= 2 * lookback + 1:
            # Max (min) of each run of `lookback` candles: those before the middle and after it.
            runs_high = np.lib.stride_tricks.sliding_window_view(highs, lookback).max(axis=1)
            runs_low = np.lib.stride_tricks.sliding_window_view(lows, lookback).min(axis=1)
            before, after = slice(0, count - 2 * lookback), slice(lookback + 1, None)
            middle = slice(lookback, count - lookback)
            found[2 * lookback:] |= highs[middle] > np.maximum(runs_high[before], runs_high[after])
            found[2 * lookback:] |= lows[middle] < np.minimum(runs_low[before], runs_low[after])
        return found.tolist()

    def _formed(self, highs: Sequence[float], lows: Sequence[float], index: int, since: int,
                open_time_at: Callable[[int], datetime]) -> _Formed:
        """What the candle at index and those before it, back to since (the first after the last
        hole), form: a bullish and a bearish gap, a swing high and low (None: none)."""
        bullish = bearish = swing_high = swing_low = None
        if index - since >= 2:
            first_high, first_low, high, low = highs[index - 2], lows[index - 2], highs[index], lows[index]
            min_size = self._min_gap
            if low > first_high and low - first_high >= first_high * min_size:
                bullish = GapZone.trusted(bottom=first_high, top=low, formed_at=open_time_at(index))
            if high < first_low and first_low - high >= first_low * min_size:
                bearish = GapZone.trusted(bottom=high, top=first_low, formed_at=open_time_at(index))
        lookback = self.params.swing_lookback
        if index - since >= 2 * lookback:
            middle = index - lookback
            before, after = slice(index - 2 * lookback, middle), slice(middle + 1, index + 1)
            if highs[middle] > max(max(highs[before]), max(highs[after])):
                swing_high = highs[middle]
            if lows[middle] < min(min(lows[before]), min(lows[after])):
                swing_low = lows[middle]
        return bullish, bearish, swing_high, swing_low

    @staticmethod
    def _advance(state: _AssetState, high: float, low: float, close: float, formed: _Formed) -> tuple[bool, bool]:
        """One candle through the state machine: gaps filled, then formed; a break of structure
        judged against the swings confirmed before this candle, then its own. Returns whether the
        candle traded back into the bullish gap (as it was before this candle formed one), and
        whether the state may have changed (False: it surely did not)."""
        changed = formed is not _NOTHING_FORMED
        if state.bullish_gap is not None and low < state.bullish_gap.bottom:
            state.bullish_gap, changed = None, True
        if state.bearish_gap is not None and high > state.bearish_gap.top:
            state.bearish_gap, changed = None, True
        gap = state.bullish_gap
        in_bullish_gap = gap is not None and low <= gap.top and close >= gap.bottom
        bullish, bearish, swing_high, swing_low = formed
        if bullish is not None:
            state.bullish_gap = bullish
        if bearish is not None:
            state.bearish_gap = bearish
        if state.swing_high is not None and close > state.swing_high:
            state.structure, changed = MarketStructure.BULLISH, True
        elif state.swing_low is not None and close < state.swing_low:
            state.structure, changed = MarketStructure.BEARISH, True
        if swing_high is not None:
            state.swing_high = swing_high
        if swing_low is not None:
            state.swing_low = swing_low
        return in_bullish_gap, changed
