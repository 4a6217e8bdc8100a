from typing import Any

import pytest
from structlog.testing import capture_logs

from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import (
    DTO,
    EmaDTO,
    FairValueGapDTO,
    FillDTO,
    OpportunitySignalDTO,
    OrderDTO,
    OrderSide,
    OrderStatus,
    OrderType,
    ThreatAction,
    ThreatSignalDTO,
    TradePlanDTO,
)
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.portfolio import Ledger
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.fair_value_gap_detector import FairValueGapDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.context.volatility_assessor import VolatilityAssessor
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from backend.workers.execution.order_executor import OrderExecutor, OrderExecutorParams
from backend.workers.opportunity.dca_schedule_opportunity import DcaScheduleOpportunity
from backend.workers.opportunity.ema_cross_opportunity import EmaCrossOpportunity
from backend.workers.opportunity.fvg_reentry_opportunity import FvgReentryOpportunity
from backend.workers.planning.all_in_planner import AllInPlanner
from backend.workers.planning.dca_planner import DcaPlanner
from backend.workers.planning.position_sizer import PositionSizer
from backend.workers.threat.drawdown_threat import DrawdownThreat
from backend.workers.threat.volatility_threat import VolatilityThreat
from tests.helpers import START, Pipeline, simulated_account, tick, ticks_from_closes

# --- ledger and simulated broker ------------------------------------------------------------


def order(side: OrderSide, quantity: float, price: float) -> OrderDTO:
    return OrderDTO(asset="BTC/USD", side=side, quantity=quantity, reference_price=price, reason="test")


def test_simulated_fill_applies_slippage_and_fee_to_the_ledger():
    ledger = Ledger(10_000)
    broker = simulated_account(ledger, fee_rate=0.001, slippage_bps=10)
    fill = broker.submit(order(OrderSide.BUY, 0.1, 50_000), START)
    assert fill.price == pytest.approx(50_050)  # 10 bps against us
    assert fill.fee == pytest.approx(0.1 * 50_050 * 0.001)
    assert ledger.cash == pytest.approx(10_000 - 5_005 - 5.005)
    sell = broker.submit(order(OrderSide.SELL, 1.0, 60_000), START)  # more than held
    assert sell.quantity == pytest.approx(0.1)
    assert sell.price == pytest.approx(59_940)
    assert ledger.position("BTC/USD").qty == 0
    assert ledger.cash == pytest.approx(10_000 - 5_005 - 5.005 + 5_994 - 5.994)


def test_simulated_buy_is_cut_to_what_cash_affords_and_rejected_without_cash():
    ledger = Ledger(1_000)
    broker = simulated_account(ledger, fee_rate=0.01)
    fill = broker.submit(order(OrderSide.BUY, 1.0, 1_000), START)
    assert fill.quantity == pytest.approx(1_000 / 1_010)
    assert ledger.cash == pytest.approx(0, abs=1e-9)
    assert broker.submit(order(OrderSide.BUY, 1.0, 1_000), START) is None
    assert broker.submit(order(OrderSide.SELL, 5.0, 1_000), START).quantity == pytest.approx(1_000 / 1_010)
    assert broker.submit(order(OrderSide.SELL, 1.0, 1_000), START) is None


def test_ledger_tracks_average_cost_equity_and_max_drawdown():
    ledger = Ledger(1_000)
    for qty, price in [(1, 100), (1, 200)]:
        ledger.apply_fill(FillDTO(asset="A/B", side=OrderSide.BUY, quantity=qty, price=price, fee=1, timestamp=START))
    assert ledger.position("A/B").avg_entry_price == 150
    assert ledger.cash == 1_000 - 300 - 2
    for price in (200, 100, 250):  # equity 1098 (peak), 898, 1198
        ledger.record_closes("A/B", [price])
    summary = ledger.summary()
    assert summary.max_drawdown_pct == pytest.approx((1 - 898 / 1098) * 100)
    assert summary.final_equity == 1198 and summary.pnl == 198 and summary.trades == 2 and summary.fees_paid == 2
    assert summary.pnl_pct == pytest.approx(19.8)


