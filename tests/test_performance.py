"""backend.performance against figures worked out by hand from the definitions."""

import math
import statistics
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pytest

from backend.dtos import FillDTO, OrderSide
from backend.dtos.account import DUST_QUANTITY
from backend.equity_curve import EquityLine, deepest_drawdown, drawdown_curve, drawdown_pct
from backend.interfaces.candle_columns import CandleColumns
from backend.performance import PerformanceTracker, performance_of
from backend.trade_stats import TradeGroup, TradeStats, TradeStatsTracker, trade_stats_of
from services.research.runs import PerformanceRecorder

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


def fill(asset: str, side: str, quantity: float, price: float, fee: float, at: datetime) -> FillDTO:
    return FillDTO(asset=asset, side=OrderSide(side), quantity=quantity, price=price, fee=fee, timestamp=at)


FEB = datetime(2024, 2, 1, tzinfo=UTC)
HAND_MADE_FILLS = [
    fill("BTC/USD", "buy", 1, 100, 1, T0),  # trip 1: -101 ...
    fill("ETH/USD", "buy", 2, 50, 1, T0 + timedelta(hours=1)),  # trip 2: -101 ...
    fill("BTC/USD", "sell", 0.5, 120, 0.5, T0 + timedelta(hours=2)),  # ... +59.5 (partial exit) ...
    fill("ETH/USD", "sell", 2, 45, 1, T0 + timedelta(hours=3)),  # ... +89: -12, held 2 h, January
    fill("BTC/USD", "sell", 0.5, 130, 0.5, T0 + timedelta(hours=4)),  # ... +64.5: +23, held 4 h, January
    fill("BTC/USD", "buy", 1, 100, 0, FEB - timedelta(hours=2)),  # trip 3: flat, held 3 h, ends in February
    fill("BTC/USD", "sell", 1, 100, 0, FEB + timedelta(hours=1)),
    fill("BTC/USD", "buy", 1, 100, 0.2, FEB + timedelta(days=1)),  # trip 4: +9.6, held 10 h
    fill("BTC/USD", "sell", 1, 110, 0.2, FEB + timedelta(days=1, hours=10)),
    fill("ETH/USD", "buy", 1, 40, 0.1, FEB + timedelta(days=2)),  # still open at the end: no round trip
]


def test_trade_statistics_of_hand_made_fills():
    stats = trade_stats_of(HAND_MADE_FILLS)
    assert (stats.round_trips, stats.wins, stats.losses, stats.open_round_trips) == (4, 2, 1, 1)
    assert stats.win_rate_pct == pytest.approx(50)
    assert stats.average_win == pytest.approx((23 + 9.6) / 2)
    assert stats.average_loss == pytest.approx(-12)
    assert stats.profit_factor == pytest.approx(32.6 / 12)
    assert stats.expectancy == pytest.approx((23 - 12 + 0 + 9.6) / 4)
    assert (stats.best_trade, stats.worst_trade) == (pytest.approx(23), pytest.approx(-12))
    assert stats.average_holding_hours == pytest.approx((4 + 2 + 3 + 10) / 4)
    assert stats.per_asset == {
        "BTC/USD": TradeGroup(3, 2, 0, pytest.approx(200 / 3), pytest.approx(32.6)),
        "ETH/USD": TradeGroup(1, 0, 1, 0.0, pytest.approx(-12)),
    }
    assert stats.per_month == {
        "2024-01": TradeGroup(2, 1, 1, 50.0, pytest.approx(11)),
        "2024-02": TradeGroup(2, 1, 0, 50.0, pytest.approx(9.6)),
    }


