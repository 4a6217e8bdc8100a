"""A backtest's columnar replay (IWorker's contract, TickCacheManager.process) against the
tick-by-tick one: the same trades to the float, on the shipped sample and on a long series with
holes, cut into blocks of every size; and the real CLI runs it with the same summaries and report."""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from structlog.testing import capture_logs

from backend.dtos import (
    FillDTO,
    OpportunitySignalDTO,
    OrderDTO,
    OrderSide,
    OrderType,
    PortfolioSnapshotDTO,
    ThreatSignalDTO,
)
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.raw_tick import ticks_of
from backend.market_data.resample import Resampler
from backend.workers.context.ema_detector import EmaDetector, EmaDetectorParams
from backend.workers.context.fair_value_gap_detector import FairValueGapDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.context.volatility_assessor import VolatilityAssessor
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from backend.workers.opportunity.ema_cross_opportunity import EmaCrossOpportunity
from backend.workers.planning.all_in_planner import AllInPlanner
from tests.columnar import (
    REPO,
    SAMPLE_1H,
    EntryBlockedWitness,
    ListedEma,
    Replay,
    assert_same_context,
    assert_same_trades,
    entry_block_lines,
    long_series_with_holes,
    random_sizes,
    sample_candles,
    split,
)
from tests.helpers import backtest_environment, write_config_tree

EMA_CROSS = REPO / "config" / "strategies" / "ema_cross.yaml"
ICT = REPO / "config" / "strategies" / "ict_smc_strategy.yaml"
ICT_15M = REPO / "config" / "strategies" / "ict_smc_strategy_15m.yaml"
SAMPLE_5M = REPO / "data" / "kraken_xbtusd_5m_2023q1.csv"
SMART_DCA = REPO / "config" / "strategies" / "smart_dca_btc.yaml"
SMART_DCA_1H = REPO / "config" / "strategies" / "smart_dca_btc_1h.yaml"
REPORT_EPOCH = 1680307200  # 2023-04-01 00:00 UTC: report.html's "generated" stamp (SOURCE_DATE_EPOCH)


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


def run_cli(root: Path, blueprint: Path = EMA_CROSS, with_workers: Sequence[dict] = (),
            vandal: bool = False) -> tuple[dict, set, dict]:
    """A real `run-operation --report` of blueprint (plus with_workers), as link `ema@bt`, on the
    shipped hourly sample, or the 5-minute one resampled when the blueprint's timeframe is not
    1h, in a config tree under root: its strategy summaries, the replay modes it logged, and the
    report files of its run. vandal: a second link on the same environment writes into the
    candles it is given."""
    spec = yaml.safe_load(blueprint.read_text())
    spec["workforce"]["execution"] += list(with_workers)
    data, timeframe = (SAMPLE_1H, "1h") if spec["timeframe"] == "1h" else (SAMPLE_5M, "5m")
    environment = backtest_environment(str(data), timeframe=timeframe, start="2023-01-01T00:00:00Z",
                                       end="2023-04-01T00:00:00Z")
    blueprints, links = {"ema": spec}, [("ema", "bt")]
    if vandal:
        blueprints["vandal"] = {**spec, "workforce": {**spec["workforce"], "context": [
            *spec["workforce"]["context"], {"plugin": "tests.columnar:Vandal"}]}}
        links.insert(0, ("vandal", "bt"))
    operation = write_config_tree(root, links, blueprints, {"bt": environment})
    # The page's "report generated" stamp from a fixed moment: two runs compare equal whatever the wall clock.
    done = subprocess.run([sys.executable, "-m", "services.cli", str(operation), "--report", str(root / "report")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "SOURCE_DATE_EPOCH": str(REPORT_EPOCH)})
    assert done.returncode == (1 if vandal else 0), done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    summaries = {line["strategy_link"]: {k: v for k, v in line.items() if k not in ("timestamp", "level", "logger")}
                 for line in lines if line["event"] == "strategy_summary"}
    modes = {(line["mode"], line["reason"]) for line in lines if line["event"] == "backtest_replay"}
    files = {path.name: path.read_text() for path in (root / "report" / "ema@bt").iterdir()}
    if not vandal:  # the page of the one run: the same runs, the same page
        files["report.html"] = (root / "report" / "report.html").read_text()
    return summaries, modes, files


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("blueprint", [EMA_CROSS, ICT, SMART_DCA, ICT_15M], ids=["ema_cross", "ict", "dca", "ict_15m"])
def test_the_cli_and_its_report_are_the_same_replayed_columnar_or_tick_by_tick(tmp_path, blueprint):
    columnar, modes, report = run_cli(tmp_path / "columnar", blueprint)
    assert modes == {("columnar", None)}
    by_ticks, modes, report_by_ticks = run_cli(tmp_path / "ticks", blueprint,
                                                [{"plugin": "tests.columnar:NotColumnar"}])
    assert modes == {("tick_by_tick", "workers without a columnar replay: tests.columnar:NotColumnar")}
    assert columnar == by_ticks and columnar["ema@bt"]["trades"] > 10
    assert set(report) == {"equity.csv", "trades.csv", "orders.csv", "summary.json", "report.html"}
    assert report == report_by_ticks  # every equity row, order state and trade, the metrics: the same text
    assert "report generated 2023-04-01 00:00 UTC" in report["report.html"]  # REPORT_EPOCH, not the minute it ran
    bars = {"1h": 2160, "15m": 8635}[yaml.safe_load(blueprint.read_text())["timeframe"]]  # the 15m: from 5m candles
    assert report["equity.csv"].count("\n") == bars + 1  # a header and every bar


