"""Walk-forward windows over a backtest range: train on one window, test the winner on the next.

Invariant: every test window starts where its train window ends, lies inside [start, end), and
test windows follow each other by `step`; rolling train windows have the train length, anchored
ones all start at `start`. A range too short for one train + test window yields no window.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from backend.config.sweep import WalkForwardConfig
from backend.market_data.timeframes import timeframe_length


@dataclass(frozen=True)
class Window:
    index: int
    train_start: datetime
    train_end: datetime  # = test_start
    test_end: datetime

    @property
    def test_start(self) -> datetime:
        return self.train_end


def windows(start: datetime, end: datetime, train: timedelta, test: timedelta, step: timedelta,
            anchored: bool = False) -> list[Window]:
    found: list[Window] = []
    offset = timedelta(0)
    while start + offset + train + test <= end:
        train_start = start if anchored else start + offset
        found.append(Window(len(found), train_start, start + offset + train, start + offset + train + test))
        offset += step
    return found


def planned_windows(plan: WalkForwardConfig, start: datetime, end: datetime) -> list[Window]:
    """The windows a sweep file's `walk_forward` section cuts [start, end) into."""
    train, test, step = (timeframe_length(duration) for duration in (plan.train, plan.test, plan.step or plan.test))
    return windows(start, end, train, test, step, plan.anchored)
