"""backend.performance against figures worked out by hand from the definitions."""

import math
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from backend.performance import PerformanceTracker, performance_of

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = 3600


def hourly(*points: tuple[float, bool]) -> list[tuple[datetime, float, bool]]:
    return [(T0 + timedelta(hours=i), equity, exposed) for i, (equity, exposed) in enumerate(points)]


def test_small_curve_against_hand_computed_figures():
    # Starting at 100: up 10 %, down 10 %, flat, then 99 -> 120.
    curve = hourly((110, True), (99, True), (99, False), (120, True))
    result = performance_of(curve, starting_equity=100, period_seconds=HOUR)

    returns = [0.10, -0.10, 0.0, 120 / 99 - 1]
    per_year = 365 * 24
    mean = sum(returns) / 4  # 0.0530303...
    sample_stdev = math.sqrt(sum((r - mean) ** 2 for r in returns) / 3)
    downside_deviation = math.sqrt((-0.10) ** 2 / 4)  # only one return below zero: 0.05
    assert result.periods == 4
    assert result.final_equity == 120
    assert result.pnl == pytest.approx(20) and result.pnl_pct == pytest.approx(20)
    assert result.max_drawdown_pct == pytest.approx(10)  # 110 -> 99
    assert result.exposure_pct == pytest.approx(75)  # 3 of 4 bars closed holding a position
    assert result.sharpe == pytest.approx(mean / sample_stdev * math.sqrt(per_year))
    assert result.sharpe == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(8760))
    assert result.sortino == pytest.approx(mean / downside_deviation * math.sqrt(per_year))
    assert result.sharpe == pytest.approx(37.08, abs=0.01)  # 0.05303 / 0.13385 * 93.59


def test_annualisation_follows_the_timeframe():
    curve = [(T0 + timedelta(hours=4 * i), equity, True) for i, (equity, _) in
             enumerate([(101, True), (100, True), (103, True)])]
    on_4h = performance_of(curve, 100, 4 * HOUR)
    returns = [0.01, 100 / 101 - 1, 0.03]
    assert on_4h.sharpe == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(6 * 365))
    assert performance_of(curve, 100, 86_400).sharpe == pytest.approx(on_4h.sharpe / math.sqrt(6))


def test_points_sharing_a_time_are_one_period_the_last_standing():
    # A two-asset run closes two points per bar; the second of each bar is the account at the bar's close.
    t1, t2 = T0, T0 + timedelta(hours=1)
    result = performance_of([(t1, 105, False), (t1, 110, True), (t2, 99, True), (t2, 115.5, False)], 100, HOUR)
    assert result.periods == 2
    assert result.exposure_pct == pytest.approx(50)
    assert result.max_drawdown_pct == pytest.approx(10)  # every point counts for the drawdown: 110 -> 99
    returns = [0.10, 0.05]  # 100 -> 110 -> 115.5: the 105 and 99 were not bar closes
    assert result.sharpe == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(8760))
    assert result.final_equity == 115.5


def test_undefined_ratios_are_none():
    flat = performance_of(hourly((100, False), (100, False), (100, False)), 100, HOUR)
    assert flat.sharpe is None and flat.sortino is None
    assert flat.max_drawdown_pct == 0 and flat.exposure_pct == 0
    rising = performance_of(hourly((101, True), (103, True), (104, True)), 100, HOUR)
    assert rising.sharpe is not None and rising.sharpe > 0
    assert rising.sortino is None  # nothing below zero to divide by
    one = performance_of(hourly((90, True)), 100, HOUR)
    assert one.sharpe is None and one.max_drawdown_pct == pytest.approx(10)
    empty = performance_of([], 100, HOUR)
    assert empty.periods == 0 and empty.final_equity == 100 and empty.exposure_pct == 0


def test_reading_the_result_midway_changes_nothing():
    curve = hourly((110, True), (99, True), (99, False), (120, True), (118, True))
    tracker = PerformanceTracker(100, HOUR)
    for index, (time, equity, exposed) in enumerate(curve, start=1):
        drawdown = tracker.add(time, equity, exposed)
        assert tracker.result() == performance_of(curve[:index], 100, HOUR)
        assert drawdown == pytest.approx((1 - equity / max(100, *(e for _, e, _ in curve[:index]))) * 100)
