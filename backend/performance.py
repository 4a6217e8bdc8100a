"""Performance of one equity curve: drawdown, Sharpe, Sortino and exposure, the numbers the
backtest report shows and a sweep ranks runs by.

Invariant: computed as the curve grows, in constant memory (a months-long run never keeps its
curve), and the same whether fed point by point (`PerformanceTracker`) or all at once
(`performance_of`).

Definitions. One period is one bar of the run's timeframe; points sharing a time (one per asset
of a multi-asset run) are one period, the last one standing. E_0 is the equity before the first
bar (the starting capital for a new account), E_t the equity at the close of period t.
- return r_t = E_t / E_(t-1) - 1;
- drawdown at t = 1 - E_t / max(E_0 .. E_t), in %; max drawdown the largest of them;
- Sharpe = mean(r) / stdev(r) * sqrt(P), stdev the sample one (n - 1), risk-free rate 0,
  P = periods per year = 365 days / the timeframe (crypto markets trade every day, all day);
- Sortino = mean(r) / downside deviation * sqrt(P), downside deviation = sqrt(sum(min(r, 0)^2) / n);
- exposure = % of periods that closed holding a position.
Sharpe is None with fewer than two returns or none that differ; Sortino is None without a
negative return (no downside to divide by).
"""

import copy
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from backend.equity_curve import drawdown_pct

SECONDS_PER_YEAR = 365 * 86_400


@dataclass(frozen=True)
class Performance:
    periods: int
    starting_equity: float
    final_equity: float
    pnl: float
    pnl_pct: float
    max_drawdown_pct: float
    sharpe: float | None
    sortino: float | None
    exposure_pct: float


