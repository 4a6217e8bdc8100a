import math

import pytest

from backend.workers.indicators import Ema, ReturnVolatility, WilderAtr


def test_ema_is_seeded_with_the_simple_average_then_smoothed():
    ema = Ema(3)
    assert [ema.update(x) for x in [1, 2, 3, 4, 5]] == [None, None, 2.0, 3.0, 4.0]


def test_ema_of_period_one_follows_the_input():
    ema = Ema(1)
    assert [ema.update(x) for x in [7, 3, 9]] == [7, 3, 9]


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
