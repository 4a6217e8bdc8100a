"""Says when a threat worker starts and stops blocking entries, per asset.

Invariant: one `entries_blocked` line when a candle blocks after one that did not (or the first),
one `entries_unblocked` line when a candle does not after one that did, never a line per candle;
both name the worker, the asset and the candle's open time, so a tick-by-tick replay (`blocked`
or `clear` on every candle) and a columnar one (the same on active rows, `rows` on the quiet ones
between them) log the same lines. `rows` loops only over the changes (the rest is one vector pass).
"""

from collections.abc import Callable
from datetime import datetime

import numpy as np
import structlog

from backend.interfaces.candle_columns import CandleColumns

log = structlog.get_logger(__name__)


class EntryBlocks:
    """Whether a threat worker's latest candle of an asset blocked entries, since when, and for how
    many candles so far."""

    def __init__(self, worker: str) -> None:
        self._worker = worker
        self._since: dict[str, tuple[datetime, int]] = {}  # asset -> (first blocked candle, candles blocked)

    def is_blocked(self, asset: str) -> bool:
        return asset in self._since

    def candles_blocked(self, asset: str) -> int:
        """Candles blocked so far in the asset's current block (0 when not blocked)."""
        return self._since[asset][1] if asset in self._since else 0

    def blocked(self, asset: str, candle_time: datetime, reason: str) -> None:
        """This candle blocks entries, for reason."""
        if asset not in self._since:
            self._start(asset, candle_time, reason)
        self._count(asset, 1)

    def rows(
        self, asset: str, candles: CandleColumns, rows: range, blocking: np.ndarray,
        reason_at: Callable[[int], str], cleared_because: str,
    ) -> None:
        """Consecutive candles: blocking[i] says whether row rows.start + i blocks entries,
        reason_at(row) why it does."""
        if not len(blocking):
            return
        was = self.is_blocked(asset)
        changes = np.flatnonzero(blocking[1:] != blocking[:-1]) + 1  # rows unlike the one before
        if bool(blocking[0]) != was:
            changes = np.concatenate(([0], changes))
        run_start = 0  # where the current state's run began among these rows
        for offset in changes.tolist():
            row = rows.start + offset
            if was:
                self._count(asset, offset - run_start)
                self.clear(asset, candles.open_time(row), cleared_because)
            else:
                self._start(asset, candles.open_time(row), reason_at(row))
            was, run_start = not was, offset
        if was:
            self._count(asset, len(blocking) - run_start)

    def clear(self, asset: str, candle_time: datetime, because: str) -> None:
        """This candle no longer blocks entries (nothing to say if none did)."""
        if asset in self._since:
            since, blocked = self._since.pop(asset)
            log.info("entries_unblocked", worker=self._worker, asset=asset, reason=because,
                     blocked_since=since.isoformat(), candles_blocked=blocked, candle_time=candle_time.isoformat())

    def _count(self, asset: str, candles: int) -> None:
        since, blocked = self._since[asset]
        self._since[asset] = (since, blocked + candles)

    def _start(self, asset: str, candle_time: datetime, reason: str) -> None:
        log.info("entries_blocked", worker=self._worker, asset=asset, reason=reason,
                 candle_time=candle_time.isoformat())
        self._since[asset] = (candle_time, 0)
