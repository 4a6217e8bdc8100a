from backend.dtos import RiskLevel, ThreatAction, ThreatSignalDTO, VolatilityDTO
from backend.interfaces import IWorker, WorkerCategory


class VolatilityThreat(IWorker):
    """Blocks new entries while the volatility assessor rates risk as high. Columnar: it never
    acts by itself (blocking only restrains, see ThreatAction), so it names no row; on the rows
    the others name it runs as on any tick."""

    plugin_name = "volatility_threat"
    category = WorkerCategory.THREAT
    requires = (VolatilityDTO,)
    produces = (ThreatSignalDTO,)
    columnar = True

    def process(self, asset: str) -> None:
        volatility = self._require(asset, VolatilityDTO)
        if volatility.risk_level is RiskLevel.HIGH:
            self.context.set_result_dto(asset, ThreatSignalDTO.trusted(
                action=ThreatAction.BLOCK_ENTRIES,
                reason=f"high volatility: ATR {volatility.atr_pct:.2f}% of price",
            ))