def test_a_partial_sell_keeps_the_rest_at_its_entry_price_and_dust_closes_the_position():
    ledger = Ledger(1_000)
    ledger.apply_fill(FillDTO(asset="A/B", side=OrderSide.BUY, quantity=2, price=100, fee=0, timestamp=START))
    ledger.apply_fill(FillDTO(asset="A/B", side=OrderSide.SELL, quantity=0.5, price=120, fee=0.6, timestamp=START))
    assert ledger.position("A/B").qty == 1.5 and ledger.position("A/B").avg_entry_price == 100
    assert ledger.cash == pytest.approx(1_000 - 200 + 60 - 0.6)
    # Selling all but float dust closes the position instead of leaving a 1e-13 BTC remainder.
    ledger.apply_fill(FillDTO(asset="A/B", side=OrderSide.SELL, quantity=1.5 - 1e-13, price=120, fee=0,
                              timestamp=START))
    assert "A/B" not in ledger.positions and ledger.position("A/B").qty == 0
    assert ledger.summary().trades == 3


# --- opportunity, threat, planning, execution -----------------------------------------------


def ict_pipeline(**sizer) -> Pipeline:
    return Pipeline(
        [
            (EmaDetector, {"fast_period": 2, "slow_period": 3}),
            (MarketRegimeClassifier, {"volatility_window": 2, "trend_threshold_pct": 0.1, "high_volatility_pct": 50}),
            (FairValueGapDetector, {"min_gap_pct": 0, "swing_lookback": 1}),
            (FvgReentryOpportunity, {"allowed_regimes": ["trending_up", "ranging"], "stop_buffer_pct": 1}),
            (PositionSizer, {"risk_per_trade_pct": 1, "reward_risk_ratio": 2, **sizer}),
            (MarketOrderExecutor, {}),
        ],
        [OpportunitySignalDTO, TradePlanDTO, FillDTO],
    )


ICT_SETUP = [
    tick(0, 99, open=98, high=100, low=97),
    tick(1, 104, open=99, high=105, low=99),  # swing high 105 once confirmed
    tick(2, 102, open=104, high=103, low=101),
    tick(3, 108, open=102, high=109, low=106),  # breaks 105: bullish; gap 103-106
    tick(4, 110, open=108, high=111, low=107),
    tick(5, 107, open=110, high=110, low=105),  # back into the 103-106 gap -> entry at 107
]


def test_fvg_reentry_entry_is_sized_by_risk_and_filled():
    out = ict_pipeline(max_position_pct=100).feed(ICT_SETUP)
    assert all(OpportunitySignalDTO not in t for t in out[:5])
    signal = out[5][OpportunitySignalDTO]
    assert signal.side is OrderSide.BUY and signal.stop_price == pytest.approx(103 * 0.99)
    plan = out[5][TradePlanDTO]
    risk_per_unit = 107 - 103 * 0.99
    assert plan.quantity == pytest.approx(10_000 * 0.01 / risk_per_unit)  # 1 % of equity at risk
    assert plan.target_price == pytest.approx(107 + 2 * risk_per_unit)
    assert out[5][FillDTO].quantity == pytest.approx(plan.quantity)


def test_position_sizer_caps_notional_and_exits_at_the_target():
    pipeline = ict_pipeline(max_position_pct=10)
    out = pipeline.feed(ICT_SETUP)
    assert out[5][TradePlanDTO].quantity == pytest.approx(10_000 * 0.10 / 107)
    target = out[5][TradePlanDTO].target_price
    out = pipeline.feed([tick(6, target - 0.5), tick(7, target + 0.5)])
    assert TradePlanDTO not in out[6]
    assert out[7][TradePlanDTO].side is OrderSide.SELL and "target" in out[7][TradePlanDTO].reason
    assert pipeline.ledger.position("BTC/USD").qty == 0


def test_position_sizer_exits_at_the_stop():
    pipeline = ict_pipeline()
    pipeline.feed(ICT_SETUP)
    out = pipeline.feed([tick(6, 101)])  # below the 101.97 stop
    assert out[6][TradePlanDTO].side is OrderSide.SELL and "stop" in out[6][TradePlanDTO].reason


