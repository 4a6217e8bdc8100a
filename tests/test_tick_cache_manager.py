import threading
from dataclasses import replace

import numpy as np

from backend.dtos import EmaDTO, FillDTO
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from backend.state import StateStore, StoreJournal
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from backend.workers.opportunity.dca_schedule_opportunity import DcaScheduleOpportunity
from backend.workers.opportunity.ema_cross_opportunity import EmaCrossOpportunity
from backend.workers.planning.all_in_planner import AllInPlanner
from backend.workers.planning.dca_planner import DcaPlanner
from backend.workers.planning.position_sizer import PositionSizer
from services.plugin_testing import Replay, sample_candles
from tests.helpers import Pipeline, process_tick, tick


def pipeline() -> Pipeline:
    return Pipeline(
        [
            (EmaDetector, {"fast_period": 2, "slow_period": 3}),
            (DcaScheduleOpportunity, {"interval_bars": 1}),
            (PositionSizer, {}),
            (MarketOrderExecutor, {}),
        ],
        [EmaDTO, FillDTO],
    )


def test_warmup_ticks_feed_context_workers_only():
    run = pipeline()
    warmup = [tick(i, 100 + i).model_copy(update={"warmup": True}) for i in range(3)]
    assert all(process_tick(run.manager, t) for t in warmup)
    assert run.recorder.ticks == []  # nothing after the context workers ran
    assert run.ledger.state.trades == 0 and run.ledger.summary().max_drawdown_pct == 0

    (live,) = run.feed([tick(3, 103)])
    assert live[EmaDTO].slow == 0.5 * 103 + 0.5 * 101  # seeded by the warm-up closes 100-102
    assert live[FillDTO].price == 103  # the first live tick trades


def test_a_candle_traded_before_a_restart_is_not_traded_again_by_the_account_itself(tmp_path, logs):
    """A paper link restarted on its state store, handed the last candle it traded once more (a
    feed resuming a candle early): the account's own cursor refuses it; the next candle trades."""
    store = StateStore.open(tmp_path, "op")

    def started() -> Pipeline:  # the link's account as the daemon builds it on each start
        account = StrategyAccount(Ledger(10_000, store.load_account("p@paper")), SimulatedGateway(FillRules()),
                                  StoreJournal(store, "p@paper"))
        workforce = [(EmaDetector, {}), (MarketRegimeClassifier, {}), (DcaScheduleOpportunity, {"interval_bars": 1}),
                     (DcaPlanner, {"quote_amount": 100.0}), (MarketOrderExecutor, {})]
        return Pipeline(workforce, [FillDTO], account=account)

    first = started()
    first.feed([tick(0, 100), tick(1, 101)])
    assert first.ledger.state.trades == 2  # the schedule buys on every candle it trades

    restarted = started()
    assert not process_tick(restarted.manager, tick(1, 101))
    assert restarted.ledger.state.trades == 2 and len(store.fills("p@paper")) == 2
    (skipped,) = [e for e in logs if e["event"] == "candle_already_processed"]
    assert skipped["candle_time"] == tick(1, 101).timestamp.isoformat()
    assert process_tick(restarted.manager, tick(2, 102)) and restarted.ledger.state.trades == 3
    store.close()


def test_ticks_of_other_assets_are_skipped():
    run = pipeline()
    assert not process_tick(run.manager, tick(0, 100, symbol="ETH/USD"))
    assert run.recorder.ticks == []


def test_a_block_with_warm_up_rows_is_replayed_as_warm_up_ticks_one_by_one():
    """Warm-up is a column of the block: a columnar workforce replays such a block row by row,
    its warm-up rows feeding the context workers only, exactly as one-row blocks of those ticks."""
    candles = sample_candles()
    warmup = np.arange(len(candles)) < 300
    block = replace(candles.rows(0, 1000), warmup=warmup[:1000])
    workforce = [(EmaDetector, {"fast_period": 12, "slow_period": 26}), (EmaCrossOpportunity, {}),
                 (AllInPlanner, {}), (MarketOrderExecutor, {})]
    in_block = Replay(worker_specs=workforce)
    assert in_block.manager.why_not_columnar(block) == "warm-up candles (context workers only)"
    assert in_block.manager.process(block, threading.Event()) == (1000, 1000)
    one_by_one = Replay(worker_specs=workforce)
    for row in range(1000):
        one_by_one.manager.process(block.rows(row, row + 1), threading.Event())
    assert in_block.fills and in_block.fills[0].timestamp > block.open_time(299)  # no trade while warming up
    assert in_block.outcome() == one_by_one.outcome()
    assert in_block.account.cursors["BTC/USD"] == block.open_time(999)