@pytest.mark.e2e
def test_a_worker_writing_into_the_shared_candles_fails_its_own_run_only(tmp_path):
    alone, _, report = run_cli(tmp_path / "alone")
    beside, _, report_beside = run_cli(tmp_path / "beside", vandal=True)
    assert beside["vandal@bt"]["status"] == "failed" and "read-only" in beside["vandal@bt"]["error"]
    report.pop("report.html")  # the page of the run alone (the other shows both runs)
    assert beside["ema@bt"] == alone["ema@bt"] and report_beside == report


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(5)], ids=["4096", "1", "random"])
def test_regime_columns_are_the_dtos_written_tick_by_tick(long_series, sizes):
    workers = [(EmaDetector, {"fast_period": 5, "slow_period": 13}),
               (MarketRegimeClassifier, {"trend_threshold_pct": 0.3, "volatility_window": 6})]
    assert_same_context(workers, long_series.rows(0, 6000), sizes)


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(6), random_sizes(7)], ids=["4096", "1", "rand6", "rand7"])
@pytest.mark.parametrize("params", [{"min_gap_pct": 0.1, "swing_lookback": 2}, {"min_gap_pct": 0, "swing_lookback": 1},
                                    {"min_gap_pct": 0.05, "swing_lookback": 4}], ids=["ict", "lookback1", "lookback4"])
def test_fair_value_gap_columns_are_the_dtos_written_tick_by_tick(long_series, sizes, params):
    assert_same_context([(FairValueGapDetector, params)], long_series.rows(0, 6000), sizes)


def fifteen_minute_candles() -> CandleColumns:
    """The 5m sample resampled to 15m bars, as the environment feed builds them for the 15m blueprint."""
    resampler = Resampler("5m", "15m")
    bars = [bar for tick in ticks_of(sample_candles(SAMPLE_5M, "5m")) for bar in resampler.add(tick)]
    column = lambda name, dtype: np.array([getattr(bar, name) for bar in bars], dtype=dtype)  # noqa: E731
    return CandleColumns("BTC/USD", np.array([int(bar.timestamp.timestamp()) for bar in bars]), column("open", float),
                         column("high", float), column("low", float), column("close", float), column("volume", float),
                         column("missing_before", np.int64))


