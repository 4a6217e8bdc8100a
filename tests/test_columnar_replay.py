"""A backtest's columnar replay (IWorker's contract, TickCacheManager.process_block) against the
tick-by-tick one: the same trades to the float, on the shipped sample and on a long series with
holes, cut into blocks of every size; and the real CLI runs it with unchanged summaries."""

import json
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest

from backend.dtos import FillDTO, OpportunitySignalDTO, OrderSide, ThreatSignalDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.context.volatility_assessor import VolatilityAssessor
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from tests.columnar import (
    REPO,
    Replay,
    assert_same_context,
    assert_same_trades,
    long_series_with_holes,
    random_sizes,
    sample_candles,
    split,
)

EMA_CROSS = REPO / "config" / "strategies" / "ema_cross.yaml"
SMART_DCA = REPO / "config" / "strategies" / "smart_dca_btc.yaml"
SMART_DCA_1H = REPO / "config" / "strategies" / "smart_dca_btc_1h.yaml"


@pytest.fixture(scope="module")
def long_series():
    return long_series_with_holes()


def test_the_long_series_has_holes_and_many_candles(long_series):
    assert len(long_series) > 15_000 and np.count_nonzero(long_series.missing_before) >= 30


@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(1), random_sizes(2)], ids=["4096", "1", "rand1", "rand2"])
def test_ema_columns_are_the_dtos_written_tick_by_tick(long_series, sizes):
    assert_same_context([(EmaDetector, {"fast_period": 5, "slow_period": 13})], long_series.rows(0, 6000), sizes)


@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(3)], ids=["4096", "1", "random"])
def test_ema_cross_trades_identically_on_the_sample(sizes):
    replay = assert_same_trades(lambda: Replay(blueprint_file=EMA_CROSS), sample_candles(), sizes)
    assert len(replay.fills) > 20  # it traded: the comparison compared something


@pytest.mark.parametrize("sizes", [[4096], random_sizes(4)], ids=["4096", "random"])
def test_ema_cross_trades_identically_across_holes(long_series, sizes):
    replay = assert_same_trades(lambda: Replay(blueprint_file=EMA_CROSS), long_series, sizes)
    assert len(replay.fills) > 200


def test_an_empty_workforce_replays_every_candle_into_the_account(long_series):
    replay = assert_same_trades(lambda: Replay(worker_specs=[(MarketOrderExecutor, {})]), long_series, [4096])
    assert replay.fills == [] and replay.account.cursors["BTC/USD"] == long_series.open_time(len(long_series) - 1)


def run_cli(*args: str) -> tuple[dict, set]:
    """The strategy summaries a real `run-operation` logs, and the replay modes it logged."""
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    summaries = {line["strategy_link"]: {k: v for k, v in line.items() if k not in ("timestamp", "level", "logger")}
                 for line in lines if line["event"] == "strategy_summary"}
    return summaries, {(line["mode"], line["reason"]) for line in lines if line["event"] == "backtest_replay"}


def test_the_cli_summary_is_the_same_replayed_columnar_or_tick_by_tick(tmp_path):
    """`--report` needs every candle as a tick (its equity curve), so it replays tick by tick."""
    operation = "config/operations/ema_cross_demo.yaml"
    columnar, modes = run_cli(operation)
    assert modes == {("columnar", None)}
    by_ticks, modes = run_cli(operation, "--report", str(tmp_path / "report"))
    assert modes == {("tick_by_tick", "a report records every tick")}
    assert columnar == by_ticks and columnar and all(s["trades"] > 20 for s in columnar.values())


@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(5)], ids=["4096", "1", "random"])
def test_regime_columns_are_the_dtos_written_tick_by_tick(long_series, sizes):
    workers = [(EmaDetector, {"fast_period": 5, "slow_period": 13}),
               (MarketRegimeClassifier, {"trend_threshold_pct": 0.3, "volatility_window": 6})]
    assert_same_context(workers, long_series.rows(0, 6000), sizes)


@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(6), random_sizes(7)], ids=["4096", "1", "rand6", "rand7"])
def test_volatility_columns_are_the_dtos_written_tick_by_tick(long_series, sizes):
    """Tight thresholds, so every risk level shows up; a short ATR, so it warms up often across holes."""
    workers = [(VolatilityAssessor, {"atr_period": 5, "low_atr_pct": 0.5, "high_atr_pct": 0.9})]
    assert_same_context(workers, long_series.rows(0, 6000), sizes)


def assert_dca_traded(replay: Replay, fills: int) -> None:
    """The comparison compared something: more than `fills` fills, and take-profit sales (the
    whole position, at least 10 % above its average cost, as the blueprints say)."""
    assert len(replay.fills) > fills
    held, average, take_profits = 0.0, 0.0, 0
    for fill in replay.fills:
        if fill.side is OrderSide.BUY:
            held, average = held + fill.quantity, (held * average + fill.quantity * fill.price) / (held + fill.quantity)
        else:
            assert fill.quantity == pytest.approx(held) and fill.price >= average * 1.1
            held, take_profits = 0.0, take_profits + 1
    assert take_profits >= 1


@pytest.mark.parametrize("blueprint", [SMART_DCA, SMART_DCA_1H], ids=["smart_dca", "smart_dca_1h"])
@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(8)], ids=["4096", "1", "random"])
def test_smart_dca_trades_identically_on_the_sample(blueprint, sizes):
    replay = assert_same_trades(lambda: Replay(blueprint_file=blueprint), sample_candles(), sizes)
    assert_dca_traded(replay, 60)


@pytest.mark.parametrize("blueprint", [SMART_DCA, SMART_DCA_1H], ids=["smart_dca", "smart_dca_1h"])
@pytest.mark.parametrize("sizes", [[4096], [7], random_sizes(9)], ids=["4096", "7", "random"])
def test_smart_dca_trades_identically_across_holes(long_series, blueprint, sizes):
    replay = assert_same_trades(lambda: Replay(blueprint_file=blueprint), long_series, sizes)
    assert_dca_traded(replay, 200)


class _BlockedEntries(IWorker):
    """Notes the candles where a buy signal met a threat and no order was filled. Columnar: it
    only reads what the workforce left in a tick's cache (a blocked entry is an active row)."""

    plugin_name = "blocked_entries"
    category = WorkerCategory.EXECUTION
    optional = (OpportunitySignalDTO, ThreatSignalDTO, FillDTO)
    columnar = True

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self.candle_times: list[datetime] = []

    def process(self, asset: str) -> None:
        opportunity = self._optional(asset, OpportunitySignalDTO)
        if (opportunity is not None and opportunity.side is OrderSide.BUY
                and self._optional(asset, ThreatSignalDTO) is not None and self._optional(asset, FillDTO) is None):
            self.candle_times.append(self._base(asset).timestamp)


@pytest.mark.parametrize("sizes", [[4096], random_sizes(10)], ids=["4096", "random"])
def test_smart_dca_volatility_threat_blocks_the_same_entries(long_series, sizes):
    def make() -> Replay:
        return Replay(blueprint_file=SMART_DCA, watchers=[(_BlockedEntries, {})])

    by_ticks = make().by_ticks(long_series)
    by_blocks = make().by_blocks(split(long_series, sizes))
    assert by_blocks.outcome() == by_ticks.outcome()
    blocked, blocked_by_blocks = (replay.workers[-1].candle_times for replay in (by_ticks, by_blocks))
    assert len(blocked) >= 10  # tick by tick, the threat held back scheduled buys
    assert blocked_by_blocks == blocked