def test_no_entry_when_the_regime_is_not_allowed():
    pipeline = Pipeline(
        [
            (EmaDetector, {"fast_period": 2, "slow_period": 3}),
            (MarketRegimeClassifier, {"volatility_window": 2, "trend_threshold_pct": 0.1, "high_volatility_pct": 50}),
            (FairValueGapDetector, {"min_gap_pct": 0, "swing_lookback": 1}),
            (FvgReentryOpportunity, {"allowed_regimes": ["trending_down"]}),
        ],
        [OpportunitySignalDTO],
    )
    assert all(OpportunitySignalDTO not in t for t in pipeline.feed(ICT_SETUP))


def test_drawdown_threat_blocks_entries_then_forces_exit():
    pipeline = Pipeline(
        [
            (DcaScheduleOpportunity, {"interval_bars": 1}),
            (DrawdownThreat, {"block_entries_at_pct": 5, "exit_at_pct": 10}),
            (PositionSizer, {"risk_per_trade_pct": 100, "max_position_pct": 100, "default_stop_pct": 50}),
            (MarketOrderExecutor, {}),
        ],
        [ThreatSignalDTO, TradePlanDTO],
    )
    out = pipeline.feed(ticks_from_closes([100, 100, 93, 85]))
    assert out[0][TradePlanDTO].side is OrderSide.BUY  # all in at 100
    assert ThreatSignalDTO not in out[1]
    assert out[2][ThreatSignalDTO].action is ThreatAction.BLOCK_ENTRIES  # -7 %
    assert out[3][ThreatSignalDTO].action is ThreatAction.EXIT_POSITIONS  # -15 %
    assert out[3][TradePlanDTO].side is OrderSide.SELL
    out = pipeline.feed([tick(4, 86)])  # still 14 % under the peak: no new entry
    assert TradePlanDTO not in out[4]


def block_lines(logs: list[dict]) -> list[tuple]:
    return [(line["event"], line["worker"], line["reason"], line.get("blocked_since"), line["candle_time"])
            for line in logs if line["event"] in ("entries_blocked", "entries_unblocked")]


def test_the_drawdown_threat_says_when_it_blocks_and_clears_after_its_cooldown_while_flat():
    """A flat account never regains its peak: without a cool-down the block would last for ever."""
    pipeline = Pipeline(
        [
            (DcaScheduleOpportunity, {"interval_bars": 1}),
            (DrawdownThreat, {"block_entries_at_pct": 5, "exit_at_pct": 10, "cooldown_bars": 3}),
            (PositionSizer, {"risk_per_trade_pct": 100, "max_position_pct": 100, "default_stop_pct": 50}),
            (MarketOrderExecutor, {}),
        ],
        [ThreatSignalDTO, TradePlanDTO],
    )
    with capture_logs() as logs:
        out = pipeline.feed(ticks_from_closes([100, 100, 85, 86, 86, 86, 86, 86]))
    assert out[2][TradePlanDTO].side is OrderSide.SELL  # -15 %: out, flat from then on
    assert [i for i, t in enumerate(out) if ThreatSignalDTO in t] == [2, 3, 4]  # 3 bars, then cleared
    assert [i for i, t in enumerate(out) if TradePlanDTO in t and t[TradePlanDTO].side is OrderSide.BUY] == [0, 5]
    since, cleared = tick(2, 85).timestamp.isoformat(), tick(5, 86).timestamp.isoformat()
    assert block_lines(logs) == [
        ("entries_blocked", "drawdown_threat", "drawdown 15.00% from peak equity", None, since),
        ("entries_unblocked", "drawdown_threat",
         "cool-down of 3 bars over while flat: drawdown measured from here", since, cleared),
    ]


def test_the_volatility_threat_says_when_it_blocks_and_when_it_clears():
    pipeline = dca_pipeline()
    with capture_logs() as logs:
        out = pipeline.feed(ticks_from_closes([100, 100, 100, 130, 131, 131, 131, 131, 131, 131, 131, 131]))
    blocked = [i for i, t in enumerate(out) if ThreatSignalDTO in t]
    assert blocked and blocked[-1] < len(out) - 1, blocked
    lines = block_lines(logs)
    assert [line[0] for line in lines] == ["entries_blocked", "entries_unblocked"]
    assert lines[0][4] == lines[1][3] == tick(blocked[0], 0).timestamp.isoformat()
    assert lines[0][2].startswith("high volatility: ATR ")
    assert lines[1][2:] == ("volatility no longer high", lines[0][4], tick(blocked[-1] + 1, 0).timestamp.isoformat())


