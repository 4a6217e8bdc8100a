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
        self._high_rows = np.empty(0, dtype=np.int64)  # the current block's rows rated HIGH

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
        self._high_rows = volatility.high_rows

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        index = int(np.searchsorted(self._high_rows, start))
        return int(self._high_rows[index]) if index < len(self._high_rows) else len(candles)
