import numpy as np

from backend.dtos import RiskLevel, ThreatAction, ThreatSignalDTO, VolatilityDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.workers.threat.entry_block import EntryBlocks

CLEARED_BECAUSE = "volatility no longer high"


class VolatilityThreat(IWorker):
    """Blocks new entries while the volatility assessor rates risk as high; each block and its end
    are logged (EntryBlocks). Columnar: it never acts by itself (blocking only restrains, see
    ThreatAction), so it acts only on the others' signals; on the rows they name it runs as on
    any tick, and `skip` finds the blocks' starts and ends over the quiet rows in the rows the
    volatility columns rate HIGH."""

    plugin_name = "volatility_threat"
    category = WorkerCategory.THREAT
    requires = (VolatilityDTO,)
    produces = (ThreatSignalDTO,)
    columnar = True
    columnar_across_assets = True  # its block's rated rows are kept per asset
    acts_only_on_signals = True

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._blocks = EntryBlocks(self.name)
        # Per asset, the current block's rows rated HIGH (in order) and ATR percentages.
        self._high_rows: dict[str, np.ndarray] = {}
        self._atr_pct: dict[str, np.ndarray] = {}

    def process(self, asset: str) -> None:
        volatility = self._require(asset, VolatilityDTO)
        if volatility.risk_level is not RiskLevel.HIGH:
            if self._blocks.is_blocked(asset):
                self._blocks.clear(asset, self._base(asset).timestamp, CLEARED_BECAUSE)
            return
        reason = self._reason(volatility.atr_pct)
        self._blocks.blocked(asset, self._base(asset).timestamp, reason)
        self.context.set_result_dto(asset, ThreatSignalDTO.trusted(action=ThreatAction.BLOCK_ENTRIES, reason=reason))

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        columns = self._require_columns(asset, VolatilityDTO)
        self._high_rows[asset] = np.flatnonzero(columns.values("risk_level", object) == RiskLevel.HIGH)
        self._atr_pct[asset] = columns.values("atr_pct")

    def skip(self, asset: str, candles: CandleColumns, rows: range) -> None:
        rated = self._high_rows[asset]
        high_rows = rated[np.searchsorted(rated, rows.start):np.searchsorted(rated, rows.stop)]
        if not len(high_rows):  # the common case, said without a mask
            if self._blocks.is_blocked(asset):
                self._blocks.clear(asset, candles.open_time(rows.start), CLEARED_BECAUSE)
            return
        blocking = np.zeros(len(rows), dtype=bool)
        blocking[high_rows - rows.start] = True
        atr_pct = self._atr_pct[asset]
        self._blocks.rows(asset, candles, rows, blocking, lambda row: self._reason(float(atr_pct[row])),
                          CLEARED_BECAUSE)

    @staticmethod
    def _reason(atr_pct: float | None) -> str:
        return f"high volatility: ATR {atr_pct:.2f}% of price"
