from typing import Literal

import numpy as np
from pydantic import Field

from backend.dtos import (
    FairValueGapDTO,
    MarketRegimeDTO,
    MarketStructure,
    OpportunitySignalDTO,
    OrderSide,
    PortfolioSnapshotDTO,
    Regime,
)
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.context_provider import DtoColumns


class FvgReentryParams(WorkerParams):
    allowed_regimes: list[Regime] = Field(default=[Regime.TRENDING_UP, Regime.RANGING])
    stop_buffer_pct: float = Field(default=0.2, ge=0)  # stop this far below the gap's bottom
    # close: signal on the close that returned into the gap (an entry at that close); limit: signal
    # on the candle that formed the gap, with its top as the entry price (a limit order waiting for
    # price to return into it).
    entry: Literal["close", "limit"] = "close"


class FvgReentryOpportunity(IWorker):
    """Long on a re-entry into an unfilled bullish fair value gap while the market structure is
    bullish and the regime is one of allowed_regimes; the stop goes under the gap. With `entry:
    close` the signal comes on the close that traded back into the gap; with `entry: limit` on the
    candle that formed it, naming the gap's top as its entry_price, so the re-entry is a limit
    order's fill.

    Columnar: stateless, a gate. A block's candidates (bullish structure, and in a bullish gap or
    one formed on the row) are found with numpy in `prepare_block`; a candidate is active when its
    regime is allowed, which is asked of the regime's columns for candidates only, when reached."""

    plugin_name = "fvg_reentry_opportunity"
    category = WorkerCategory.OPPORTUNITY
    Params = FvgReentryParams
    requires = (FairValueGapDTO, MarketRegimeDTO)
    produces = (OpportunitySignalDTO,)
    columnar = True
    columnar_across_assets = True  # its block's candidates and last answer are kept per asset
    params: FvgReentryParams

    def __init__(self, params: FvgReentryParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._candidates: dict[str, np.ndarray] = {}  # per asset, the current block's candidate rows
        self._regimes: dict[str, DtoColumns[MarketRegimeDTO]] = {}
        # Per asset, the last answer of next_active_row, (start, row): no candidate in [start, row) is active.
        self._answer: dict[str, tuple[int, int]] = {}

    def process(self, asset: str) -> None:
        fvg = self._require(asset, FairValueGapDTO)
        regime = self._require(asset, MarketRegimeDTO).regime
        gap = fvg.bullish_gap
        limit = self.params.entry == "limit"
        if (
            gap is None
            or not (gap.formed_at == self._base(asset).timestamp if limit else fvg.price_in_bullish_gap)
            or fvg.structure is not MarketStructure.BULLISH
            or regime not in self.params.allowed_regimes
        ):
            return
        self.context.set_result_dto(asset, OpportunitySignalDTO.trusted(
            side=OrderSide.BUY,
            reason=f"{'limit at' if limit else 're-entry into'} bullish FVG {gap.bottom:.2f}-{gap.top:.2f}, "
                   f"regime {regime}",
            stop_price=gap.bottom * (1 - self.params.stop_buffer_pct / 100),
            entry_price=gap.top if limit else None,
        ))

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        fvg = self._require_columns(asset, FairValueGapDTO)
        self._regimes[asset] = self._require_columns(asset, MarketRegimeDTO)
        self._answer[asset] = (0, -1)
        # `process`'s first tests (a price in a bullish gap implies the gap): an over-approximation
        # at worst, which is always safe (process decides on the row).
        bullish = fvg.values("structure", object) == MarketStructure.BULLISH
        if self.params.entry == "close":
            self._candidates[asset] = np.flatnonzero(fvg.values("price_in_bullish_gap", bool) & bullish)
            return
        gaps, rows = fvg.values("bullish_gap", object), np.flatnonzero(bullish)
        formed = np.fromiter((-1.0 if gaps[row] is None else gaps[row].formed_at.timestamp() for row in rows),
                             dtype=np.float64, count=len(rows))
        self._candidates[asset] = rows[formed == candles.open_times[rows]]  # a gap formed on the row

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        searched_from, found = self._answer[asset]
        if searched_from <= start <= found:
            return found  # the candidates before it were rejected already
        candidates, regimes, allowed = self._candidates[asset], self._regimes[asset], self.params.allowed_regimes
        row = len(candles)
        for index in range(int(np.searchsorted(candidates, start)), len(candidates)):
            candidate = int(candidates[index])
            regime = regimes.at(candidate)
            if regime is None or regime.regime in allowed:  # None: process decides (it raises)
                row = candidate
                break
        self._answer[asset] = (start, row)
        return row
