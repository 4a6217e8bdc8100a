import pytest

from backend.dtos import EmaDTO, FairValueGapDTO, MarketRegimeDTO, MarketStructure, Regime, RiskLevel, VolatilityDTO
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.fair_value_gap_detector import FairValueGapDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.context.volatility_assessor import VolatilityAssessor
from tests.helpers import Pipeline, tick, ticks_from_closes


def test_ema_detector_reports_both_emas_once_warmed_up():
    pipeline = Pipeline([(EmaDetector, {"fast_period": 2, "slow_period": 3})], [EmaDTO])
    emas = [t[EmaDTO] for t in pipeline.feed(ticks_from_closes([10, 20, 30, 40]))]
    assert [e.fast for e in emas] == [None, 15.0, 25.0, 35.0]  # alpha 2/3
    assert [e.slow for e in emas] == [None, None, 20.0, 30.0]  # alpha 1/2
    assert not emas[1].is_ready and emas[2].is_ready
    assert emas[3].spread_pct == pytest.approx((35 - 30) / 30 * 100)


def regime_pipeline(**params) -> Pipeline:
    return Pipeline(
        [(EmaDetector, {"fast_period": 2, "slow_period": 3}), (MarketRegimeClassifier, params)],
        [MarketRegimeDTO],
    )


def regimes(closes, **params) -> list[Regime]:
    return [t[MarketRegimeDTO].regime for t in regime_pipeline(**params).feed(ticks_from_closes(closes))]


def test_regime_warms_up_then_trends_up_on_a_steady_rise():
    result = regimes([100, 101, 102, 103, 104], volatility_window=2, trend_threshold_pct=0.1, high_volatility_pct=5)
    assert result[:2] == [Regime.WARMING_UP] * 2
    assert result[-1] is Regime.TRENDING_UP


def test_regime_trends_down_on_a_steady_fall():
    result = regimes([104, 103, 102, 101, 100], volatility_window=2, trend_threshold_pct=0.1, high_volatility_pct=5)
    assert result[-1] is Regime.TRENDING_DOWN


def test_regime_is_ranging_when_the_spread_is_under_the_threshold():
    result = regimes([100, 100.1, 100, 100.1, 100], volatility_window=2, trend_threshold_pct=0.5, high_volatility_pct=5)
    assert result[-1] is Regime.RANGING


def test_regime_is_volatile_when_returns_swing_more_than_the_limit():
    result = regimes([100, 110, 99, 112, 98], volatility_window=2, trend_threshold_pct=0.1, high_volatility_pct=5)
    assert result[-1] is Regime.VOLATILE
    dto = regime_pipeline(volatility_window=2, high_volatility_pct=5).feed(ticks_from_closes([100, 110, 99]))[-1]
    assert dto[MarketRegimeDTO].volatility_pct == pytest.approx(14.1421356)


def test_volatility_assessor_buckets_atr_percent():
    pipeline = Pipeline(
        [(VolatilityAssessor, {"atr_period": 2, "low_atr_pct": 1, "high_atr_pct": 3})], [VolatilityDTO]
    )
    out = pipeline.feed([
        tick(0, 100, high=100.5, low=99.5),  # TR 1
        tick(1, 100, high=100.5, low=99.5),  # TR 1 -> ATR 1 = 1 %
        tick(2, 100, high=102.5, low=97.5),  # TR 5 -> ATR 3 = 3 %
    ])
    assert out[0][VolatilityDTO].risk_level is RiskLevel.WARMING_UP
    assert out[1][VolatilityDTO].atr == pytest.approx(1.0)
    assert out[1][VolatilityDTO].risk_level is RiskLevel.LOW
    assert out[2][VolatilityDTO].atr_pct == pytest.approx(3.0)
    assert out[2][VolatilityDTO].risk_level is RiskLevel.HIGH


def fvg_states(ticks, **params) -> list[FairValueGapDTO]:
    pipeline = Pipeline([(FairValueGapDetector, {"min_gap_pct": 0, "swing_lookback": 1, **params})], [FairValueGapDTO])
    return [t[FairValueGapDTO] for t in pipeline.feed(ticks)]


def test_bullish_gap_forms_is_re_entered_then_filled():
    states = fvg_states([
        tick(0, 97, open=96, high=100, low=95),
        tick(1, 105, open=99, high=106, low=99),
        tick(2, 108, open=105, high=110, low=103),  # low 103 > high 100 two candles back
        tick(3, 104, open=107, high=107, low=101.5),  # back into 100-103, closes above 100
        tick(4, 99.5, open=104, high=104, low=99),  # trades through 100: filled
    ])
    assert states[1].bullish_gap is None
    gap = states[2].bullish_gap
    assert (gap.bottom, gap.top) == (100, 103) and not states[2].price_in_bullish_gap
    assert states[3].price_in_bullish_gap and states[3].bullish_gap == gap
    assert states[4].bullish_gap is None and not states[4].price_in_bullish_gap


def test_bearish_gap_forms_when_price_gaps_down():
    states = fvg_states([
        tick(0, 101, open=102, high=103, low=100),
        tick(1, 96, open=101, high=101, low=95),
        tick(2, 94, open=96, high=97, low=93),  # high 97 < low 100 two candles back
    ])
    gap = states[2].bearish_gap
    assert (gap.bottom, gap.top) == (97, 100)


