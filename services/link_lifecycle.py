"""One strategy link's own lifecycle inside a running operation: stopped alone, started again.

Invariants: a link's stop is set for that link alone (the control API, a reload) or by the
operation's stop (a signal), whichever comes first, and a run only ever asks it `is_set()` or
`wait()`; a link started again continues with the same tick manager (account, workforce, candle
history) in a new run whose counters carry on from the stopped one, and the hole the stop left is
marked on the next candle of each asset (never joined silently).
"""

import threading
import time
from datetime import timedelta

from backend.config import StrategyLink
from backend.core.ohlcv_provider import OhlcvProvider
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
        self._operation_stop = operation_stop

    def is_set(self) -> bool:
        return super().is_set() or self._operation_stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


def continued_run(stopped: StrategyRun, link: StrategyLink, history: OhlcvProvider, bar: timedelta,
                  stop: LinkStop, queue_size: int) -> StrategyRun:
    """A new run of a stopped link, not started: the same tick manager, the counters the status
    server reports carried on (counters never go back), and its next candle of each asset marked
    with the bars of length bar it missed while stopped."""
    run = StrategyRun(link, stopped.tick_manager, stop, queue_size)
    run.ticks_processed = stopped.ticks_processed
    run.latency_counts = list(stopped.latency_counts)
    run.latency_sum = stopped.latency_sum
    run.last_tick_time, run.last_tick_at = stopped.last_tick_time, stopped.last_tick_at
    history.expect_hole(bar)
    return run