def test_a_round_trip_ends_where_the_ledger_closes_the_position_at_the_dust_quantity():
    """Flat again below DUST_QUANTITY, as the ledger has it: 0.1 + 0.2 bought and 0.3 sold leaves a
    positive float residue, a closed trip; a remainder ten times DUST_QUANTITY is still held."""
    closed = trade_stats_of([fill("BTC/USD", "buy", 0.1, 100, 0, T0), fill("BTC/USD", "buy", 0.2, 100, 0, T0),
                             fill("BTC/USD", "sell", 0.3, 110, 0, T0 + timedelta(hours=1))])
    assert (closed.round_trips, closed.open_round_trips, closed.wins) == (1, 0, 1)
    assert closed.best_trade == pytest.approx(3)
    still_open = trade_stats_of([fill("BTC/USD", "buy", 0.3, 100, 0, T0),
                                 fill("BTC/USD", "sell", 0.3 - 10 * DUST_QUANTITY, 110, 0, T0 + timedelta(hours=1))])
    assert (still_open.round_trips, still_open.open_round_trips) == (0, 1)


def test_trade_statistics_without_losses_or_trips_leave_undefined_figures_out():
    assert trade_stats_of([]) == TradeStats()
    winner = trade_stats_of(HAND_MADE_FILLS[7:9])
    assert winner.round_trips == 1 and winner.profit_factor is None and winner.average_loss is None
    assert winner.expectancy == winner.best_trade == winner.worst_trade == pytest.approx(9.6)


def test_reading_trade_statistics_midway_changes_nothing():
    tracker = TradeStatsTracker()
    for index, each in enumerate(HAND_MADE_FILLS, start=1):
        tracker.add(each)
        assert tracker.result() == trade_stats_of(HAND_MADE_FILLS[:index])


def test_the_drawdown_is_one_formula_whose_scalar_and_vector_forms_agree_to_the_float():
    """The ledger, the drawdown threat's gate, the metrics and the status server all use it: a
    columnar replay's bulk step must give the very floats of its ticks."""
    random = np.random.default_rng(3)
    equities = 10_000 * np.cumprod(1 + random.normal(0, 0.02, 5_000))
    equities[100:110] = 0.0  # an account wiped out, then refilled
    peak, one_by_one = 9_000.0, []
    for equity in equities.tolist():
        one_by_one.append(drawdown_pct(equity, peak))
        peak = max(peak, equity)
    at_once, last_peak = drawdown_curve(equities, 9_000.0)
    assert at_once.tolist() == one_by_one and last_peak == peak
    assert deepest_drawdown(0.0, 1.0, equities.tolist(), 9_000.0, 0.0) == (peak, max(one_by_one))
    assert min(one_by_one) == 0.0 and max(one_by_one) == 100.0
    assert drawdown_pct(0.0, 0.0) == 0.0 and drawdown_curve(np.empty(0), 5.0)[1] == 5.0
    # A top of zero (an account worth nothing since its start): no drawdown, in every form.
    assert drawdown_curve(np.zeros(3), 0.0)[0].tolist() == [0.0] * 3
    assert deepest_drawdown(0.0, 1.0, [0.0] * 3, 0.0, 0.0) == (0.0, 0.0)