def exits_by_ticks(make: Callable[[], Replay], candles: CandleColumns) -> list[str]:
    """The reasons of the sells a fresh Replay from make places tick by tick (from its fill log)."""
    with capture_logs() as logs:
        make().by_ticks(candles)
    return [line["reason"] for line in logs if line["event"] == "order_filled" and line["side"] == "sell"]


def assert_stops_and_targets(exits: list[str]) -> None:
    """Sells by the venue's protective stop and take-profit (the ICT blueprints' `exits: venue`)."""
    assert any(reason.startswith("protective stop ") for reason in exits), exits
    assert any(reason.startswith("protective take-profit ") for reason in exits), exits


@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(8)], ids=["4096", "1", "random"])
def test_ict_trades_identically_on_the_sample(sizes):
    replay = assert_same_trades(lambda: Replay(blueprint_file=ICT), sample_candles(), sizes)
    assert len(replay.fills) > 20


def test_the_shipped_ict_demo_trades_through_the_whole_quarter_and_says_why_it_pauses():
    """Its drawdown threat blocks entries at 8 % under the peak; flat, the account never regains
    it: the cool-down ends the block, and both ends are logged."""
    with capture_logs() as logs:
        replay = Replay(blueprint_file=ICT).by_ticks(sample_candles())
    assert replay.fills[-1].timestamp >= datetime(2023, 3, 24, tzinfo=UTC)
    lines = entry_block_lines(logs)
    cooled = [line for line in lines if line["event"] == "entries_unblocked" and "cool-down" in line["reason"]]
    assert cooled and cooled[0]["blocked_since"] == "2023-02-12T21:00:00+00:00", lines
    assert {line["worker"] for line in lines} == {"drawdown_threat"}


def test_ict_on_the_sample_exits_at_stops_and_targets():
    assert_stops_and_targets(exits_by_ticks(lambda: Replay(blueprint_file=ICT), sample_candles()))


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[4096], random_sizes(9), random_sizes(10)], ids=["4096", "rand9", "rand10"])
def test_ict_trades_identically_across_holes(long_series, sizes):
    replay = assert_same_trades(lambda: Replay(blueprint_file=ICT), long_series, sizes)
    assert len(replay.fills) > 20


def test_ict_across_holes_exits_at_stops_and_targets(long_series):
    assert_stops_and_targets(exits_by_ticks(lambda: Replay(blueprint_file=ICT), long_series))


def test_the_15m_blueprint_takes_15m_bars():
    """It runs on 15m bars (resampled from the 5m environment's candles), so it is checked on
    those: the 5m sample resampled, as the feed does."""
    assert yaml.safe_load(ICT_15M.read_text())["timeframe"] == "15m"


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(11)], ids=["4096", "1", "random"])
def test_ict_15m_trades_identically_on_resampled_bars(sizes):
    replay = assert_same_trades(lambda: Replay(blueprint_file=ICT_15M), fifteen_minute_candles(), sizes)
    assert len(replay.fills) > 20


def test_ict_15m_exits_at_stops_and_targets():
    assert_stops_and_targets(exits_by_ticks(lambda: Replay(blueprint_file=ICT_15M), fifteen_minute_candles()))


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[4096], random_sizes(12)], ids=["4096", "random"])
def test_ict_15m_trades_identically_across_holes(long_series, sizes):
    replay = assert_same_trades(lambda: Replay(blueprint_file=ICT_15M), long_series, sizes)
    assert len(replay.fills) > 20


@pytest.mark.parametrize("blueprint", [ICT, ICT_15M], ids=["1h", "15m"])
def test_ict_blocks_and_single_ticks_alternate(long_series, blueprint):
    """Every other block goes tick by tick (as when a block cannot be replayed columnar): each
    worker's state after a block is the one `process` would have left, and the other way round."""
    candles, turns = long_series.rows(0, 6000), Replay(blueprint_file=blueprint)
    for index, block in enumerate(split(candles, random_sizes(15))):
        if index % 2:
            turns.by_ticks(block)
        else:
            turns.by_blocks([block])
    by_ticks = Replay(blueprint_file=blueprint).by_ticks(candles)
    assert turns.outcome() == by_ticks.outcome() and len(by_ticks.fills) > 10