def dca_pipeline(**planner) -> Pipeline:
    return Pipeline(
        [
            (EmaDetector, {"fast_period": 2, "slow_period": 3}),
            (MarketRegimeClassifier, {"volatility_window": 2, "trend_threshold_pct": 0.1, "high_volatility_pct": 50}),
            (VolatilityAssessor, {"atr_period": 2, "low_atr_pct": 1, "high_atr_pct": 5}),
            (DcaScheduleOpportunity, {"interval_bars": 2}),
            (VolatilityThreat, {}),
            (DcaPlanner, {"quote_amount": 100, "dip_multiplier": 2, "take_profit_pct": 10, **planner}),
            (MarketOrderExecutor, {}),
        ],
        [OpportunitySignalDTO, ThreatSignalDTO, TradePlanDTO, FillDTO],
        fee_rate=0.01,
    )


def test_dca_buys_on_schedule_and_doubles_in_a_downtrend():
    pipeline = dca_pipeline()
    out = pipeline.feed(ticks_from_closes([100, 100, 99, 98, 97, 96]))
    buys = [(i, t[TradePlanDTO]) for i, t in enumerate(out) if TradePlanDTO in t]
    assert [i for i, _ in buys] == [1, 3, 5]  # every 2nd bar
    assert buys[0][1].quantity == pytest.approx(100 / 100)  # warming up: x1
    assert buys[2][1].quantity == pytest.approx(200 / 96)  # trending down: x2
    assert pipeline.ledger.fees_paid == pytest.approx((100 + 200 + 200) * 0.01, rel=1e-6)


def test_dca_takes_profit_on_the_whole_position():
    pipeline = dca_pipeline()
    pipeline.feed(ticks_from_closes([100, 100, 105]))
    out = pipeline.feed([tick(3, 110.5)])  # 10.5 % above the 100 average cost
    assert out[3][TradePlanDTO].side is OrderSide.SELL
    assert out[3][TradePlanDTO].quantity == pytest.approx(1.0)
    assert pipeline.ledger.position("BTC/USD").qty == 0


def test_dca_pauses_while_volatility_is_high():
    pipeline = dca_pipeline()
    out = pipeline.feed([tick(0, 100, high=104, low=96), tick(1, 100, high=104, low=96)])  # ATR 8 %
    assert out[1][ThreatSignalDTO].action is ThreatAction.BLOCK_ENTRIES
    assert OpportunitySignalDTO in out[1] and TradePlanDTO not in out[1]


# --- EMA crossover, all in or out -------------------------------------------------------------


def ema_cross_pipeline(fee_rate: float = 0.0, **planner: float) -> Pipeline:
    return Pipeline(
        [
            (EmaDetector, {"fast_period": 2, "slow_period": 3}),
            (EmaCrossOpportunity, {}),
            (DrawdownThreat, {"block_entries_at_pct": 50, "exit_at_pct": 60}),
            (AllInPlanner, planner),
            (MarketOrderExecutor, {}),
        ],
        [EmaDTO, OpportunitySignalDTO, TradePlanDTO, FillDTO],
        fee_rate=fee_rate,
    )


def test_ema_cross_buys_with_all_the_cash_on_a_cross_up_and_sells_everything_on_a_cross_down():
    pipeline = ema_cross_pipeline()
    closes = [10, 10, 10, 9, 8, 12, 14, 15, 11, 9, 8]
    out = pipeline.feed(ticks_from_closes(closes))
    signals = {i: t[OpportunitySignalDTO].side for i, t in enumerate(out) if OpportunitySignalDTO in t}
    # Each signal is a cross: fast below slow on the candle before, above on this one (or back).
    for i, side in signals.items():
        before, now = out[i - 1][EmaDTO], out[i][EmaDTO]
        assert (before.fast - before.slow) * (now.fast - now.slow) < 0
        assert side is (OrderSide.BUY if now.fast > now.slow else OrderSide.SELL)
    assert list(signals.values()) == [OrderSide.BUY, OrderSide.SELL]
    (buy_at, sell_at) = signals
    buy, sell = out[buy_at][FillDTO], out[sell_at][FillDTO]
    assert (buy.side, buy.price) == (OrderSide.BUY, closes[buy_at])
    assert buy.quantity * buy.price <= 10_000 and buy.quantity == pytest.approx(10_000 / closes[buy_at])
    assert (sell.side, sell.quantity, sell.price) == (OrderSide.SELL, buy.quantity, closes[sell_at])
    assert pipeline.ledger.cash == pytest.approx(10_000 * closes[sell_at] / closes[buy_at])
    assert pipeline.ledger.position("BTC/USD").qty == 0