def test_gaps_smaller_than_min_gap_pct_are_ignored():
    ticks = [tick(0, 99, high=100, low=98), tick(1, 100.5, high=101, low=99), tick(2, 100.6, high=101, low=100.05)]
    assert fvg_states(ticks, min_gap_pct=0.1)[2].bullish_gap is None
    assert fvg_states(ticks, min_gap_pct=0.01)[2].bullish_gap is not None


def test_break_above_a_confirmed_swing_high_turns_structure_bullish():
    states = fvg_states([
        tick(0, 99, high=100, low=98),
        tick(1, 104, high=105, low=99),  # swing high 105 once the next candle is lower
        tick(2, 101, high=102, low=97),
        tick(3, 100, high=101, low=96),
        tick(4, 106, high=107, low=100),  # close 106 > 105
    ])
    assert states[2].last_swing_high == 105
    assert states[3].structure is MarketStructure.NEUTRAL
    assert states[4].structure is MarketStructure.BULLISH


def test_break_below_a_confirmed_swing_low_turns_structure_bearish():
    states = fvg_states([
        tick(0, 101, high=102, low=100),
        tick(1, 96, high=101, low=95),  # swing low 95
        tick(2, 98, high=99, low=96),
        tick(3, 94, high=97, low=93),  # close 94 < 95
    ])
    assert states[2].last_swing_low == 95
    assert states[3].structure is MarketStructure.BEARISH


# --- after a hole in the data (a tick with missing_before > 0) ------------------------------


def test_ema_detector_reseeds_after_a_gap():
    pipeline = Pipeline([(EmaDetector, {"fast_period": 2, "slow_period": 3})], [EmaDTO])
    ticks = [*ticks_from_closes([10, 20, 30, 40]), tick(6, 100, missing_before=2), tick(7, 110), tick(8, 120)]
    emas = [t[EmaDTO] for t in pipeline.feed(ticks)]
    assert emas[3].is_ready
    assert (emas[4].fast, emas[4].slow) == (None, None)  # warming up again, not blended across the hole
    assert (emas[5].fast, emas[5].slow) == (105.0, None)  # seeded from the closes after the hole
    assert emas[6].slow == 110.0


def test_volatility_assessor_reseeds_its_atr_after_a_gap():
    pipeline = Pipeline(
        [(VolatilityAssessor, {"atr_period": 2, "low_atr_pct": 1, "high_atr_pct": 3})], [VolatilityDTO]
    )
    out = pipeline.feed([
        tick(0, 100, high=100.5, low=99.5),
        tick(1, 100, high=100.5, low=99.5),  # ATR 1
        tick(5, 120, high=120.5, low=119.5, missing_before=3),  # across the hole TR would be 20.5
        tick(6, 120, high=121, low=119),  # TR 2
    ])
    assert out[1][VolatilityDTO].atr == pytest.approx(1.0)
    assert out[2][VolatilityDTO].risk_level is RiskLevel.WARMING_UP and out[2][VolatilityDTO].atr is None
    assert out[3][VolatilityDTO].atr == pytest.approx(1.5)  # (1 + 2) / 2: only candles after the hole


def test_regime_volatility_is_not_measured_across_a_gap():
    pipeline = regime_pipeline(volatility_window=2, high_volatility_pct=5)
    out = pipeline.feed([
        *ticks_from_closes([100, 110, 99]),
        tick(4, 200, missing_before=1),  # a 100 % "return" across the hole must not count
        tick(5, 210),
        tick(6, 199.5),
    ])
    volatility = [t[MarketRegimeDTO].volatility_pct for t in out]
    assert volatility[2] == pytest.approx(14.1421356)
    assert volatility[3] is None and volatility[4] is None
    assert out[4][MarketRegimeDTO].regime is Regime.WARMING_UP
    assert volatility[5] == pytest.approx(7.0710678)  # returns +5 %, -5 % after the hole only


def test_no_fair_value_gap_is_built_across_a_hole():
    states = fvg_states([
        tick(0, 97, open=96, high=100, low=95),
        tick(1, 105, open=99, high=106, low=99),
        tick(3, 108, open=105, high=110, low=103, missing_before=1),  # low 103 > high 100, but across the hole
        tick(4, 109, open=108, high=110, low=107),  # low 107 > high 106 of candle 1, before the hole
    ])
    assert states[2].bullish_gap is None and states[3].bullish_gap is None


def test_a_hole_forgets_open_gaps_and_structure():
    states = fvg_states([
        tick(0, 97, open=96, high=100, low=95),
        tick(1, 105, open=99, high=106, low=99),
        tick(2, 108, open=105, high=110, low=103),  # bullish gap 100-103
        tick(3, 107, open=108, high=109, low=104),  # swing high 110 confirmed
        tick(4, 111, open=107, high=112, low=106),  # close above 110: bullish
        tick(8, 111, open=111, high=112, low=110, missing_before=3),
    ])
    assert states[4].bullish_gap is not None and states[4].structure is MarketStructure.BULLISH
    after = states[5]
    assert after.bullish_gap is None and after.structure is MarketStructure.NEUTRAL
    assert after.last_swing_high is None and after.last_swing_low is None
