"""A backtest's columnar replay (IWorker's contract, TickCacheManager.process_block) against the
tick-by-tick one: the same trades to the float, on the shipped sample and on a long series with
holes, cut into blocks of every size; and the real CLI runs it with the same summaries and report."""

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from tests.columnar import (
    REPO,
    SAMPLE_1H,
    Replay,
    assert_same_context,
    assert_same_trades,
    long_series_with_holes,
    random_sizes,
    sample_candles,
)
from tests.helpers import backtest_environment, write_config_tree

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


def run_cli(root: Path, with_workers: Sequence[dict] = (), vandal: bool = False) -> tuple[dict, set, dict]:
    """A real `run-operation --report` of the EMA cross blueprint (plus with_workers) on the shipped
    sample, in a config tree under root: its strategy summaries, the replay modes it logged, and
    the report files of its run. vandal: a second link on the same environment writes into the
    candles it is given."""
    spec = yaml.safe_load(EMA_CROSS.read_text())
    spec["workforce"]["execution"] += list(with_workers)
    environment = backtest_environment(str(SAMPLE_1H), start="2023-01-01T00:00:00Z", end="2023-04-01T00:00:00Z")
    blueprints, links = {"ema": spec}, [("ema", "bt")]
    if vandal:
        blueprints["vandal"] = {**spec, "workforce": {**spec["workforce"], "context": [
            *spec["workforce"]["context"], {"plugin": "tests.columnar:Vandal"}]}}
        links.insert(0, ("vandal", "bt"))
    operation = write_config_tree(root, links, blueprints, {"bt": environment})
    done = subprocess.run([sys.executable, "-m", "services.cli", str(operation), "--report", str(root / "report")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == (1 if vandal else 0), done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    summaries = {line["strategy_link"]: {k: v for k, v in line.items() if k not in ("timestamp", "level", "logger")}
                 for line in lines if line["event"] == "strategy_summary"}
    modes = {(line["mode"], line["reason"]) for line in lines if line["event"] == "backtest_replay"}
    files = {path.name: path.read_text() for path in (root / "report" / "ema@bt").iterdir()}
    return summaries, modes, files


def test_the_cli_and_its_report_are_the_same_replayed_columnar_or_tick_by_tick(tmp_path):
    columnar, modes, report = run_cli(tmp_path / "columnar")
    assert modes == {("columnar", None)}
    by_ticks, modes, report_by_ticks = run_cli(tmp_path / "ticks", [{"plugin": "tests.columnar:NotColumnar"}])
    assert modes == {("tick_by_tick", "workers without a columnar replay: tests.columnar:NotColumnar")}
    assert columnar == by_ticks and columnar["ema@bt"]["trades"] > 20
    assert set(report) == {"equity.csv", "trades.csv", "summary.json"}
    assert report == report_by_ticks  # every equity row and trade, the metrics: the same text
    assert report["equity.csv"].count("\n") == 2161  # a header and every candle of the sample


def test_a_worker_writing_into_the_shared_candles_fails_its_own_run_only(tmp_path):
    alone, _, report = run_cli(tmp_path / "alone")
    beside, _, report_beside = run_cli(tmp_path / "beside", vandal=True)
    assert beside["vandal@bt"]["status"] == "failed" and "read-only" in beside["vandal@bt"]["error"]
    assert beside["ema@bt"] == alone["ema@bt"] and report_beside == report


@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(5)], ids=["4096", "1", "random"])
def test_regime_columns_are_the_dtos_written_tick_by_tick(long_series, sizes):
    workers = [(EmaDetector, {"fast_period": 5, "slow_period": 13}),
               (MarketRegimeClassifier, {"trend_threshold_pct": 0.3, "volatility_window": 6})]
    assert_same_context(workers, long_series.rows(0, 6000), sizes)
