from pydantic import Field

from backend.dtos import OpportunitySignalDTO, OrderSide
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices


class DcaScheduleParams(WorkerParams):
    interval_bars: int = Field(default=24, ge=1)


class DcaScheduleOpportunity(IWorker):
    """A buy signal every interval_bars candles of the asset (the first on candle interval_bars)."""

    plugin_name = "dca_schedule_opportunity"
    category = WorkerCategory.OPPORTUNITY
    Params = DcaScheduleParams
    produces = (OpportunitySignalDTO,)
    params: DcaScheduleParams

    def __init__(self, params: DcaScheduleParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._bars: dict[str, int] = {}

    def process(self, asset: str) -> None:
        self._bars[asset] = self._bars.get(asset, 0) + 1
        if self._bars[asset] % self.params.interval_bars == 0:
            self.context.set_result_dto(asset, OpportunitySignalDTO.trusted(
                side=OrderSide.BUY, reason=f"scheduled buy every {self.params.interval_bars} bars"
            ))