def ict_variant(directory: Path, workers: dict[str, list[dict]] | None = None, **drawdown: float) -> Path:
    """The ICT blueprint with drawdown_threat's params and some categories' workers replaced, as a file."""
    blueprint = yaml.safe_load(ICT.read_text())
    blueprint["workforce"]["threat"] = [{"plugin": "drawdown_threat", "params": drawdown}]
    blueprint["workforce"].update(workers or {})
    path = directory / f"ict_variant_{len(list(directory.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(blueprint))
    return path


# Entries blocked from 2 % under the peak, a position sold from 2.5 %; 2 % at risk per trade. The
# workers of the ICT blueprint before its orders rested on the venue (market entries at the close,
# exits on closes), which still trade at market: a venue's stop would sell before the threat.
DRAWDOWN = {"block_entries_at_pct": 2.0, "exit_at_pct": 2.5}
SIZER = {"plugin": "position_sizer", "params": {"risk_per_trade_pct": 2.0, "reward_risk_ratio": 2.0}}
AT_MARKET = {"opportunity": [{"plugin": "fvg_reentry_opportunity", "params": {"entry": "close"}}],
             "execution": [{"plugin": "market_order_executor"}]}


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(13)], ids=["4096", "1", "random"])
def test_the_drawdown_threat_blocks_and_exits_identically(long_series, tmp_path, sizes):
    candles = long_series.rows(0, 6000)
    variant = ict_variant(tmp_path, {**AT_MARKET, "planning": [SIZER]}, **DRAWDOWN)
    replay = assert_same_trades(lambda: Replay(blueprint_file=variant), candles, sizes)
    assert len(replay.fills) > 10
    # Tick by tick (what the columnar replay matched), the threat did both.
    witness = {"plugin": "tests.columnar:EntryBlockedWitness"}  # by import path: the factory builds it
    watched_variant = ict_variant(tmp_path, {**AT_MARKET, "planning": [witness, SIZER]}, **DRAWDOWN)
    watched = Replay(blueprint_file=watched_variant).by_ticks(candles)
    assert any(isinstance(worker, EntryBlockedWitness) and worker.blocked > 0 for worker in watched.workers)
    exits = exits_by_ticks(lambda: Replay(blueprint_file=variant), candles)
    assert any(reason.startswith("drawdown ") for reason in exits), exits


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(15)], ids=["4096", "1", "random"])
def test_the_drawdown_threat_cools_down_and_says_so_identically(long_series, tmp_path, sizes):
    candles = long_series.rows(0, 6000)
    variant = ict_variant(tmp_path, {**AT_MARKET, "planning": [SIZER]}, **DRAWDOWN, cooldown_bars=5)
    lines = assert_same_trades(lambda: Replay(blueprint_file=variant), candles, sizes).entry_block_lines
    reasons = [line["reason"].split(" ")[0] for line in lines if line["event"] == "entries_unblocked"]
    assert {"cool-down", "drawdown"} <= set(reasons), reasons


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[4096], random_sizes(14)], ids=["4096", "random"])
def test_ict_keeps_trading_identically_through_every_hole_when_the_threat_allows(long_series, tmp_path, sizes):
    """The shipped thresholds stop the 1h blueprint for good once flat 8 % under its peak (a flat
    account's equity cannot recover): with wide ones it trades through the whole long series."""
    variant = ict_variant(tmp_path, block_entries_at_pct=60, exit_at_pct=80)
    replay = assert_same_trades(lambda: Replay(blueprint_file=variant), long_series, sizes)
    assert len(replay.fills) > 200 and replay.fills[-1].timestamp > long_series.open_time(len(long_series) * 3 // 4)


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


@pytest.mark.slow
@pytest.mark.parametrize("blueprint", [SMART_DCA, SMART_DCA_1H], ids=["smart_dca", "smart_dca_1h"])
@pytest.mark.parametrize("sizes", [[4096], [7], random_sizes(9)], ids=["4096", "7", "random"])
def test_smart_dca_trades_identically_across_holes(long_series, blueprint, sizes):
    replay = assert_same_trades(lambda: Replay(blueprint_file=blueprint), long_series, sizes)
    assert_dca_traded(replay, 200)


@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(16)], ids=["4096", "1", "random"])
def test_limit_entries_that_expire_or_fill_trade_identically_across_holes(long_series, tmp_path, sizes):
    """Smart DCA buying every 4 candles 0.3 % under the close, each order good for one candle: many
    expire, many fill, and which ones (and on which candle) must not depend on the replay."""
    blueprint = yaml.safe_load(SMART_DCA.read_text())
    workforce = blueprint["workforce"]
    workforce["opportunity"][0]["params"]["interval_bars"] = 4
    workforce["planning"][0]["params"].update(quote_amount=50, limit_offset_pct=0.3)
    workforce["execution"][0]["params"].update(post_only=True, cancel_after_candles=1)
    variant = tmp_path / "dca_limits.yaml"
    variant.write_text(yaml.safe_dump(blueprint))
    replay = assert_same_trades(lambda: Replay(blueprint_file=variant), long_series.rows(0, 6000), sizes)
    outcomes = replay.account.order_outcomes
    assert outcomes["expired"] > 50 and outcomes["filled"] > 50, outcomes


