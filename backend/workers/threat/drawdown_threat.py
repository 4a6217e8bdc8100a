from pydantic import Field, model_validator

from backend.dtos import ThreatAction, ThreatSignalDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams


class DrawdownThreatParams(WorkerParams):
    block_entries_at_pct: float = Field(default=5.0, gt=0)
    exit_at_pct: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _block_before_exit(self) -> "DrawdownThreatParams":
        if self.block_entries_at_pct > self.exit_at_pct:
            raise ValueError("block_entries_at_pct must not exceed exit_at_pct")
        return self


class DrawdownThreat(IWorker):
    """Circuit breaker on the strategy's own equity drawdown from its peak."""

    plugin_name = "drawdown_threat"
    category = WorkerCategory.THREAT
    Params = DrawdownThreatParams
    produces = (ThreatSignalDTO,)
    params: DrawdownThreatParams

    def process(self, asset: str) -> None:
        drawdown = self._base(asset).portfolio.drawdown_pct
        if drawdown >= self.params.exit_at_pct:
            action = ThreatAction.EXIT_POSITIONS
        elif drawdown >= self.params.block_entries_at_pct:
            action = ThreatAction.BLOCK_ENTRIES
        else:
            return
        self.context.set_result_dto(
            asset, ThreatSignalDTO.trusted(action=action, reason=f"drawdown {drawdown:.2f}% from peak equity")
        )
