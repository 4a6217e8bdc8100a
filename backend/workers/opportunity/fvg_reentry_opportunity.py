from pydantic import Field

from backend.dtos import (
    FairValueGapDTO,
    MarketRegimeDTO,
    MarketStructure,
    OpportunitySignalDTO,
    OrderSide,
    Regime,
)
from backend.interfaces import IWorker, WorkerCategory, WorkerParams


class FvgReentryParams(WorkerParams):
    allowed_regimes: list[Regime] = Field(default=[Regime.TRENDING_UP, Regime.RANGING])
    stop_buffer_pct: float = Field(default=0.2, ge=0)  # stop this far below the gap's bottom


class FvgReentryOpportunity(IWorker):
    """Long when price returns into an unfilled bullish fair value gap while the market
    structure is bullish and the regime is one of allowed_regimes; the stop goes under the gap."""

    plugin_name = "fvg_reentry_opportunity"
    category = WorkerCategory.OPPORTUNITY
    Params = FvgReentryParams
    requires = (FairValueGapDTO, MarketRegimeDTO)
    produces = (OpportunitySignalDTO,)
    params: FvgReentryParams

    def process(self, asset: str) -> None:
        fvg = self._require(asset, FairValueGapDTO)
        regime = self._require(asset, MarketRegimeDTO).regime
        gap = fvg.bullish_gap
        if (
            gap is None
            or not fvg.price_in_bullish_gap
            or fvg.structure is not MarketStructure.BULLISH
            or regime not in self.params.allowed_regimes
        ):
            return
        self.context.set_result_dto(asset, OpportunitySignalDTO.trusted(
            side=OrderSide.BUY,
            reason=f"re-entry into bullish FVG {gap.bottom:.2f}-{gap.top:.2f}, regime {regime}",
            stop_price=gap.bottom * (1 - self.params.stop_buffer_pct / 100),
        ))
