"""A backtest's columnar replay (IWorker's contract, TickCacheManager.process_block) against the
tick-by-tick one: the same trades to the float, on the shipped sample and on a long series with
holes, cut into blocks of every size; and the real CLI runs it with unchanged summaries."""

import json
import subprocess
import sys

import numpy as np
import pytest

from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from tests.columnar import (
    REPO,
    Replay,
    assert_same_context,
    assert_same_trades,
    long_series_with_holes,
    random_sizes,
    sample_candles,
)

EMA_CROSS = REPO / "config" / "strategies" / "ema_cross.yaml"


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
