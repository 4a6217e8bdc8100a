"""Several symbols per backtest environment: `symbols` with a file each (`data_files`, or a
`data_file` pattern naming {base} and {quote}); the candles of one open time reach a run as one
frame; a symbol's hole is a gap of that symbol only; one account trades every asset of its link
with one cash balance; the columnar replay trades as the tick-by-tick one."""

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.csv
import pyarrow.parquet
import pytest
import yaml

from backend.config import BacktestEnvironment, StrategyLink, load_operation
from backend.equity_curve import EquityLine, row_equities
from backend.errors import ConfigError
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.candle_window import CandleWindow
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from backend.workers.opportunity.dca_schedule_opportunity import DcaScheduleOpportunity
from backend.workers.planning.dca_planner import DcaPlanner
from services.cli import main
from services.link_lifecycle import ContinuedRun, LinkStop
from services.operation_service import OperationService
from services.plugin_testing import HOUR, Replay, assert_same_trades, sample_candles
from services.status_server import StatusServer
from services.strategy_run import StrategyRun
from services.worker_factory import WorkerFactory
from tests.helpers import REPO, backtest_environment, blueprint, write_config_tree, write_yaml
from tests.test_status_server import Client

SAMPLE = REPO / "data" / "kraken_xbtusd_1h_2023q1.csv"
PATTERN = "../../data/kraken_{base}{quote}_1h.csv"
Q1 = {"start": "2023-01-01T00:00:00Z", "end": "2023-04-01T00:00:00Z"}
ETH_HOLES = (range(300, 303), range(1000, 1001))  # rows of the sample ETH/USD has no candle for
DCA_BOTH = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity", "params": {"interval_bars": 24}}],
                      "planning": [{"plugin": "position_sizer"}]}, assets=("BTC/USD", "ETH/USD"))


