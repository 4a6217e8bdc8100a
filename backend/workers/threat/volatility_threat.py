import numpy as np

from backend.dtos import PortfolioSnapshotDTO, RiskLevel, ThreatAction, ThreatSignalDTO, VolatilityDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.workers.context.volatility_assessor import VolatilityColumns


class VolatilityThreat(IWorker):
    """Blocks new entries while the volatility assessor rates risk as high. Stateless: in a
    columnar replay it acts on exactly the rows the assessor's columns rate HIGH."""

    plugin_name = "volatility_threat"
    category = WorkerCategory.THREAT
    requires = (VolatilityDTO,)
    produces = (ThreatSignalDTO,)
    columnar = True

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._next_high: list[int] = []  # per row of the current block, the first HIGH row at or after it

    def process(self, asset: str) -> None:
        volatility = self._require(asset, VolatilityDTO)
        if volatility.risk_level is RiskLevel.HIGH:
            self.context.set_result_dto(asset, ThreatSignalDTO.trusted(
                action=ThreatAction.BLOCK_ENTRIES,
                reason=f"high volatility: ATR {volatility.atr_pct:.2f}% of price",
            ))

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        volatility = self.context.find_columns(asset, VolatilityColumns)
        if volatility is None:
            raise RuntimeError(f"{self.name}: no volatility columns for {asset} (volatility_assessor must run)")
        # Every row's answer at once (a list: looked up far faster than searched, per active row).
        rows = len(candles)
        following = np.full(rows + 1, rows, dtype=np.int64)
        following[volatility.high_rows] = volatility.high_rows
        self._next_high = np.minimum.accumulate(following[::-1])[::-1].tolist()

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        return self._next_high[start]
