import numpy as np
from pydantic import Field, model_validator

from backend.dtos import PortfolioSnapshotDTO, ThreatAction, ThreatSignalDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams
from backend.interfaces.candle_columns import CandleColumns
from backend.workers.columnar import first_row_where


class DrawdownThreatParams(WorkerParams):
    block_entries_at_pct: float = Field(default=5.0, gt=0)
    exit_at_pct: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _block_before_exit(self) -> "DrawdownThreatParams":
        if self.block_entries_at_pct > self.exit_at_pct:
            raise ValueError("block_entries_at_pct must not exceed exit_at_pct")
        return self


class DrawdownThreat(IWorker):
    """Circuit breaker on the strategy's own equity drawdown from its peak.

    Columnar: stateless; only an exit acts (blocking entries only restrains, see ThreatAction),
    so it names the first row, while a position is held, whose drawdown reaches exit_at_pct: the
    drawdowns of the rows ahead computed from their closes as the ledger will see them
    (Ledger.record_quiet_closes)."""

    plugin_name = "drawdown_threat"
    category = WorkerCategory.THREAT
    Params = DrawdownThreatParams
    produces = (ThreatSignalDTO,)
    columnar = True
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

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        threshold, rows = self.params.exit_at_pct, len(candles)
        cash, quantity = portfolio.cash, portfolio.position_qty
        if quantity <= 0:  # nothing to exit
            return rows
        closes, peak = candles.closes, portfolio.peak_equity

        def reaches(low: int, high: int) -> np.ndarray:
            # Row k sees equity_k = cash + (0.0 + qty * close_k), as Ledger.equity() sums it, and
            # the peak of the equities before it (the ledger records a row's equity after its
            # workers ran): drawdown_pct's formula, on those floats.
            nonlocal peak
            equities = cash + (0.0 + quantity * closes[low:high])
            peaks = np.maximum.accumulate(np.concatenate(([peak], equities)))
            peak, peaks = float(peaks[-1]), peaks[:-1]
            drawdowns = np.zeros(high - low)
            np.multiply(1 - np.divide(equities, peaks, where=peaks > 0, out=np.ones(high - low)), 100,
                        where=peaks > 0, out=drawdowns)
            return drawdowns >= threshold

        return first_row_where(reaches, start, rows)