def test_ema_cross_sees_no_cross_while_warming_up_or_across_a_hole():
    pipeline = ema_cross_pipeline()
    # Down then up, but the rise comes right after a hole: the EMAs reseed, so no cross is seen.
    out = pipeline.feed([*ticks_from_closes([10, 9, 8, 7]), tick(10, 20, missing_before=6), tick(11, 21)])
    assert all(OpportunitySignalDTO not in t for t in out)
    assert out[4][EmaDTO].slow is None


def test_all_in_buy_pays_the_fee_from_the_cash_and_never_takes_it_below_zero():
    pipeline = ema_cross_pipeline(fee_rate=0.0026)
    pipeline.feed(ticks_from_closes([10, 10, 10, 9, 8, 12.345678]))
    (fill,) = [t[FillDTO] for t in pipeline.recorder.ticks if FillDTO in t]
    assert fill.side is OrderSide.BUY and fill.quantity * fill.price * 1.0026 == pytest.approx(10_000)
    assert 0 <= pipeline.ledger.cash < 1e-6


def test_all_in_planner_leaves_a_signal_below_its_minimum_cash_alone():
    pipeline = ema_cross_pipeline(min_order_quote=20_000)
    out = pipeline.feed(ticks_from_closes([10, 10, 10, 9, 8, 12]))
    assert OpportunitySignalDTO in out[5] and TradePlanDTO not in out[5]


# --- order executor: limit entries, post-only, expiry, protection on the venue -----------------


class ScriptedPlansParams(WorkerParams):
    plans: dict[int, dict[str, Any]]  # tick index -> the TradePlanDTO's fields


