import numpy as np
from pydantic import Field, model_validator

from backend.dtos import PortfolioSnapshotDTO, ThreatAction, ThreatSignalDTO
from backend.equity_curve import drawdown_curve, drawdown_pct, equities_holding
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.workers.columnar import first_row_where
from backend.workers.threat.entry_block import EntryBlocks


class DrawdownThreatParams(WorkerParams):
    block_entries_at_pct: float = Field(default=5.0, gt=0)
    exit_at_pct: float = Field(default=10.0, gt=0)
    # None: entries stay blocked until the equity is back above block_entries_at_pct of its peak,
    # which a flat account never is.
    cooldown_bars: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _block_before_exit(self) -> "DrawdownThreatParams":
        if self.block_entries_at_pct > self.exit_at_pct:
            raise ValueError("block_entries_at_pct must not exceed exit_at_pct")
        return self


class DrawdownThreat(IWorker):
    """Circuit breaker on the strategy's own equity drawdown from its peak: entries blocked from
    block_entries_at_pct on, positions exited from exit_at_pct on. With cooldown_bars, a block
    that has lasted that many candles ends on the first one without a position: the drawdown is
    measured from then on from the equity on that candle (a flat account cannot regain its peak).
    Each block and its end are logged (EntryBlocks).

    Columnar: only an exit acts (blocking entries only restrains, see ThreatAction), so it names
    the first row, while a position is held, whose drawdown reaches exit_at_pct, computed from the
    rows' closes as the ledger will see them (Ledger.record_closes); `skip` replays the
    blocks, their ends and the peak it keeps after a cool-down over the quiet rows, vectorised."""

    plugin_name = "drawdown_threat"
    category = WorkerCategory.THREAT
    Params = DrawdownThreatParams
    produces = (ThreatSignalDTO,)
    columnar = True
    params: DrawdownThreatParams

    def __init__(self, params: DrawdownThreatParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._blocks = EntryBlocks(self.name)
        # Per asset, after its first cool-down: the peak since (in memory: a restarted daemon
        # measures from the account's peak again).
        self._peaks: dict[str, float] = {}
        self._quiet_account: dict[str, PortfolioSnapshotDTO] = {}  # next_active_row's, for skip

    def process(self, asset: str) -> None:
        base = self._base(asset)
        portfolio, equity = base.portfolio, base.portfolio.equity
        cooled = self._cooled_down(asset, portfolio.position_qty)
        if cooled:
            self._peaks[asset] = equity
        peak = self._peaks.get(asset)
        if peak is None:
            drawdown = portfolio.drawdown_pct
        else:
            drawdown = drawdown_pct(equity, peak)
            self._peaks[asset] = max(peak, equity)
        if drawdown >= self.params.exit_at_pct:
            action = ThreatAction.EXIT_POSITIONS
        elif drawdown >= self.params.block_entries_at_pct:
            action = ThreatAction.BLOCK_ENTRIES
        else:
            self._blocks.clear(asset, base.timestamp, self._cleared_because(cooled))
            return
        reason = self._reason(drawdown)
        self._blocks.blocked(asset, base.timestamp, reason)
        self.context.set_result_dto(asset, ThreatSignalDTO.trusted(action=action, reason=reason))

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        self._quiet_account[asset] = portfolio
        threshold, rows = self.params.exit_at_pct, len(candles)
        cash, quantity = portfolio.cash, portfolio.position_qty
        if quantity <= 0:  # nothing to exit
            return rows
        closes, peak = candles.closes, self._peaks.get(asset, portfolio.peak_equity)

        def reaches(low: int, high: int) -> np.ndarray:
            nonlocal peak
            found, peak = drawdown_curve(equities_holding(cash, quantity, closes[low:high]), peak)
            return found >= threshold

        return first_row_where(reaches, start, rows)

    def skip(self, asset: str, candles: CandleColumns, rows: range) -> None:
        portfolio = self._quiet_account.pop(asset)
        cash, quantity = portfolio.cash, portfolio.position_qty
        peak = self._peaks.get(asset, portfolio.peak_equity)
        flat = quantity <= 0
        # Flat, every row has the same equity: one row says it for all.
        closes = candles.closes[rows.start:rows.start + 1] if flat else candles.closes[rows.start:rows.stop]
        found, last_peak = drawdown_curve(equities_holding(cash, quantity, closes), peak)
        if asset in self._peaks:
            self._peaks[asset] = last_peak
        blocking = found >= self.params.block_entries_at_pct
        reason_at = lambda row: self._reason(float(found[0 if flat else row - rows.start]))  # noqa: E731
        cooldown = self.params.cooldown_bars
        if flat:
            blocking = np.full(len(rows), bool(blocking[0]))
            # A block lasting cooldown_bars ends (the peak reset) on the row where it has lasted that long.
            ends = rows.start + max(0, (cooldown or 0) - self._blocks.candles_blocked(asset))
            if cooldown is not None and blocking[0] and ends < rows.stop:
                # Every row before `ends` blocks: none of them clears (hence no reason to give).
                self._blocks.rows(asset, candles, range(rows.start, ends), blocking[:ends - rows.start], reason_at, "")
                self._peaks[asset] = cash
                self._blocks.clear(asset, candles.open_time(ends), self._cleared_because(True))
                return
        self._blocks.rows(asset, candles, rows, blocking, reason_at, self._cleared_because(False))

    def _cooled_down(self, asset: str, quantity: float) -> bool:
        """The block has lasted cooldown_bars candles and no position is held: it ends now."""
        cooldown = self.params.cooldown_bars
        return cooldown is not None and quantity <= 0 and self._blocks.candles_blocked(asset) >= cooldown

    def _cleared_because(self, cooled: bool) -> str:
        if cooled:
            return f"cool-down of {self.params.cooldown_bars} bars over while flat: drawdown measured from here"
        return f"drawdown back under {self.params.block_entries_at_pct:g}% from peak equity"

    @staticmethod
    def _reason(drawdown: float) -> str:
        return f"drawdown {drawdown:.2f}% from peak equity"