def write_data(root: Path) -> Path:
    """data/kraken_btcusd_1h.csv (the bundled BTC/USD sample) and data/kraken_ethusd_1h.csv: made
    up for the tests from the same candles, every price scaled to about ETH's, without the rows
    of ETH_HOLES (gaps of ETH/USD only)."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    header, *rows = SAMPLE.read_text().splitlines()
    (data / "kraken_btcusd_1h.csv").write_text("\n".join([header, *rows]) + "\n")
    holes = {row for hole in ETH_HOLES for row in hole}
    eth = []
    for index, row in enumerate(rows):
        if index in holes:
            continue
        moment, *prices, volume = row.split(",")
        eth.append(",".join([moment, *(f"{float(price) * 0.075 + 3:.4f}" for price in prices), volume]))
    (data / "kraken_ethusd_1h.csv").write_text("\n".join([header, *eth]) + "\n")
    return data


def two_symbols(**keys: object) -> dict:
    environment = backtest_environment(PATTERN, **Q1, **keys)
    del environment["symbol"]
    return {"symbols": ["BTC/USD", "ETH/USD"], **environment}


def tree(root: Path, environment: dict, strategy: dict = DCA_BOTH) -> Path:
    write_data(root)
    return write_config_tree(root, [("dca", "bt")], {"dca": strategy}, {"bt": environment})


def config_error(root: Path, environment: dict) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        load_operation(tree(root, environment))
    assert error.value.file == str(root / "config" / "environments" / "bt.yaml")
    return error.value


# --- the config's two forms, and their mistakes ------------------------------------------------------


def test_a_pattern_names_each_symbols_file(tmp_path):
    (link,) = load_operation(tree(tmp_path, two_symbols())).links
    environment = link.environment
    assert isinstance(environment, BacktestEnvironment)
    assert environment.symbols == ["BTC/USD", "ETH/USD"]
    assert [environment.data_file_of(symbol) for symbol in environment.symbols] == [
        (tmp_path / "data" / "kraken_btcusd_1h.csv").resolve(), (tmp_path / "data" / "kraken_ethusd_1h.csv").resolve()]


def test_a_mapping_names_each_symbols_file(tmp_path):
    files = {"BTC/USD": "../../data/kraken_btcusd_1h.csv", "ETH/USD": "../../data/kraken_ethusd_1h.csv"}
    environment = two_symbols(data_files=files)
    del environment["data_file"]
    (link,) = load_operation(tree(tmp_path, environment)).links
    assert isinstance(link.environment, BacktestEnvironment)
    assert link.environment.data_file_of("ETH/USD") == (tmp_path / "data" / "kraken_ethusd_1h.csv").resolve()


def test_the_one_symbol_form_is_a_list_of_one(tmp_path):
    (link,) = load_operation(tree(tmp_path, backtest_environment("../../data/kraken_btcusd_1h.csv", **Q1),
                                  blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}]}))).links
    assert isinstance(link.environment, BacktestEnvironment)
    assert link.environment.symbols == ["BTC/USD"]
    assert link.environment.data_file_of("BTC/USD") == (tmp_path / "data" / "kraken_btcusd_1h.csv").resolve()


@pytest.mark.parametrize(("change", "key", "reason"), [
    ({"data_file": "../../data/kraken_btcusd_1h.csv"}, "data_file",
     "names one file for 2 symbols: with several symbols, data_file is a pattern naming {base} and {quote}"),
    ({"data_file": None, "data_files": {"BTC/USD": "../../data/kraken_btcusd_1h.csv"}}, "data_files",
     "must name a file for each of symbols and no other: no file for ETH/USD"),
    ({"data_file": None, "data_files": {"BTC/USD": "a.csv", "ETH/USD": "b.csv", "SOL/USD": "c.csv"}}, "data_files",
     "must name a file for each of symbols and no other: SOL/USD not in symbols"),
    ({"data_files": {"BTC/USD": "a.csv", "ETH/USD": "b.csv"}}, "data_files",
     "give data_file (a pattern) or data_files, not both"),
    ({"symbol": "BTC/USD"}, "symbols", "give symbol (one) or symbols (several), not both"),
    ({"symbols": ["BTC/USD", "ETH/USD", "BTC/USD"]}, "symbols", "lists BTC/USD more than once"),
    ({"detail_data_file": "../../data/kraken_btcusd_1h.csv"}, "detail_data_file",
     "is for an environment of one symbol"),
    ({"symbols": []}, "(top level)", "give symbol (with data_file) or symbols"),
    ({"data_file": None}, "(top level)", "give data_file (a pattern) or data_files"),
])
def test_a_mistaken_form_is_one_error_at_its_key(tmp_path, change, key, reason):
    environment = {**two_symbols(), **change}
    environment = {name: value for name, value in environment.items() if value is not None}
    error = config_error(tmp_path, environment)
    assert (error.key, error.reason[:len(reason)]) == (key, reason)


def test_a_symbols_missing_file_is_named_with_its_symbol(tmp_path):
    path = tree(tmp_path, two_symbols())
    (tmp_path / "data" / "kraken_ethusd_1h.csv").unlink()
    with pytest.raises(ConfigError) as error:
        load_operation(path)
    assert (error.value.key, error.value.reason) == (
        "data_file", f"data file of ETH/USD not found: {(tmp_path / 'data' / 'kraken_ethusd_1h.csv').resolve()}")


def test_a_missing_file_of_the_mapping_is_named_at_its_key_and_the_cli_exits_2(tmp_path, capsys):
    environment = two_symbols(data_files={"BTC/USD": "../../data/kraken_btcusd_1h.csv",
                                          "ETH/USD": "../../data/nowhere.csv"})
    del environment["data_file"]
    path = tree(tmp_path, environment)
    assert main(["validate", str(path)]) == 2
    _, err = capsys.readouterr()
    env_file = tmp_path / "config" / "environments" / "bt.yaml"
    reported = [line for line in err.splitlines() if "config error" in line]
    assert reported == [f"run-operation: config error: {env_file}: data_files.ETH/USD: data file not found: "
                        f"{tmp_path / 'data' / 'nowhere.csv'}"], err
    assert "Traceback" not in err


def test_several_symbols_are_not_resampled(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_operation(tree(tmp_path, two_symbols(), {**DCA_BOTH, "timeframe": "4h"}))
    assert error.value.key == "strategy_links[0]"
    assert "a backtest of several symbols is not resampled" in error.value.reason


# --- one run, one account, every symbol's candles frame by frame -----------------------------------


def eth_like(btc: CandleColumns, lag: int = 0) -> CandleColumns:
    """ETH/USD made up from BTC/USD's candles as write_data does (without the rows of ETH_HOLES),
    each row priced as BTC/USD's `lag` rows later (the last ones wrapping round to the first)."""
    keep = np.ones(len(btc), dtype=bool)
    for hole in ETH_HOLES:
        keep[hole.start:hole.stop] = False
    times = btc.open_times[keep]
    missing = np.concatenate(([0], np.diff(times) // HOUR - 1))
    opens, highs, lows, closes = (np.roll(column, -lag)[keep] * 0.075 + 3
                                  for column in (btc.opens, btc.highs, btc.lows, btc.closes))
    return CandleColumns("ETH/USD", times, opens, highs, lows, closes, btc.volumes[keep], missing)


BTC = sample_candles()
ETH = eth_like(BTC)
SYMBOLS = ("BTC/USD", "ETH/USD")


def dca(quote_amount: float, interval_bars: int = 24, take_profit_pct: float = 10.0) -> list:
    return [(EmaDetector, {"fast_period": 6, "slow_period": 12}), (MarketRegimeClassifier, {"volatility_window": 6}),
            (DcaScheduleOpportunity, {"interval_bars": interval_bars}),
            (DcaPlanner, {"quote_amount": quote_amount, "min_order_quote": 1, "take_profit_pct": take_profit_pct}),
            (MarketOrderExecutor, {})]


def test_one_account_trades_both_symbols_and_a_buy_leaves_the_other_what_is_left(tmp_path):
    # Both scheduled on the same candles: each frame buys BTC/USD first (the symbols' order), then
    # ETH/USD with what BTC/USD left of the cash.
    replay = Replay(worker_specs=dca(600), symbols=SYMBOLS, starting_capital=1_000, fee_rate=0.001)
    replay.by_ticks(CandleWindow((BTC.rows(0, 48), ETH.rows(0, 48))))
    btc, eth = replay.fills
    assert (btc.asset, eth.asset) == SYMBOLS and btc.timestamp == eth.timestamp == BTC.open_time(23)
    assert btc.quantity * btc.price == pytest.approx(600)
    spent = btc.quantity * btc.price + btc.fee
    assert eth.quantity * eth.price + eth.fee == pytest.approx(1_000 - spent)  # all that was left
    assert eth.quantity * eth.price < 600 * 0.7
    assert replay.ledger.cash == pytest.approx(0, abs=1e-6)
    state = replay.ledger.state
    assert set(state.positions) == set(SYMBOLS)
    marks = {"BTC/USD": BTC.closes[47], "ETH/USD": ETH.closes[47]}
    held = sum(position.qty * marks[asset] for asset, position in state.positions.items())
    assert replay.ledger.equity() == pytest.approx(state.cash + held)


class Seen(IWorker):
    """Watches: every tick's asset, candle time, hole before it, and the candles of the other
    assets then in the tick cache (the frame's)."""

    category = WorkerCategory.EXECUTION

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self.ticks: list[tuple[str, datetime, int, tuple[str, ...]]] = []

    def process(self, asset: str) -> None:
        candle = self._candle(asset)
        open_assets = tuple(sorted(self.context._base))  # type: ignore[attr-defined]
        self.ticks.append((asset, candle.open_time, candle.missing_before, open_assets))


def test_a_symbols_hole_is_a_gap_of_that_symbol_only_the_others_trade_through_it():
    replay = Replay(worker_specs=[*dca(50, interval_bars=2), (Seen, {})], symbols=SYMBOLS, starting_capital=1e6)
    replay.by_ticks(CandleWindow((BTC.rows(290, 320), ETH.rows(287, 314))))
    seen = replay.workers[-1]
    assert isinstance(seen, Seen)
    hole = [BTC.open_time(row) for row in ETH_HOLES[0]]
    by_time = {}
    for asset, moment, missing, frame in seen.ticks:
        by_time.setdefault(moment, []).append((asset, missing, frame))
    assert all(by_time[moment] == [("BTC/USD", 0, ("BTC/USD",))] for moment in hole)  # BTC/USD alone
    after = BTC.open_time(ETH_HOLES[0].stop)
    assert by_time[after] == [("BTC/USD", 0, SYMBOLS), ("ETH/USD", 3, SYMBOLS)]  # one frame, ETH's gap marked
    assert len(seen.ticks) == 30 + 27
    traded = {(fill.asset, fill.timestamp) for fill in replay.fills}
    assert ("BTC/USD", hole[1]) in traded and not any(moment in hole for asset, moment in traded if asset != "BTC/USD")
    assert {asset for asset, _ in traded} == set(SYMBOLS)


def test_a_link_started_again_marks_each_symbols_hole_since_its_stop():
    replay = Replay(worker_specs=dca(50), symbols=SYMBOLS)
    replay.by_ticks(CandleWindow((BTC.rows(0, 10), ETH.rows(0, 8))))  # BTC/USD up to row 9, ETH/USD to row 7
    link = StrategyLink(strategy_blueprint_id="dca", execution_environment_id="bt")
    stopped = StrategyRun(link, replay.manager, threading.Event())
    continued = ContinuedRun(stopped, link, timedelta(hours=1), LinkStop(threading.Event()), 16)
    assert continued.submit(CandleWindow((BTC.rows(20, 30), ETH.rows(20, 30))))
    (queued,) = continued._ticks
    assert isinstance(queued, CandleWindow)
    assert [int(columns.missing_before[0]) for columns in queued.columns] == [10, 12]


# --- the whole daemon: a run's summaries, report and metrics, per asset and in total ----------------


def run_cli(root: Path, environment: dict, strategy: dict = DCA_BOTH, *args: str) -> tuple[list[dict], str, Path]:
    """A real `run-operation --report` of one link on environment: its log lines, what it printed
    and its report folder."""
    operation = tree(root, environment, strategy)
    done = subprocess.run([sys.executable, "-m", "services.cli", str(operation), "--report", str(root / "report"),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "SOURCE_DATE_EPOCH": "1680307200"})
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")], done.stdout, root / "report"


def test_a_two_symbol_backtest_reports_each_asset_and_the_total(tmp_path):
    lines, printed, report = run_cli(tmp_path, two_symbols())
    (summary,) = [line for line in lines if line["event"] == "strategy_summary"]
    assert summary["status"] == "completed" and summary["ticks_processed"] == len(BTC) + len(ETH)
    per_asset = {figures["asset"]: figures for figures in summary["per_asset"]}
    assert set(per_asset) == set(SYMBOLS) and all(figures["trades"] > 10 for figures in per_asset.values())
    assert sum(figures["trades"] for figures in per_asset.values()) == summary["trades"]
    assert sum(figures["fees_paid"] for figures in per_asset.values()) == pytest.approx(summary["fees_paid"])
    assert sum(figures["pnl"] for figures in per_asset.values()) == pytest.approx(summary["pnl"], abs=1e-5)
    trades = (report / "dca@bt" / "trades.csv").read_text().splitlines()[1:]
    assert {row.split(",")[1] for row in trades} == set(SYMBOLS)
    saved = json.loads((report / "dca@bt" / "summary.json").read_text())
    assert saved["per_asset"] == summary["per_asset"]
    # equity.csv: a row per candle of each symbol; the rows of one time carry the same equity.
    equity_rows = [row.split(",") for row in (report / "dca@bt" / "equity.csv").read_text().splitlines()[1:]]
    assert len(equity_rows) == len(BTC) + len(ETH)
    by_time: dict[str, set[str]] = {}
    for time, _, _, _, _, equity, _ in equity_rows:
        by_time.setdefault(time, set()).add(equity)
    assert all(len(equities) == 1 for equities in by_time.values())
    assert "<h2>By asset</h2>" in (report / "report.html").read_text()
    assert "by asset" in printed and "ETH/USD" in printed
    gaps = [line for line in lines if line["event"] == "data_gap"]
    assert [(line["symbol"], line["missing_candles"]) for line in gaps] == [("ETH/USD", 3), ("ETH/USD", 1)]


def test_the_metrics_give_each_asset_and_the_total(tmp_path):
    service = OperationService(load_operation(tree(tmp_path, two_symbols())), WorkerFactory())
    server = StatusServer(service, "127.0.0.1", 0)
    server.start()
    try:
        (summary,) = service.run()
        client = Client(server.port)
        metrics = client.metrics()
        _, listed = client.json("/strategies/dca@bt")
    finally:
        server.stop()
    assert isinstance(listed, dict)
    assert listed["account"]["per_asset"] == {figures.asset: {
        "trades": figures.trades, "fees_paid": pytest.approx(figures.fees_paid),
        "volume": pytest.approx(figures.volume), "position_value": pytest.approx(figures.position_value),
        "pnl": pytest.approx(figures.pnl)} for figures in summary.account.per_asset}
    account = summary.account
    for figures in account.per_asset:
        label = (("asset", figures.asset), ("strategy_link", "dca@bt"))
        assert metrics[("opdaemon_asset_trades_total", label)] == figures.trades > 0
        assert metrics[("opdaemon_asset_fees_total", label)] == pytest.approx(figures.fees_paid)
        assert metrics[("opdaemon_asset_pnl", label)] == pytest.approx(figures.pnl)
        assert metrics[("opdaemon_position_value", label)] == pytest.approx(figures.position_value)
    assert sum(figures.pnl for figures in account.per_asset) == pytest.approx(account.pnl)
    assert metrics[("opdaemon_trades_total", (("strategy_link", "dca@bt"),))] == account.trades


# --- the columnar replay of several symbols --------------------------------------------------------


def without_drawdown_threat(path: Path, directory: Path) -> Path:
    """The blueprint file without its drawdown threat (it reads the account's equity, which moves
    with every asset held: a run of several assets with it replays tick by tick)."""
    spec = yaml.safe_load(path.read_text())
    spec["workforce"]["threat"] = [w for w in spec["workforce"].get("threat", []) if w["plugin"] != "drawdown_threat"]
    return write_yaml(directory / path.name, spec)


class EquityRows:
    """A TickRecorder that keeps each row it is told of: (open time, symbol, equity)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, float]] = []

    def closed(self, candles: CandleColumns, rows: range, equities: EquityLine | Sequence[float],
               account: object) -> None:
        self.rows += zip(candles.open_times[rows.start:rows.stop].tolist(), [candles.symbol] * len(rows),
                         row_equities(equities, candles.closes[rows.start:rows.stop]), strict=True)


LAGGING_ETH = eth_like(BTC, lag=37)  # its signals come on other candles than BTC/USD's
LATE_ETH = LAGGING_ETH.rows(200, len(ETH) - 150)  # starts and ends inside the range: windows without ETH/USD


@pytest.mark.parametrize("blueprint_name", ["smart_dca_btc.yaml", "ict_smc_strategy.yaml", "ema_cross.yaml"])
@pytest.mark.parametrize("sizes", [[4096], [1], [7, 300, 1, 2, 50]], ids=["4096", "1", "mixed"])
@pytest.mark.parametrize("eth", [ETH, LAGGING_ETH, LATE_ETH], ids=["eth", "lagging_eth", "late_eth"])
def test_several_symbols_trade_identically_columnar_or_tick_by_tick(tmp_path, blueprint_name, sizes, eth):
    blueprint_file = without_drawdown_threat(REPO / "config" / "strategies" / blueprint_name, tmp_path)
    made: list[Replay] = []

    def make() -> Replay:
        replay = Replay(blueprint_file=blueprint_file, symbols=SYMBOLS, fee_rate=0.001)
        replay.manager.recorder = EquityRows()
        made.append(replay)
        return replay

    replay = assert_same_trades(make, CandleWindow((BTC, eth)), sizes)
    by_ticks, by_blocks = (made_replay.manager.recorder for made_replay in made)
    assert isinstance(by_ticks, EquityRows) and isinstance(by_blocks, EquityRows)
    assert by_blocks.rows == by_ticks.rows and len(by_ticks.rows) == len(BTC) + len(eth)
    if eth is not ETH or blueprint_name != "ema_cross.yaml":  # all in: ETH/USD's crosses are BTC/USD's, after it
        assert {fill.asset for fill in replay.fills} == set(SYMBOLS)


def test_a_worker_without_a_columnar_replay_of_several_assets_replays_them_tick_by_tick(tmp_path):
    ict = REPO / "config" / "strategies" / "ict_smc_strategy.yaml"  # with its drawdown threat
    both = Replay(blueprint_file=ict, symbols=SYMBOLS)
    assert both.manager.why_not_columnar(CandleWindow((BTC, ETH))) == (
        "workers without a columnar replay of several assets: drawdown_threat")
    assert Replay(blueprint_file=ict).manager.why_not_columnar(BTC) is None  # one asset: columnar
    replayed = both.manager.process(CandleWindow((BTC.rows(0, 500), ETH.rows(0, 497))), threading.Event())
    assert replayed == (997, 997)


def test_the_cli_and_its_report_are_the_same_for_two_symbols_columnar_or_tick_by_tick(tmp_path):
    lines, printed, report = run_cli(tmp_path / "columnar", two_symbols())
    tick_strategy = {**DCA_BOTH, "workforce": {**DCA_BOTH["workforce"], "execution": [
        *DCA_BOTH["workforce"]["execution"], {"plugin": "tests.columnar:NotColumnar"}]}}
    tick_lines, tick_printed, tick_report = run_cli(tmp_path / "ticks", two_symbols(), tick_strategy)
    modes = {(line["mode"], line["reason"]) for line in lines if line["event"] == "backtest_replay"}
    assert modes == {("columnar", None)}
    assert {line["mode"] for line in tick_lines if line["event"] == "backtest_replay"} == {"tick_by_tick"}
    summary = [{k: v for k, v in line.items() if k != "timestamp"} for line in lines
               if line["event"] == "strategy_summary"]
    assert summary == [{k: v for k, v in line.items() if k != "timestamp"} for line in tick_lines
                       if line["event"] == "strategy_summary"]
    assert printed.replace("columnar", "ticks") == tick_printed
    for name in ("trades.csv", "orders.csv", "equity.csv", "summary.json"):
        assert (report / "dca@bt" / name).read_text() == (tick_report / "dca@bt" / name).read_text(), name


# --- the shipped example -------------------------------------------------------------------------


def test_the_shipped_multi_asset_example_runs_on_its_two_files(tmp_path):
    """config/operations/multi_asset_dca_demo.yaml as shipped, its data (not bundled: fetched with
    download-data) stood in for by this test's files, written as the Parquet files it names."""
    for folder, name in (("operations", "multi_asset_dca_demo"), ("strategies", "smart_dca_btc_eth"),
                         ("environments", "backtest_2023_q1_btc_eth")):
        (tmp_path / "config" / folder).mkdir(parents=True)
        shutil.copy(REPO / "config" / folder / f"{name}.yaml", tmp_path / "config" / folder)
    made, data = write_data(tmp_path / "made"), tmp_path / "data"
    data.mkdir()
    for name in ("kraken_btcusd_1h", "kraken_ethusd_1h"):
        pyarrow.parquet.write_table(pyarrow.csv.read_csv(made / f"{name}.csv"), data / f"{name}.parquet")
    operation = tmp_path / "config" / "operations" / "multi_asset_dca_demo.yaml"
    done = subprocess.run([sys.executable, "-m", "services.cli", str(operation)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    (summary,) = [line for line in lines if line["event"] == "strategy_summary"]
    assert summary["status"] == "completed" and summary["ticks_processed"] == len(BTC) + len(ETH)
    assert [figures["asset"] for figures in summary["per_asset"]] == list(SYMBOLS)
    assert all(figures["trades"] > 5 for figures in summary["per_asset"])
    assert {(line["mode"], line["reason"]) for line in lines if line["event"] == "backtest_replay"} == {
        ("columnar", None)}


def test_the_check_command_checks_the_blueprint_on_each_symbol(tmp_path):
    operation = tree(tmp_path, two_symbols())
    done = subprocess.run([sys.executable, "-m", "services.cli", "check", str(operation)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"run-operation: check: OK: {operation}: every backtest link's blueprint passed"
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [(line["symbol"], line["candles"]) for line in lines if line["event"] == "check_link_started"] == [
        ("BTC/USD", len(BTC)), ("ETH/USD", len(ETH))]
