import math
from bisect import bisect_left

import numpy as np

from backend.dtos import EmaDTO, OpportunitySignalDTO, OrderSide, PortfolioSnapshotDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns


class EmaCrossOpportunity(IWorker):
    """A buy signal when the fast EMA crosses above the slow one (below on the previous candle,
    above on this one), a sell signal when it crosses below. Nothing while either EMA warms up,
    so no cross is seen across a hole in the data (the EMAs reseed after one)."""

    plugin_name = "ema_cross_opportunity"
    category = WorkerCategory.OPPORTUNITY
    Params = WorkerParams
    requires = (EmaDTO,)
    produces = (OpportunitySignalDTO,)
    columnar = True
    columnar_across_assets = True  # its block's crosses and EMAs are kept per asset

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        # Per asset, the fast and slow EMA of the previous candle (None while warming up).
        self._previous: dict[str, tuple[float | None, float | None]] = {}
        self._crosses: dict[str, list[int]] = {}  # per asset, the current block's rows with a cross
        # Per asset, the current block's fast and slow EMAs (NaN: None).
        self._emas: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def process(self, asset: str) -> None:
        ema = self._require(asset, EmaDTO)
        fast, slow = ema.fast, ema.slow
        previous_fast, previous_slow = self._previous.get(asset, (None, None))
        self._previous[asset] = fast, slow
        if previous_fast is None or previous_slow is None or fast is None or slow is None:
            return
        if previous_fast < previous_slow and fast > slow:
            side, direction = OrderSide.BUY, "above"
        elif previous_fast > previous_slow and fast < slow:
            side, direction = OrderSide.SELL, "below"
        else:
            return
        self.context.set_result_dto(asset, OpportunitySignalDTO.trusted(
            side=side, reason=f"EMA({ema.fast_period}) crossed {direction} EMA({ema.slow_period})",
        ))

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        emas = self._require_columns(asset, EmaDTO)
        fast, slow = self._emas[asset] = emas.values("fast"), emas.values("slow")
        # None (warming up) becomes NaN, which compares false: no cross, as in `process`.
        before = np.array(self._previous.get(asset, (None, None)), dtype=float)
        previous_fast = np.concatenate((before[:1], fast[:-1]))
        previous_slow = np.concatenate((before[1:], slow[:-1]))
        crossed = ((previous_fast < previous_slow) & (fast > slow)) | ((previous_fast > previous_slow) & (fast < slow))
        self._crosses[asset] = np.flatnonzero(crossed).tolist()

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        crosses = self._crosses[asset]
        index = bisect_left(crosses, start)
        return crosses[index] if index < len(crosses) else len(candles)

    def skip(self, asset: str, candles: CandleColumns, rows: range) -> None:
        fast, slow = (float(emas[rows[-1]]) for emas in self._emas[asset])
        self._previous[asset] = (None if math.isnan(fast) else fast, None if math.isnan(slow) else slow)