class PerformanceTracker:
    """Feed it every point of the curve, in time order, with `add`; read `result()` at any time."""

    def __init__(self, starting_equity: float, period_seconds: int) -> None:
        self.starting_equity = starting_equity
        self.periods_per_year = SECONDS_PER_YEAR / period_seconds
        self.peak = starting_equity
        self.max_drawdown_pct = 0.0
        self._closed_equity = starting_equity  # E_(t-1): the last closed period's
        self._open: tuple[Hashable, float, bool] | None = None  # the period whose last point may still change
        self._periods = 0
        self._exposed_periods = 0
        # Welford's running mean and sum of squared deviations of the returns, and the downside sum.
        self._returns = 0
        self._mean = 0.0
        self._squares = 0.0
        self._downside_squares = 0.0

    def add(self, time: Hashable, equity: float, exposed: bool) -> float:
        """One point: the equity at the close of a bar at `time` (a datetime, or its epoch seconds:
        one kind per tracker), and whether a position was held; returns the drawdown (%) at this point."""
        if self._open is not None and self._open[0] != time:
            self._close_period()
        self._open = (time, equity, exposed)
        self.peak = max(self.peak, equity)
        drawdown = drawdown_pct(equity, self.peak)
        self.max_drawdown_pct = max(self.max_drawdown_pct, drawdown)
        return drawdown

    def add_many(self, times: Sequence[Hashable] | np.ndarray, equities: Sequence[float] | np.ndarray,
                 exposed: bool | Sequence[bool] | np.ndarray) -> None:
        """`add(time, equity, exposed)` for each point in turn (exposed: one for all, or each
        point's; times as `add` compares them: one caller, one kind), with the same floats. What
        each point gives alone is computed as arrays (the periods it closes, its return, its
        drawdown from the peak before it, its return's square below zero by libm's `pow` as
        Python's `**`, and those squares added in order by `add.accumulate`); Welford's mean,
        whose every step needs the one before, stays a loop (a sweep's recorder adds a block of
        thousands of points at once: a call per point would cost more than the replay)."""
        count = len(times)
        if not count:
            return
        at = np.asarray(times)
        values = np.asarray(equities, dtype=np.float64)
        held = np.broadcast_to(np.asarray(exposed, dtype=bool), (count,))
        # Drawdown: from the peak before each point, unless the point is a new peak (0.0 then).
        tops = np.maximum.accumulate(np.concatenate(([self.peak], values)))
        before = tops[:-1]
        counted = ~(values > before) & (before > 0)
        if counted.any():
            self.max_drawdown_pct = max(self.max_drawdown_pct,
                                        float(((1 - values[counted] / before[counted]) * 100).max()))
        self.peak = float(tops[-1])
        # A point at a new time closes the period open before it: the open one's last point.
        if self._open is None:
            closing = np.concatenate(([False], at[1:] != at[:-1]))
            open_equity, open_exposed = 0.0, False
        else:
            open_time, open_equity, open_exposed = self._open
            closing = np.concatenate(([at[0] != open_time], at[1:] != at[:-1]))
        closed_equities = np.concatenate(([open_equity], values[:-1]))[closing]
        if len(closed_equities):
            self._periods += len(closed_equities)
            self._exposed_periods += int(np.count_nonzero(np.concatenate(([open_exposed], held[:-1]))[closing]))
            # Each closed period's return on the one closed before it (none from an account at zero).
            previous = np.concatenate(([self._closed_equity], closed_equities[:-1]))
            valued = previous > 0
            changes = closed_equities[valued] / previous[valued] - 1
            self._closed_equity = float(closed_equities[-1])
            downside = changes[~(changes > 0.0)]  # min(change, 0.0) ** 2: above 0, it adds 0.0
            if len(downside):
                self._downside_squares = float(np.add.accumulate(
                    np.concatenate(([self._downside_squares], np.float_power(downside, 2.0))))[-1])
            returns, mean, squares = self._returns, self._mean, self._squares
            for change in changes.tolist():
                returns += 1
                delta = change - mean
                mean += delta / returns
                squares += delta * (change - mean)
            self._returns, self._mean, self._squares = returns, mean, squares
        last_time = at[-1]
        self._open = (last_time.item() if isinstance(last_time, np.generic) else last_time, float(values[-1]),
                      bool(held[-1]))

    def _close_period(self) -> None:
        assert self._open is not None
        _, equity, exposed = self._open
        self._open = None
        self._periods += 1
        self._exposed_periods += exposed
        if self._closed_equity > 0:  # an account at zero has no return to speak of
            change = equity / self._closed_equity - 1
            self._returns += 1
            delta = change - self._mean
            self._mean += delta / self._returns
            self._squares += delta * (change - self._mean)
            self._downside_squares += min(change, 0.0) ** 2
        self._closed_equity = equity

    def result(self) -> Performance:
        """The figures so far, the last period included (the tracker can go on afterwards)."""
        tracker = copy.copy(self)
        if tracker._open is not None:
            tracker._close_period()
        return tracker._figures()

    def _figures(self) -> Performance:
        final = self._closed_equity
        pnl = final - self.starting_equity
        annualise = math.sqrt(self.periods_per_year)
        sharpe = sortino = None
        if self._returns >= 2:
            stdev = math.sqrt(self._squares / (self._returns - 1))
            # Below this, the "dispersion" is float noise on a flat curve: the ratio means nothing.
            if stdev > 1e-12:
                sharpe = self._mean / stdev * annualise
            downside = math.sqrt(self._downside_squares / self._returns)
            if downside > 1e-12:
                sortino = self._mean / downside * annualise
        return Performance(
            periods=self._periods,
            starting_equity=self.starting_equity,
            final_equity=final,
            pnl=pnl,
            pnl_pct=pnl / self.starting_equity * 100 if self.starting_equity > 0 else 0.0,
            max_drawdown_pct=self.max_drawdown_pct,
            sharpe=sharpe,
            sortino=sortino,
            exposure_pct=self._exposed_periods / self._periods * 100 if self._periods else 0.0,
        )


def performance_of(
    points: Iterable[tuple[datetime, float, bool]], starting_equity: float, period_seconds: int
) -> Performance:
    """The performance of a whole curve: (time, equity, position held) points in time order."""
    tracker = PerformanceTracker(starting_equity, period_seconds)
    for time, equity, exposed in points:
        tracker.add(time, equity, exposed)
    return tracker.result()