class ScriptedPlans(IWorker):
    """A planner that plans what its params say on the ticks they name."""

    category = WorkerCategory.PLANNING
    Params = ScriptedPlansParams
    produces: tuple[type[DTO], ...] = (TradePlanDTO,)
    params: ScriptedPlansParams

    def __init__(self, params: ScriptedPlansParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self.ticks = 0

    def process(self, asset: str) -> None:
        fields = self.params.plans.get(self.ticks)
        self.ticks += 1
        if fields is not None:
            self.context.set_result_dto(asset, self.produces[0](**{"reason": "scripted", **fields}))


class ScriptedSignals(ScriptedPlans):
    """An opportunity that signals what its params say on the ticks they name."""

    category = WorkerCategory.OPPORTUNITY
    produces = (OpportunitySignalDTO,)


def executor_pipeline(plans: dict[int, dict[str, Any]], **executor: Any) -> Pipeline:
    return Pipeline([(ScriptedPlans, {"plans": plans}), (OrderExecutor, executor)], [TradePlanDTO, FillDTO],
                    fee_rate=0.001)


LIMIT_BUY = {"side": OrderSide.BUY, "quantity": 1.0, "limit_price": 99.0}


def test_the_order_executor_rests_a_post_only_limit_buy_good_for_n_candles():
    pipeline = executor_pipeline({0: LIMIT_BUY}, post_only=True, cancel_after_candles=3)
    with capture_logs() as logs:
        out = pipeline.feed([tick(0, 100)])
    assert FillDTO not in out[0]
    [view] = pipeline.account.open_orders("BTC/USD")
    assert (view.order_type, view.limit_price, view.status, view.quantity) == (
        OrderType.LIMIT, 99.0, OrderStatus.OPEN, 1.0)
    [opened] = [line for line in logs if line["event"] == "order_opened"]
    assert opened["limit_price"] == 99.0 and opened["order_type"] == "limit"
    assert pipeline.account.snapshot().reserved_cash == pytest.approx(99 * 1.001)


@pytest.mark.parametrize(("dip_on", "filled"), [(3, True), (4, False)], ids=["nth_candle_fills", "then_expired"])
def test_an_unfilled_limit_entry_expires_after_cancel_after_candles(dip_on, filled):
    """Good for the 3 candles after the one it was decided on: a dip to 98 on the third fills it at
    the limit (maker fee), on the fourth it has expired already."""
    pipeline = executor_pipeline({0: LIMIT_BUY}, post_only=True, cancel_after_candles=3)
    candles = [tick(index, 100, low=98 if index == dip_on else 100) for index in range(6)]
    with capture_logs() as logs:
        pipeline.feed(candles)
    lines = [line for line in logs if line["event"].startswith("order_")]
    events = [line["event"] for line in lines]
    assert pipeline.account.open_orders() == []
    if filled:  # booked by the account as the candle opens its tick (no FillDTO of the executor's)
        assert events == ["order_opened", "order_filled"]
        assert lines[1]["candle_time"] == tick(3, 0).timestamp.isoformat()
        assert (lines[1]["price"], lines[1]["fee"]) == (99.0, pytest.approx(99 * 0.001))
        assert pipeline.ledger.position("BTC/USD").qty == 1.0
    else:
        assert events == ["order_opened", "order_expired"]
        assert pipeline.ledger.position("BTC/USD").qty == 0 and pipeline.ledger.state.cash == 10_000


def test_a_post_only_limit_that_would_execute_at_once_is_rejected_and_without_post_only_fills_as_taker():
    above = {**LIMIT_BUY, "limit_price": 101.0}
    with capture_logs() as logs:
        rejected = executor_pipeline({0: above}, post_only=True)
        out = rejected.feed([tick(0, 100)])
    assert FillDTO not in out[0] and rejected.account.open_orders() == []
    [line] = [line for line in logs if line["event"] == "order_rejected"]
    assert "post only" in line["reason"]
    assert rejected.ledger.position("BTC/USD").qty == 0
    taker = executor_pipeline({0: above})
    fill = taker.feed([tick(0, 100)])[0][FillDTO]
    assert (fill.price, fill.quantity) == (100.0, 1.0)  # at the reference price, at once


PROTECTED_BUY = {**LIMIT_BUY, "stop_price": 95.0, "target_price": 107.0}


@pytest.mark.parametrize(("later", "exit_price", "reason"), [
    (tick(2, 100, high=108), 107.0, "protective take-profit at 107.00"),
    (tick(2, 100, low=94), 95.0, "protective stop at 95.00"),
    (tick(2, 93, open=93), 93.0, "protective stop at 95.00"),  # opens through the stop: at the open
], ids=["take_profit", "stop", "gap_through_the_stop"])
def test_the_entry_fill_places_a_protective_stop_and_take_profit_and_one_of_them_sells(later, exit_price, reason):
    pipeline = executor_pipeline({0: PROTECTED_BUY}, post_only=True, cancel_after_candles=3)
    pipeline.feed([tick(0, 100), tick(1, 100, low=98)])  # the entry fills at 99 on candle 1
    assert pipeline.ledger.position("BTC/USD").qty == 1.0
    protective = {view.order_type: view for view in pipeline.account.open_orders("BTC/USD")}
    assert all(view.protective and view.quantity == 1.0 for view in protective.values())
    assert {kind: view.trigger_price for kind, view in protective.items()} == {
        OrderType.STOP_LOSS: 95.0, OrderType.TAKE_PROFIT: 107.0}
    with capture_logs() as logs:
        pipeline.feed([later, tick(3, 100, low=90, high=110)])
    [sold] = [line for line in logs if line["event"] == "order_filled"]
    assert (sold["side"], sold["price"], sold["reason"]) == ("sell", exit_price, reason)
    assert pipeline.ledger.position("BTC/USD").qty == 0 and pipeline.account.open_orders() == []


def test_a_market_plan_through_the_order_executor_is_protected_at_once():
    pipeline = executor_pipeline({0: {"side": OrderSide.BUY, "quantity": 1.0, "stop_price": 95.0}})
    fill = pipeline.feed([tick(0, 100)])[0][FillDTO]
    assert (fill.price, fill.quantity) == (100.0, 1.0)
    [stop] = pipeline.account.open_orders("BTC/USD")
    assert (stop.order_type, stop.trigger_price, stop.protective) == (OrderType.STOP_LOSS, 95.0, True)


def test_the_order_executor_without_protect_leaves_the_plans_exits_to_the_planner():
    pipeline = executor_pipeline({0: {"side": OrderSide.BUY, "quantity": 1.0, "stop_price": 95.0}}, protect=False)
    pipeline.feed([tick(0, 100)])
    assert pipeline.account.open_orders() == []


def test_cancel_after_candles_needs_the_runs_timeframe():
    services = WorkerServices(TradingContextProvider(), simulated_account(Ledger(100)), OhlcvProvider(0))
    with pytest.raises(ValueError, match="timeframe"):
        OrderExecutor(OrderExecutorParams(cancel_after_candles=2), services)


def test_position_sizer_with_venue_exits_enters_at_the_signals_limit_and_leaves_the_stop_to_the_venue():
    signal = {"side": OrderSide.BUY, "stop_price": 95.0, "entry_price": 99.0}
    pipeline = Pipeline([
        (ScriptedSignals, {"plans": {0: signal, 1: signal}}),
        (PositionSizer, {"risk_per_trade_pct": 1, "reward_risk_ratio": 2, "entry": "limit", "exits": "venue"}),
        (OrderExecutor, {"post_only": True, "cancel_after_candles": 3}),
    ], [TradePlanDTO])
    out = pipeline.feed([tick(0, 100), tick(1, 100)])
    plan = out[0][TradePlanDTO]
    assert (plan.limit_price, plan.stop_price, plan.target_price) == (99.0, 95.0, 107.0)
    assert plan.quantity == pytest.approx(10_000 * 0.01 / 4)  # 1 % of equity from the limit to the stop
    assert TradePlanDTO not in out[1]  # the entry still waits for its price: no second one
    with capture_logs() as logs:
        out = pipeline.feed([tick(2, 100, low=98), tick(3, 94, open=100, low=94), tick(4, 94)])
    assert all(TradePlanDTO not in ticked for ticked in out[2:])  # the sizer never sells at the stop itself
    sells = [line for line in logs if line["event"] == "order_filled" and line["side"] == "sell"]
    assert [(line["price"], line["reason"]) for line in sells] == [(95.0, "protective stop at 95.00")]
    assert pipeline.ledger.position("BTC/USD").qty == 0


def test_the_position_sizer_at_market_ignores_the_signals_entry_price():
    signal = {"side": OrderSide.BUY, "stop_price": 95.0, "entry_price": 99.0}
    pipeline = Pipeline([(ScriptedSignals, {"plans": {0: signal}}), (PositionSizer, {}), (MarketOrderExecutor, {})],
                        [TradePlanDTO, FillDTO])
    out = pipeline.feed([tick(0, 100)])
    assert out[0][TradePlanDTO].limit_price is None and out[0][FillDTO].price == 100.0


def test_fvg_limit_entry_signals_on_the_candle_that_forms_the_gap_with_its_top_as_the_price():
    pipeline = Pipeline([
        (EmaDetector, {"fast_period": 2, "slow_period": 3}),
        (MarketRegimeClassifier, {"volatility_window": 2, "trend_threshold_pct": 0.1, "high_volatility_pct": 50}),
        (FairValueGapDetector, {"min_gap_pct": 0, "swing_lookback": 1}),
        (FvgReentryOpportunity, {"allowed_regimes": ["trending_up", "ranging"], "stop_buffer_pct": 1,
                                 "entry": "limit"}),
    ], [FairValueGapDTO, OpportunitySignalDTO])
    out = pipeline.feed(ICT_SETUP)
    signalled = [index for index, ticked in enumerate(out) if OpportunitySignalDTO in ticked]
    assert signalled
    for index in signalled:
        gap = out[index][FairValueGapDTO].bullish_gap
        signal = out[index][OpportunitySignalDTO]
        assert gap.formed_at == tick(index, 0).timestamp  # formed on this candle
        assert signal.entry_price == gap.top and signal.stop_price == pytest.approx(gap.bottom * 0.99)
    assert 5 not in signalled  # the close back in the gap is no signal: the resting limit is the re-entry


def test_dca_limit_entry_plans_under_the_close():
    pipeline = dca_pipeline(entry="limit", limit_offset_pct=1)
    out = pipeline.feed(ticks_from_closes([100, 100]))
    plan = out[1][TradePlanDTO]
    assert plan.limit_price == pytest.approx(99) and plan.quantity == pytest.approx(100 / 99)
