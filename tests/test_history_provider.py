"""The candle history of a strategy run (IOhlcvProvider): bounds, order, isolation between runs,
warm-up, and the workforce's derived need."""

import gc
import tracemalloc
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from backend.config import StrategyBlueprint, load_operation
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import FillDTO
from backend.interfaces import Candle, IWorker, WorkerCategory, WorkerParams, WorkerServices, since_last_gap
from backend.market_data import RawTick
from backend.portfolio import Ledger
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.fair_value_gap_detector import FairValueGapDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.context.volatility_assessor import VolatilityAssessor
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from backend.workers.opportunity.dca_schedule_opportunity import DcaScheduleOpportunity
from backend.workers.planning.position_sizer import PositionSizer
from backend.workers.registry import PLUGINS
from services.operation_service import OperationService
from services.tick_cache_manager import TickCacheManager
from services.worker_factory import WorkerFactory
from tests.helpers import (
    REPO,
    Pipeline,
    backtest_environment,
    blueprint,
    one_row,
    process_tick,
    simulated_account,
    tick,
    write_config_tree,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def candle(index: int, close: float = 100.0, missing_before: int = 0) -> Candle:
    return Candle(T0 + timedelta(hours=index), close, close, close, close, 1.0, missing_before)


def append(provider: OhlcvProvider, asset: str, candle: Candle) -> None:
    """Record candle as the block of one row a live candle comes in."""
    tick = RawTick.trusted(symbol=asset, timestamp=candle.open_time, open=candle.open, high=candle.high,
                           low=candle.low, close=candle.close, volume=candle.volume,
                           missing_before=candle.missing_before)
    provider.append(asset, one_row(tick), 0, 1)


def hours(candles) -> list[int]:
    return [int((c.open_time - T0) / timedelta(hours=1)) for c in candles]


# --- the provider ---------------------------------------------------------------------------


def test_history_is_oldest_first_and_ends_with_the_latest_candle():
    provider = OhlcvProvider(capacity=5)
    for index in range(4):
        append(provider, "BTC/USD", candle(index))
    assert hours(provider.history("BTC/USD", 3)) == [1, 2, 3]
    assert hours(provider.history("BTC/USD", 1)) == [3]
    assert provider.history("BTC/USD", 0) == ()


def test_a_length_longer_than_what_is_held_returns_what_exists():
    provider = OhlcvProvider(capacity=5)
    append(provider, "BTC/USD", candle(0))
    append(provider, "BTC/USD", candle(1))
    assert hours(provider.history("BTC/USD", 5)) == [0, 1]
    assert provider.history("ETH/USD", 5) == ()  # an asset not seen yet


def test_the_oldest_candles_drop_out_at_the_capacity():
    provider = OhlcvProvider(capacity=3)
    for index in range(10):
        append(provider, "BTC/USD", candle(index))
    assert hours(provider.history("BTC/USD", 3)) == [7, 8, 9]


def test_reading_more_than_the_declared_need_is_an_error():
    provider = OhlcvProvider(capacity=3)
    with pytest.raises(ValueError, match="declared need 3"):
        provider.history("BTC/USD", 4)
    with pytest.raises(ValueError):
        provider.history("BTC/USD", -1)


def test_assets_have_separate_windows():
    provider = OhlcvProvider(capacity=2)
    append(provider, "BTC/USD", candle(0, close=1))
    append(provider, "ETH/USD", candle(0, close=2))
    append(provider, "BTC/USD", candle(1, close=3))
    assert [c.close for c in provider.history("BTC/USD", 2)] == [1, 3]
    assert [c.close for c in provider.history("ETH/USD", 2)] == [2]


def test_a_workers_snapshot_cannot_change_the_history():
    provider = OhlcvProvider(capacity=2)
    append(provider, "BTC/USD", candle(0))
    snapshot = provider.history("BTC/USD", 2)
    append(provider, "BTC/USD", candle(1))
    assert hours(snapshot) == [0]
    with pytest.raises(AttributeError):
        snapshot.append(candle(2))  # type: ignore[attr-defined]


def test_since_last_gap_keeps_the_tail_after_the_newest_hole():
    candles = [candle(0), candle(2, missing_before=1), candle(3), candle(5, missing_before=1), candle(6)]
    assert hours(since_last_gap(candles)) == [5, 6]
    assert hours(since_last_gap(candles[:3])) == [2, 3]
    assert hours(since_last_gap(candles[:1])) == [0]


# --- inside a run ---------------------------------------------------------------------------


class HistoryProbeParams(WorkerParams):
    tag: str
    length: int

    def history_needed(self) -> int:
        return self.length


SEEN: dict[str, list[tuple[int, list[int]]]] = defaultdict(list)  # tag -> (provider id, hours held)


class HistoryProbe(IWorker):
    """A context worker (so it runs on warm-up ticks too) recording the history it is given."""

    plugin_name = "history_probe"
    category = WorkerCategory.CONTEXT
    Params = HistoryProbeParams
    params: HistoryProbeParams

    def process(self, asset: str) -> None:
        SEEN[self.params.tag].append((id(self.ohlcv), hours(self.ohlcv.history(asset, self.params.length))))


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN.clear()
    yield
    SEEN.clear()


def probe_blueprint(tag: str, length: int) -> dict:
    return blueprint({"context": [{"plugin": "history_probe", "params": {"tag": tag, "length": length}}]})


def test_the_current_candle_is_in_the_history_before_the_workers_run():
    pipeline = Pipeline([(HistoryProbe, {"tag": "p", "length": 2})], [])
    pipeline.feed([tick(0, 100), tick(1, 101), tick(2, 102)])
    assert [held for _, held in SEEN["p"]] == [[0], [0, 1], [1, 2]]


def test_two_runs_on_one_environment_never_share_a_window(tmp_path):
    ticks = [tick(i, 100 + i) for i in range(6)]
    path = write_config_tree(
        tmp_path, [("a", "bt"), ("b", "bt")], {"a": probe_blueprint("a", 2), "b": probe_blueprint("b", 4)},
        {"bt": backtest_environment()}, ticks,
    )
    service = OperationService(load_operation(path), WorkerFactory({**PLUGINS, "history_probe": HistoryProbe}))
    service.run()
    provider_ids = {tag: {provider_id for provider_id, _ in SEEN[tag]} for tag in ("a", "b")}
    assert len(provider_ids["a"]) == len(provider_ids["b"]) == 1 and provider_ids["a"] != provider_ids["b"]
    # A shared window would hold every candle twice (both runs record each tick).
    assert SEEN["a"][-1][1] == [4, 5]
    assert SEEN["b"][-1][1] == [2, 3, 4, 5]
    assert [run.history_needed for run in service.runs] == [2, 4]


def test_warmup_candles_fill_the_history_but_do_not_trade():
    pipeline = Pipeline(
        [
            (HistoryProbe, {"tag": "p", "length": 5}),
            (DcaScheduleOpportunity, {"interval_bars": 1}),
            (PositionSizer, {}),
            (MarketOrderExecutor, {}),
        ],
        [FillDTO],
    )
    for index in range(3):
        process_tick(pipeline.manager, tick(index, 100 + index).model_copy(update={"warmup": True}))
    assert pipeline.ledger.state.trades == 0 and pipeline.recorder.ticks == []
    (live,) = pipeline.feed([tick(3, 103)])
    assert SEEN["p"][-1][1] == [0, 1, 2, 3]
    assert live[FillDTO].price == 103


@pytest.mark.slow
def test_memory_stays_bounded_over_many_ticks():
    context, history = TradingContextProvider(), OhlcvProvider(capacity=8)
    account = simulated_account(Ledger(10_000))
    services = WorkerServices(context, account, history)
    workers = [
        EmaDetector(EmaDetector.Params(fast_period=3, slow_period=8), services),
        MarketRegimeClassifier(MarketRegimeClassifier.Params(volatility_window=5), services),
        VolatilityAssessor(VolatilityAssessor.Params(atr_period=4), services),
        FairValueGapDetector(FairValueGapDetector.Params(swing_lookback=2), services),
    ]
    manager = TickCacheManager(context, history, workers, account, ["BTC/USD"])
    ticks = [tick(i, 100 + (i % 7)) for i in range(12_000)]
    for raw in ticks[:2_000]:
        process_tick(manager, raw)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for raw in ticks[2_000:]:
            process_tick(manager, raw)
        gc.collect()  # count what is kept, not garbage a collection would free
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert hours(history.history("BTC/USD", 8)) == list(range(11_992, 12_000))
    # 10,000 more candles kept would be megabytes; a bounded run stays within a few kilobytes.
    assert grown < 50_000


# --- the workforce's need --------------------------------------------------------------------


def demo_blueprint(name: str) -> StrategyBlueprint:
    path = REPO / "config" / "strategies" / f"{name}.yaml"
    return StrategyBlueprint.model_validate(yaml.safe_load(path.read_text()))


def test_the_workforce_need_is_the_largest_need_of_its_workers():
    factory = WorkerFactory()
    file = Path("x.yaml")
    assert factory.history_needed(demo_blueprint("ict_smc_strategy"), file) == 50  # ema slow_period 50
    assert factory.history_needed(demo_blueprint("smart_dca_btc"), file) == 72  # ema slow_period 72
    regime_only = StrategyBlueprint.model_validate(blueprint({"context": [
        {"plugin": "ema_detector", "params": {"fast_period": 2, "slow_period": 3}},
        {"plugin": "market_regime_classifier", "params": {"volatility_window": 10}},
    ]}))
    assert factory.history_needed(regime_only, file) == 11  # 10 returns need 11 closes
    assert factory.history_needed(StrategyBlueprint.model_validate(blueprint({})), file) == 0
