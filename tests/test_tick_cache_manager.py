from backend.dtos import EmaDTO, FillDTO
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from backend.workers.opportunity.dca_schedule_opportunity import DcaScheduleOpportunity
from backend.workers.planning.position_sizer import PositionSizer
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


def test_ticks_of_other_assets_are_skipped():
    run = pipeline()
    assert not process_tick(run.manager, tick(0, 100, symbol="ETH/USD"))
    assert run.recorder.ticks == []