class _TrailingStopTrader(IWorker):
    """In and out by trailing stops only: flat, a trailing buy; holding, a trailing sell of the
    position; the offset a quote amount on odd hours, a percentage on even ones. Columnar: it acts
    only while it has no open order (its order's fill is the account's active row)."""

    plugin_name = "trailing_stop_trader"
    category = WorkerCategory.EXECUTION
    columnar = True

    def process(self, asset: str) -> None:
        broker = self.services.broker
        if broker.open_orders(asset):
            return
        base = self._base(asset)
        held = base.portfolio.position_qty
        offset = {"trailing_offset": 150.0} if base.timestamp.hour % 2 else {"trailing_offset_pct": 0.7}
        broker.place(OrderDTO(asset=asset, side=OrderSide.SELL if held > 0 else OrderSide.BUY,
                              quantity=held if held > 0 else 0.05, reference_price=base.close, reason="trail",
                              order_type=OrderType.TRAILING_STOP, **offset), base.timestamp)

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        return len(candles) if self.services.broker.open_orders(asset) else start


@pytest.mark.parametrize("sizes", [[4096], [1], random_sizes(17)], ids=["4096", "1", "random"])
def test_trailing_stops_fill_identically_columnar_or_tick_by_tick(long_series, sizes):
    """The peak (trough) a trailing stop reaches over the rows a columnar replay passes over quietly
    is the one polling each row makes, and its fill row the first one `next_event_row` names."""
    replay = assert_same_trades(lambda: Replay(worker_specs=[(_TrailingStopTrader, {})]), long_series.rows(0, 6000),
                                sizes)
    sides = [fill.side for fill in replay.fills]
    assert sides.count(OrderSide.BUY) > 100 and sides.count(OrderSide.SELL) > 100, len(sides)


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

    with capture_logs() as tick_lines:
        by_ticks = make().by_ticks(long_series)
    with capture_logs() as block_lines:
        by_blocks = make().by_blocks(split(long_series, sizes))
    assert by_blocks.outcome() == by_ticks.outcome()
    assert entry_block_lines(block_lines) == entry_block_lines(tick_lines)
    assert len(entry_block_lines(tick_lines)) > 20
    blocked, blocked_by_blocks = (replay.workers[-1].candle_times for replay in (by_ticks, by_blocks))
    assert len(blocked) >= 10  # tick by tick, the threat held back scheduled buys
    assert blocked_by_blocks == blocked


