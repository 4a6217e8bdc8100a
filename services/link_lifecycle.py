"""One strategy link's own lifecycle inside a running operation: stopped alone, started again.

Invariants: a link's stop is set for that link alone (the control API, a reload) or by the
operation's stop (a signal), whichever comes first, and a run only ever asks it `is_set()` or
`wait()`; a link started again continues with the same tick manager (account, workforce, candle
history) in a new run whose counters carry on from the stopped one, and the hole the stop left is
marked (missing_before) on the first candle of each asset it then gets: never joined silently.
"""

import threading
import time
from datetime import timedelta

from backend.config import StrategyLink
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.candle_window import Candles, CandleWindow
from services.strategy_run import StrategyRun

POLL_SECONDS = 0.05  # how often wait() looks at the operation's stop as well
OPERATOR_PAUSE = "paused by the operator (status server)"


class UnknownLinkError(LookupError):
    """No strategy link of that id in the running set."""


class LinkStateError(Exception):
    """A request that does not apply to the link (or the daemon) in its current state."""


class LinkStop(threading.Event):
    """Set for one link alone, or through the operation's stop event for every link at once."""

    def __init__(self, operation_stop: threading.Event) -> None:
        super().__init__()
        # A plain flag and a bound method: the run asks is_set() on every tick.
        self._set_for_link = False
        self._operation_stop_is_set = operation_stop.is_set

    def set(self) -> None:
        self._set_for_link = True
        super().set()

    def clear(self) -> None:
        self._set_for_link = False
        super().clear()

    def is_set(self) -> bool:
        return self._set_for_link or self._operation_stop_is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


class ContinuedRun(StrategyRun):
    """A stopped link's new run: the same tick manager (account, workforce, candle history), and the
    first candle of each asset after the stop marked with the bars missed meanwhile."""

    def __init__(self, stopped: StrategyRun, link: StrategyLink, bar: timedelta, stop: LinkStop,
                 queue_size: int) -> None:
        # Counters never go back: the status server reports the link, not this run.
        super().__init__(link, stopped.tick_manager, stop, queue_size, carried=stopped.snapshot())
        self._bar = bar
        self._last_before_stop = stopped.tick_manager.account.cursors  # per asset, the last candle processed

    def submit(self, candles: Candles) -> bool:
        if self._last_before_stop:  # only until each asset's first candle after the stop has come
            if isinstance(candles, CandleWindow):
                candles = CandleWindow(tuple(map(self._with_hole_marked, candles.columns)))
            else:
                candles = self._with_hole_marked(candles)
        return super().submit(candles)

    def _with_hole_marked(self, candles: CandleColumns) -> CandleColumns:
        if not len(candles):
            return candles
        last = self._last_before_stop.pop(candles.symbol, None)
        first = candles.open_time(0)
        if last is None or first <= last:
            return candles
        missed = (first - last) // self._bar - 1
        return candles.with_missing_before_first(missed) if missed > candles.missing_before[0] else candles