def test_points_added_in_bulk_give_the_floats_added_one_by_one():
    """add_many (a columnar replay's quiet stretch, one `exposed` for all its points) against add
    per point: random equities in uneven stretches, some points sharing a time (one period), an
    account at zero for a while."""
    random = np.random.default_rng(11)
    equities = (10_000 * np.cumprod(1 + random.normal(0, 0.01, 3_000))).tolist()
    equities[1_000:1_010] = [0.0] * 10
    times = [index // 3 if 500 <= index < 600 else index for index in range(len(equities))]
    bounds = [0, *sorted(random.choice(range(1, len(equities)), 60, replace=False).tolist()), len(equities)]
    stretches = [(range(start, stop), bool(random.integers(0, 2))) for start, stop in pairwise(bounds)]
    one_by_one, in_bulk = PerformanceTracker(10_000, HOUR), PerformanceTracker(10_000, HOUR)
    for rows, exposed in stretches:
        for row in rows:
            one_by_one.add(times[row], equities[row], exposed)  # type: ignore[arg-type]
        in_bulk.add_many(times[rows.start:rows.stop], equities[rows.start:rows.stop], exposed)
        assert in_bulk.result() == one_by_one.result()
    # All at once as arrays, each point with its own `exposed` (a sweep's block), and in two halves.
    each_exposed = [exposed for rows, exposed in stretches for _ in rows]
    for cuts in ([0, len(times)], [0, 1_234, len(times)]):
        at_once = PerformanceTracker(10_000, HOUR)
        for start, stop in pairwise(cuts):
            at_once.add_many(np.array(times[start:stop]), np.array(equities[start:stop]),
                             np.array(each_exposed[start:stop]))
        assert at_once.result() == one_by_one.result()
    assert one_by_one.result().sortino is not None and one_by_one.result().max_drawdown_pct == 100.0


def test_a_long_curve_added_at_once_gives_the_floats_of_python_point_by_point():
    """100,000 points in one call (a sweep's recorder adds blocks of thousands), each with its own
    `exposed`: the same figures as point by point (Welford's mean in order, the downside's squares
    by Python's `**`, added in order)."""
    random = np.random.default_rng(5)
    equities = 10_000 * np.cumprod(1 + random.normal(0, 0.01, 100_000))
    exposed = random.integers(0, 2, len(equities)).astype(bool)
    one_by_one, at_once = PerformanceTracker(10_000, HOUR), PerformanceTracker(10_000, HOUR)
    for time, (equity, held) in enumerate(zip(equities.tolist(), exposed.tolist(), strict=True)):
        one_by_one.add(time, equity, held)
    at_once.add_many(np.arange(len(equities)), equities, exposed)
    assert at_once.result() == one_by_one.result()


def test_a_sweeps_recorder_given_equity_lines_records_the_floats_of_the_equities_themselves():
    """PerformanceRecorder told of stretches of two blocks, each stretch's equities given as the
    line the account's holding draws over its closes or as the equities themselves (a tick, or an
    account holding other assets), some rows left out, its points added every 25 (flushes inside a
    block and a stretch): the figures and the daily equities of the same points added one by one,
    each equity as `Ledger.equity()` adds it up (cash + (0.0 + quantity * close))."""
    random = np.random.default_rng(3)
    start = int(datetime(2023, 1, 1, 20, tzinfo=UTC).timestamp())
    blocks = []
    for first in (0, 60):
        closes = 20_000 * np.cumprod(1 + random.normal(0, 0.01, 60))
        blocks.append(CandleColumns("BTC/USD", start + (first + np.arange(60)) * HOUR, closes, closes, closes, closes,
                                    np.ones(60), np.zeros(60, dtype=np.int64)))
    recorder = PerformanceRecorder(10_000, "1h")
    recorder.FLUSH_POINTS = 25
    one_by_one, daily = PerformanceTracker(10_000, HOUR), {}
    bounds = [0, *sorted(random.choice(range(1, 60), 12, replace=False).tolist()), 60]
    # Rows the run did not process (candles it had processed before a restart, say): a stretch
    # inside the first block, its end, and the second's start up to the same row.
    left_out = ({5, *range(9, 13)}, set(range(9)))
    for block, skipped in zip(blocks, left_out, strict=True):
        for index, (low, high) in enumerate(pairwise(bounds)):
            if index in skipped:
                continue
            cash, quantity = float(random.uniform(0, 5_000)), float(random.choice([0.0, random.uniform(0, 0.5)]))
            equities = [cash + (0.0 + quantity * close) for close in block.closes[low:high].tolist()]
            account = SimpleNamespace(ledger=SimpleNamespace(positions={"BTC/USD": quantity} if quantity else {}))
            told = EquityLine(cash, quantity) if random.integers(0, 2) else equities
            recorder.closed(block, range(low, high), told, account)  # type: ignore[arg-type]
            for time, equity in zip(block.open_times[low:high].tolist(), equities, strict=True):
                one_by_one.add(time, equity, bool(quantity))
                daily[datetime.fromtimestamp(time, UTC).date().isoformat()] = equity
    performance, days = recorder.figures()
    assert performance == one_by_one.result() and 0 < performance.periods < 120
    assert days == tuple(daily.items()) and len(days) >= 3
