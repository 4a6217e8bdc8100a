import math

import numpy as np
import pytest

from backend.workers.indicators import Ema, ReturnVolatility, WilderAtr


def test_ema_is_seeded_with_the_simple_average_then_smoothed():
    ema = Ema(3)
    assert [ema.update(x) for x in [1, 2, 3, 4, 5]] == [None, None, 2.0, 3.0, 4.0]


def test_ema_of_period_one_follows_the_input():
    ema = Ema(1)
    assert [ema.update(x) for x in [7, 3, 9]] == [7, 3, 9]


@pytest.mark.parametrize("period", [1, 2, 26])
@pytest.mark.parametrize("cuts", [[], [1], [10, 11], [25, 26, 27], [3, 50, 51, 200]], ids=str)
def test_ema_update_many_is_update_row_by_row_to_the_float(period, cuts):
    """Across the seed and any cut into calls (the state carries over): the same floats and the
    same state as one update per value."""
    values = (100 * np.exp(np.cumsum(np.random.default_rng(period).normal(0, 0.01, 300)))).tolist()
    one_by_one, in_calls = Ema(period), Ema(period)
    expected = [one_by_one.update(x) for x in values]
    got: list[float | None] = []
    for start, stop in zip([0, *cuts], [*cuts, len(values)], strict=True):
        got += in_calls.update_many(values[start:stop])
    assert got == expected and expected[period - 1] is not None and expected[:period - 1] == [None] * (period - 1)
    assert vars(in_calls) == vars(one_by_one)


def test_wilder_atr_uses_true_range_across_the_previous_close():
    atr = WilderAtr(3)
    values = [atr.update(high, low, close) for high, low, close in [(10, 8, 9), (11, 9, 10), (12, 9, 11), (13, 10, 12)]]
    # true ranges 2, 2, 3 -> seed 7/3; then TR 3 -> (7/3 * 2 + 3) / 3 = 23/9
    assert values[:2] == [None, None]
    assert values[2] == pytest.approx(7 / 3)
    assert values[3] == pytest.approx(23 / 9)


def test_wilder_atr_counts_a_gap_from_the_previous_close():
    atr = WilderAtr(1)
    atr.update(101, 99, 100)
    assert atr.update(111, 109, 110) == 11  # |111 - 100| beats the range of 2


@pytest.mark.parametrize("cuts", [[], [1], [3, 4], [5, 200], [2, 3, 4, 5, 6]], ids=str)
def test_wilder_atr_update_many_is_update_row_by_row_to_the_float(cuts):
    """Across the seed and any cut into calls (the state carries over), the same floats and the
    same state as one update per candle, gaps beyond the candle's range included."""
    random = np.random.default_rng(11)
    closes = 100 * np.exp(np.cumsum(random.normal(0, 0.01, 400)))
    highs = closes * (1 + random.uniform(0, 0.02, 400))
    lows = closes * (1 - random.uniform(0, 0.02, 400))
    gaps = np.where(np.arange(400) % 7 == 0, 1.05, 1.0)  # every 7th candle 5 % up: TRs across a gap
    highs, lows, closes = highs * gaps, lows * gaps, closes * gaps
    one_by_one, in_calls = WilderAtr(5), WilderAtr(5)
    candles = zip(highs.tolist(), lows.tolist(), closes.tolist(), strict=True)
    expected = [one_by_one.update(high, low, close) for high, low, close in candles]
    got: list[float | None] = []
    for start, stop in zip([0, *cuts], [*cuts, len(closes)], strict=True):
        got += in_calls.update_many(highs[start:stop], lows[start:stop], closes[start:stop])
    assert got == expected and expected[3] is None and expected[4] is not None
    assert all(type(value) is float for value in got[4:])
    assert vars(in_calls) == vars(one_by_one)


def test_return_volatility_is_the_sample_stdev_of_returns_in_percent():
    vol = ReturnVolatility(2)
    assert vol.update(100) is None
    assert vol.update(110) is None
    assert vol.update(99) == pytest.approx(math.sqrt(0.02) * 100)  # returns +10 %, -10 %


def test_return_volatility_subtracts_the_mean_of_returns():
    vol = ReturnVolatility(3)
    for close in (100, 101, 103.02):
        vol.update(close)
    # returns +1 %, +2 %, +1 %: mean 4/3 %, sample variance ((1/3)² + (2/3)² + (1/3)²) / 2 = 1/3 (%²)
    assert vol.update(104.0502) == pytest.approx(math.sqrt(1 / 3), rel=1e-6)


def test_emas_of_one_period_in_one_state_share_a_blocks_values():
    """update_shared: the second EMA of a period, in the same state over the same rows, takes the
    first one's list and ends in its state; one in another state (mid-seed too) computes its own;
    every list is what update_many gives."""
    closes = [100 + (index * 7919 % 23) - index / 10 for index in range(120)]
    memo: dict = {}
    first, second = Ema(10), Ema(10)
    values = first.update_shared(closes[:60], memo, ("close", 0, 60))
    assert second.update_shared(closes[:60], memo, ("close", 0, 60)) is values
    assert (second.value, second._seed) == (first.value, first._seed)
    assert values == Ema(10).update_many(closes[:60])
    seeding = Ema(10)
    seeding.update_many(closes[100:104])  # 4 of its 10 seed values: another state, over the same rows
    own = seeding.update_shared(closes[:60], memo, ("close", 0, 60))
    reference = Ema(10)
    reference.update_many(closes[100:104])
    assert own is not values and own == reference.update_many(closes[:60]) and seeding.value == reference.value
    assert first.update_shared(closes[60:], memo, ("close", 60, 120)) == second.update_many(closes[60:])