@pytest.mark.e2e
@pytest.mark.slow
def test_the_watchdog_gives_a_columnar_step_its_candles_worth_of_time(tmp_path):
    """A stall is a tick that takes longer than stall_timeout_seconds; a step over a block of 216
    candles (the progress lines cut the sample so) is allowed that much per candle: 0.1 s of
    work is no stall at a 20 ms limit. A worker stuck in a block still is, named, while its
    neighbours complete."""
    spec = yaml.safe_load(EMA_CROSS.read_text())

    def with_context(plugin: str) -> dict:
        context = [*spec["workforce"]["context"], {"plugin": plugin}]
        return {**spec, "workforce": {**spec["workforce"], "context": context}}

    environment = backtest_environment(str(SAMPLE_1H), start="2023-01-01T00:00:00Z", end="2023-04-01T00:00:00Z")
    operation = write_config_tree(
        tmp_path, [("slow", "bt"), ("stuck", "bt"), ("ema", "bt")],
        {"slow": with_context("tests.columnar:SlowPrepare"), "stuck": with_context("tests.columnar:StuckAtTheEnd"),
         "ema": spec},
        {"bt": environment}, operation_settings={"stall_timeout_seconds": 0.02})
    done = subprocess.run([sys.executable, "-m", "services.cli", str(operation)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    summaries = {line["strategy_link"]: line for line in lines if line["event"] == "strategy_summary"}
    assert done.returncode == 1
    assert summaries["slow@bt"]["status"] == summaries["ema@bt"]["status"] == "completed"
    assert summaries["slow@bt"]["trades"] == summaries["ema@bt"]["trades"] > 20
    assert summaries["stuck@bt"]["status"] == "stalled" and summaries["stuck@bt"]["ticks_processed"] == 2160 - 216
    (stalled,) = [line for line in lines if line["event"] == "strategy_run_stalled"]
    assert stalled["worker"] == "tests.columnar:StuckAtTheEnd" and "a step over 216 candles" in stalled["reason"]
    assert stalled["tick_time"] == "2023-03-23T00:00:00+00:00"  # the step's first candle: the last block's (row 1944)


class NamesNoRow(EmaCrossOpportunity):
    """The EMA cross, columnar, with IWorker's defaults for the gate: a plugin that leaves it out."""

    next_active_row = IWorker.next_active_row
    skip = IWorker.skip


def test_a_columnar_opportunity_worker_naming_no_row_trades_as_tick_by_tick():
    """Safe by default: a worker that names no row is active on every row (slower, never wrong)."""
    workforce = [(EmaDetector, {"fast_period": 12, "slow_period": 26}), (NamesNoRow, {}), (AllInPlanner, {}),
                 (MarketOrderExecutor, {})]
    replay = assert_same_trades(lambda: Replay(worker_specs=workforce), sample_candles(), random_sizes(5))
    assert [fill.timestamp for fill in replay.fills] == [
        fill.timestamp for fill in Replay(blueprint_file=EMA_CROSS).by_ticks(sample_candles()).fills]
    assert len(replay.fills) > 20


def test_consumers_find_columns_by_dto_type_whichever_worker_produced_them(long_series):
    """The shipped EMA consumers with another EMA producer (a plain list of EmaDTO per row): the same
    trades by blocks as tick by tick, and as with the shipped detector."""
    workforce = [(ListedEma, {"fast_period": 12, "slow_period": 26}),
                 (MarketRegimeClassifier, {}), (EmaCrossOpportunity, {}), (AllInPlanner, {}), (MarketOrderExecutor, {})]
    candles = long_series.rows(0, 6000)
    replay = assert_same_trades(lambda: Replay(worker_specs=workforce), candles, random_sizes(6))
    shipped = Replay(blueprint_file=EMA_CROSS).by_ticks(candles)
    assert replay.outcome()[:2] == shipped.outcome()[:2] and len(replay.fills) > 50


def test_a_candle_step_worker_must_declare_the_candle_it_reads_from_the_history():
    class NoHistoryParams(EmaDetectorParams):
        def history_needed(self) -> int:
            return 0

    replay = Replay()
    with pytest.raises(ValueError, match="history_needed"):
        ListedEma(NoHistoryParams(), WorkerServices(replay.context, replay.account, replay.history))


@pytest.mark.parametrize(("context", "opportunity", "key", "reason"), [
    ("tests.columnar:TickByTickEma", "ema_cross_opportunity", "workforce.opportunity[0]",
     "worker 'ema_cross_opportunity' is columnar and reads EmaDTO from the block's columns, which "
     "'tests.columnar:TickByTickEma' (workforce.context[0]) does not write: it is not columnar"),
    ("tests.columnar:ColumnarWithoutColumns", "ema_cross_opportunity", "workforce.context[0]",
     "plugin 'tests.columnar:ColumnarWithoutColumns' is columnar but writes no columns (no prepare_block)"),
    ("ema_detector", "tests.columnar:GatedButOnlyOnSignals", "workforce.opportunity[0]",
     "plugin 'tests.columnar:GatedButOnlyOnSignals' declares acts_only_on_signals and names rows of its own "
     "(next_active_row): one or the other"),
], ids=["producer_not_columnar", "no_prepare_block", "flag_and_gate"])
@pytest.mark.e2e
def test_a_columnar_contract_broken_at_load_is_a_config_error(tmp_path, context, opportunity, key, reason):
    spec = yaml.safe_load(EMA_CROSS.read_text())
    spec["workforce"]["context"] = [{"plugin": context}]
    spec["workforce"]["opportunity"] = [{"plugin": opportunity}]
    environment = backtest_environment(str(SAMPLE_1H), start="2023-01-01T00:00:00Z", end="2023-04-01T00:00:00Z")
    operation = write_config_tree(tmp_path, [("broken", "bt")], {"broken": spec}, {"bt": environment})
    done = subprocess.run([sys.executable, "-m", "services.cli", "validate", str(operation)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    blueprint_file = tmp_path / "config" / "strategies" / "broken.yaml"
    assert done.returncode == 2, done.stderr
    assert f"{blueprint_file}: {key}: {reason}" in done.stderr


def test_a_stop_ends_a_columnar_block_between_steps_and_the_account_stops_there(long_series):
    """The stop request is looked at between steps (a stretch no worker acts on, an active row):
    the rows before it are processed, none after it; as tick by tick, where it is looked at
    between ticks."""
    block = long_series.rows(0, 4096)
    stopped, stop = Replay(blueprint_file=EMA_CROSS), threading.Event()
    assert stopped.manager.process(block, stop).rows == 4096  # not set: all of it
    stop.set()
    later = long_series.rows(4096, 8192)
    assert stopped.manager.process(later, stop).rows == 0
    assert stopped.account.cursors["BTC/USD"] == block.open_time(4095)  # nothing of `later` was taken

    class StopAtTheThirdCross(EmaCrossOpportunity):
        crosses: list = []  # noqa: RUF012 (one instance, one test)

        def process(self, asset: str) -> None:
            super().process(asset)
            if self.context.find_dto(asset, OpportunitySignalDTO) is not None:
                self.crosses.append(self._base(asset).timestamp)
                if len(self.crosses) == 3:
                    stop.set()

    stop.clear()
    replay = Replay(worker_specs=[(EmaDetector, {"fast_period": 12, "slow_period": 26}), (StopAtTheThirdCross, {}),
                                  (AllInPlanner, {}), (MarketOrderExecutor, {})])
    done = replay.manager.process(block, stop).rows
    third = StopAtTheThirdCross.crosses[2]
    assert 0 < done < 4096 and block.open_time(done - 1) == third
    assert replay.account.cursors["BTC/USD"] == third and replay.fills and replay.fills[-1].timestamp <= third
