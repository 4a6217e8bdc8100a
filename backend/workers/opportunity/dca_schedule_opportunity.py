from pydantic import Field

from backend.dtos import OpportunitySignalDTO, OrderSide, PortfolioSnapshotDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns


class DcaScheduleParams(WorkerParams):
    interval_bars: int = Field(default=24, ge=1)


class DcaScheduleOpportunity(IWorker):
    """A buy signal every interval_bars candles of the asset (the first on candle interval_bars).

    Its one state is the count of candles seen per asset; in a columnar replay the next signal
    is where that count next reaches a multiple of interval_bars, and `skip` adds the quiet
    candles to it."""

    plugin_name = "dca_schedule_opportunity"
    category = WorkerCategory.OPPORTUNITY
    Params = DcaScheduleParams
    produces = (OpportunitySignalDTO,)
    columnar = True
    columnar_across_assets = True  # its counts are per asset
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

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        # Row start + k makes the count bars + k + 1: a multiple for the smallest k >= 0 below.
        bars, interval = self._bars.get(asset, 0), self.params.interval_bars
        return min(start + (-bars - 1) % interval, len(candles))

    def skip(self, asset: str, candles: CandleColumns, rows: range) -> None:
        self._bars[asset] = self._bars.get(asset, 0) + len(rows)
