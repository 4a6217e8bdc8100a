"""--report DIR end to end: real backtests through the CLI, the files they leave, the page a real
browser renders from them."""

import csv
import json
import re
import shutil
import signal
import subprocess
import tracemalloc
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import FillDTO, OrderDTO, OrderSide, OrderType
from backend.market_data.timeframes import timeframe_seconds
from backend.performance import performance_of
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from backend.state import StateStore, StoreJournal
from backend.trade_stats import trade_stats_of
from services.cli import main
from services.report.recorder import RunRecorder
from services.tick_cache_manager import TickCacheManager
from tests.daemon import Daemon
from tests.helpers import (
    REPO,
    START,
    backtest_environment,
    blueprint,
    process_tick,
    simulated_account,
    tick,
    write_config_tree,
)
from tests.probes import PLUGINS_WITH_PROBE, probe_blueprint
from tests.test_cli import DEMO, LINKS, json_lines

EXTERNAL_REFERENCE = re.compile(r"""(?:\b(?:src|href|xlink:href)\s*=\s*["']?\s*|url\(\s*["']?\s*|@import\s+["']?)"""
                                r"""(?:https?:)?//""", re.IGNORECASE)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def assert_files_agree(run_dir: Path, logged_summary: dict) -> dict:
    """The run's three files against its logged strategy_summary and against each other."""
    summary = json.loads((run_dir / "summary.json").read_text())
    for key, value in logged_summary.items():
        if key not in ("event", "level", "timestamp"):
            assert summary[key] == value, key
    trades, equity = rows(run_dir / "trades.csv"), rows(run_dir / "equity.csv")
    assert len(trades) == summary["trades"] == summary["trades_recorded"]
    assert len(equity) == summary["ticks_processed"] == summary["equity_rows"]
    if equity and summary["status"] != "failed":  # a failed run's account is marked at its failing tick's close
        assert round(float(equity[-1]["equity"]), 6) == summary["final_equity"]
    if equity:
        assert equity[0]["time"] == summary["first_tick"] and equity[-1]["time"] == summary["last_tick"]
    # The cash the trades leave, replayed from the starting capital, is the account's.
    cash = summary["metrics"]["starting_equity"]
    for trade in trades:
        notional, fee = float(trade["quantity"]) * float(trade["price"]), float(trade["fee"])
        cash += -notional - fee if trade["side"] == "buy" else notional - fee
        assert cash == pytest.approx(float(trade["cash_after"]), abs=1e-6)
    if equity:
        assert cash == pytest.approx(float(equity[-1]["cash"]), abs=1e-6)
    if equity and summary["status"] != "failed" and len({row["symbol"] for row in equity}) == 1:
        # The PnL, from the fills alone: that cash plus what they left held, at the last close.
        held = sum(float(t["quantity"]) * (1 if t["side"] == "buy" else -1) for t in trades)
        pnl = cash + held * float(equity[-1]["close"]) - summary["metrics"]["starting_equity"]
        assert summary["pnl"] == pytest.approx(pnl, abs=1e-5)
        assert summary["pnl_pct"] == pytest.approx(pnl / summary["metrics"]["starting_equity"] * 100, abs=1e-5)
    # The metrics are those of the curve in equity.csv, and agree with the account's own drawdown.
    curve = [(datetime.fromisoformat(r["time"]), float(r["equity"]), float(r["position"]) > 0) for r in equity]
    recomputed = performance_of(curve, summary["metrics"]["starting_equity"], timeframe_seconds(summary["timeframe"]))
    assert summary["metrics"] == pytest.approx(recomputed.__dict__)
    assert summary["metrics"]["max_drawdown_pct"] == pytest.approx(summary["max_drawdown_pct"], abs=1e-6)
    # The trade statistics are those of the fills in trades.csv.
    fills = [FillDTO(asset=r["symbol"], side=OrderSide(r["side"]), quantity=float(r["quantity"]),
                     price=float(r["price"]), fee=float(r["fee"]), timestamp=datetime.fromisoformat(r["time"]))
             for r in trades]
    assert leaves(summary["trade_stats"]) == pytest.approx(leaves(asdict(trade_stats_of(fills))))
    # orders.csv: each order's last row holds what was filled of it, the fills trades.csv has.
    last_state = {row["client_order_id"]: row for row in rows(run_dir / "orders.csv")}
    filled = [float(row["filled_quantity"]) for row in last_state.values()]
    assert sum(filled) == pytest.approx(sum(float(trade["quantity"]) for trade in trades))
    assert sum(float(row["fee"]) for row in last_state.values()) == pytest.approx(
        sum(float(trade["fee"]) for trade in trades))
    return summary


def leaves(tree: dict, prefix: str = "") -> dict:
    """A nested dict's values by their path: `per_month/2023-01/pnl`."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(leaves(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def assert_self_contained(page: str) -> None:
    assert not EXTERNAL_REFERENCE.search(page), EXTERNAL_REFERENCE.search(page)
    assert "<script" not in page.lower() and "<link" not in page.lower()


def test_report_of_the_demo_agrees_with_the_summaries(tmp_path, capsys):
    report = tmp_path / "report"
    assert main([DEMO, "--report", str(report)]) == 0
    out, err = capsys.readouterr()
    assert f"Report: {report / 'report.html'}" in out
    events = json_lines(err)
    logged = {e["strategy_link"]: e for e in events if e["event"] == "strategy_summary"}
    summaries = {link: assert_files_agree(report / link, logged[link]) for link in LINKS}
    for summary in summaries.values():
        assert summary["status"] == "completed" and summary["trades"] > 0 and summary["ticks_processed"] == 2160
        assert summary["metrics"]["sharpe"] is not None and 0 < summary["metrics"]["exposure_pct"] < 100
    written = next(e for e in events if e["event"] == "report_written")
    assert written["path"] == str(report / "report.html") and written["strategy_links"] == list(LINKS)

    page = (report / "report.html").read_text()
    assert_self_contained(page)
    assert page.count("<svg") == 1
    for link, summary in summaries.items():
        assert link in page
        stats = summary["trade_stats"]
        assert stats["round_trips"] >= 5 and set(stats["per_month"]) == {"2023-01", "2023-02", "2023-03"}
        assert f"round trips {stats['round_trips']} (open {stats['open_round_trips']})" in out
        assert f"win rate {stats['win_rate_pct']:.1f}%" in out
        row = page[page.index(f"<tr><td>{link}</td><td>{stats['round_trips']}</td>"):]
        row = row[:row.index("</tr>")]
        for figure in (f"{stats['win_rate_pct']:.1f}", f"{stats['expectancy']:+,.2f}", f"{stats['best_trade']:+,.2f}",
                       f"{stats['worst_trade']:+,.2f}", f"{stats['average_holding_hours']:,.1f}"):
            assert f"<td>{figure}</td>" in row, (figure, row)
        march = stats["per_month"]["2023-03"]
        assert (f"<tr><td>{link}</td><td>2023-03</td><td>{march['round_trips']}</td><td>{march['wins']}</td>"
                in page)
        assert f"{summary['final_equity']:,.2f}" in page and f"{summary['pnl_pct']:+.2f}" in page
        assert f"{summary['metrics']['sharpe']:.2f}" in page
        assert f'href="{link}/trades.csv"' in page and f'href="{link}/orders.csv"' in page  # relative links


def test_report_of_a_failed_run_holds_what_it_did_until_it_failed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("services.worker_factory.PLUGINS", PLUGINS_WITH_PROBE)
    failing = blueprint({
        "opportunity": [{"plugin": "dca_schedule_opportunity", "params": {"interval_bars": 2}},
                        {"plugin": "probe", "params": {"tag": "bad", "crash_at_tick": 20}}],
        "planning": [{"plugin": "position_sizer"}],
    })
    path = write_config_tree(tmp_path, [("bad", "bt"), ("good", "bt")],
                             {"bad": failing, "good": probe_blueprint("good")}, {"bt": backtest_environment()},
                             [tick(i, 100 + i % 7) for i in range(60)])
    report = tmp_path / "report"
    assert main([str(path), "--report", str(report)]) == 1
    _, err = capsys.readouterr()
    logged = {e["strategy_link"]: e for e in json_lines(err) if e["event"] == "strategy_summary"}
    bad = assert_files_agree(report / "bad@bt", logged["bad@bt"])
    assert bad["status"] == "failed" and bad["ticks_processed"] == 19 and bad["trades"] > 0
    good = assert_files_agree(report / "good@bt", logged["good@bt"])
    assert good["status"] == "completed" and good["ticks_processed"] == 60
    page = (report / "report.html").read_text()
    assert "failed" in page and "ZeroDivisionError: probe crashed on purpose" in page


@pytest.mark.e2e
def test_report_of_a_run_stopped_by_a_signal(tmp_path):
    strategy = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}],
                          "planning": [{"plugin": "position_sizer"}]})
    path = write_config_tree(tmp_path, [("dca", "bt")], {"dca": strategy},
                             {"bt": backtest_environment(end="2050-01-01T00:00:00Z")},
                             [tick(i, 100 + (i % 50)) for i in range(50_000)])
    report = tmp_path / "report"
    daemon = Daemon([path, "--report", report])
    # The feed reads up to a few blocks of 4,096 candles ahead of the run: at 60 % read, the run
    # has processed some.
    daemon.wait_for_line(lambda line: '"backtest_progress"' in line and json.loads(line)["percent"] >= 60)
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(timeout=30) == 0
    daemon.wait_for_line(lambda line: '"report_written"' in line)
    logged = next(e for e in map(json.loads, daemon.stderr_lines) if e["event"] == "strategy_summary")
    summary = assert_files_agree(report / "dca@bt", logged)
    assert summary["status"] == "stopped" and 0 < summary["ticks_processed"] < 50_000
    assert "dca@bt" in (report / "report.html").read_text()


def test_a_report_dir_that_cannot_be_written_stops_before_anything_starts(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the report dir should be")
    assert main([DEMO, "--report", str(blocker / "report")]) == 2
    _, err = capsys.readouterr()
    assert f"run-operation: config error: --report {blocker / 'report'}: cannot write the report there" in err
    assert "operation_started" not in err and "Traceback" not in err


def test_recording_does_not_grow_with_the_run(tmp_path):
    """A months-long run: the recorder's memory is the same after 2,000 ticks as after 20,000."""
    ledger = Ledger(10_000)
    account = simulated_account(ledger)
    manager = TickCacheManager(TradingContextProvider(), OhlcvProvider(0), [], account, ["BTC/USD"])
    recorder = RunRecorder(tmp_path / "run", "run@bt", "1h", manager)
    tracemalloc.start()
    try:
        for index in range(20_000):
            process_tick(manager, tick(index, 100 + index % 17))
            if index == 1_999:
                after_2k = tracemalloc.get_traced_memory()[0]
        after_20k = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    recorder.close()
    assert recorder.equity_rows == 20_000 and len(rows(tmp_path / "run" / "equity.csv")) == 20_000
    assert after_20k - after_2k < 64_000  # bytes (18,000 rows kept would be over 1 MB)


def test_orders_csv_holds_every_state_each_order_went_through(tmp_path):
    """A resting limit buy that fills two candles later, a protected entry whose stop fills (its
    take-profit then cancelled) and a post-only order refused: one row per state, on its candle."""
    account = simulated_account(Ledger(10_000), fee_rate=0.001)
    manager = TickCacheManager(TradingContextProvider(), OhlcvProvider(0), [], account, ["BTC/USD"])
    recorder = RunRecorder(tmp_path / "run", "run@bt", "1h", manager)
    hour = tick(1, 100).timestamp - tick(0, 100).timestamp
    process_tick(manager, tick(0, 100))
    limit = account.place(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=10, reference_price=100,
                                   reason="dip", order_type=OrderType.LIMIT, limit_price=90), START)
    process_tick(manager, tick(1, 95, low=91))  # not through 90
    process_tick(manager, tick(2, 92, low=85))  # through: filled at 90 (maker)
    account.place(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=5, reference_price=92, reason="entry",
                           stop_loss_price=80, take_profit_price=120), START + 2 * hour)
    account.place(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=1, reference_price=92, reason="maker",
                           order_type=OrderType.LIMIT, limit_price=95, post_only=True), START + 2 * hour)
    process_tick(manager, tick(3, 78, open=85))  # through the stop at 80: the whole position sold
    recorder.close()
    written = rows(tmp_path / "run" / "orders.csv")
    assert list(written[0]) == ["time", "client_order_id", "symbol", "side", "type", "quantity", "limit_price",
                                "trigger_price", "state", "filled_quantity", "average_price", "fee", "protective",
                                "reason", "detail"]
    by_order: dict[str, list[dict[str, str]]] = {}
    for row in written:
        by_order.setdefault(row["client_order_id"], []).append(row)
    # Orders in the order they were placed: the limit, the entry, its stop and take-profit, the post-only.
    limit_rows, entry_rows, stop_rows, take_profit_rows, maker_rows = by_order.values()
    assert limit.client_order_id == limit_rows[0]["client_order_id"]

    def brief(rows_: list[dict[str, str]]) -> list[tuple]:
        return [(r["time"], r["state"], float(r["filled_quantity"]), float(r["average_price"] or 0),
                 float(r["fee"] or 0)) for r in rows_]

    hours = [(START + i * hour).isoformat() for i in range(4)]
    assert brief(limit_rows) == [(hours[0], "open", 0, 0, 0),
                                 (hours[2], "filled", 10, 90, pytest.approx(10 * 90 * 0.001))]
    assert limit_rows[0] | {"time": "", "state": ""} == {
        "time": "", "client_order_id": limit.client_order_id, "symbol": "BTC/USD", "side": "buy", "type": "limit",
        "quantity": "10.0", "limit_price": "90.0", "trigger_price": "", "state": "", "filled_quantity": "0.0",
        "average_price": "", "fee": "0.0", "protective": "False", "reason": "dip", "detail": ""}
    assert brief(entry_rows) == [(hours[2], "filled", 5, 92, pytest.approx(5 * 92 * 0.001))]
    assert [(r["type"], r["trigger_price"], r["protective"], r["side"]) for r in (stop_rows[0], take_profit_rows[0])
            ] == [("stop_loss", "80.0", "True", "sell"), ("take_profit", "120.0", "True", "sell")]
    held = 15.0  # the limit's 10 and the entry's 5: the stop covers both
    assert brief(stop_rows) == [(hours[2], "open", 0, 0, 0), (hours[3], "filled", held, 80,
                                                               pytest.approx(held * 80 * 0.001))]
    assert brief(take_profit_rows) == [(hours[2], "open", 0, 0, 0), (hours[3], "canceled", 0, 0, 0)]
    assert brief(maker_rows) == [(hours[2], "rejected", 0, 0, 0)]
    assert "post only" in maker_rows[0]["detail"] and take_profit_rows[1]["detail"] == "canceled"
    assert account.ledger.position("BTC/USD").qty == 0


def test_a_paper_runs_orders_csv_is_written_as_booked_and_agrees_with_the_journal(tmp_path):
    """Each row is on disk once booked; after a restart, the order resumed from the journal is
    reported from its next state on, the states as the journal has them (but its intent)."""
    store = StateStore.open(tmp_path, "op")
    link, limit_buy = "p@paper", OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=10, reference_price=100,
                                          reason="dip", order_type=OrderType.LIMIT, limit_price=90)

    def paper_run(directory: Path) -> tuple[StrategyAccount, TickCacheManager, RunRecorder]:
        account = StrategyAccount(Ledger(10_000, store.load_account(link)), SimulatedGateway(FillRules(0.001, 0.001)),
                                  StoreJournal(store, link))
        manager = TickCacheManager(TradingContextProvider(), OhlcvProvider(0), [], account, ["BTC/USD"])
        return account, manager, RunRecorder(directory, link, "1h", manager)

    account, manager, recorder = paper_run(tmp_path / "first")
    process_tick(manager, tick(0, 100))
    ticket = account.place(limit_buy, START)
    assert [(r["client_order_id"], r["state"]) for r in rows(tmp_path / "first" / "orders.csv")] == [
        (ticket.client_order_id, "open")]  # flushed, the recorder still open
    recorder.close()

    _, manager, recorder = paper_run(tmp_path / "second")  # a restart
    process_tick(manager, tick(1, 92, low=85))
    (filled,) = rows(tmp_path / "second" / "orders.csv")
    assert (filled["client_order_id"], filled["state"], filled["filled_quantity"], filled["average_price"]) == (
        ticket.client_order_id, "filled", "10.0", "90.0")
    assert [event.state.value for event in store.order_events(link)] == ["pending", "open", "filled"]
    recorder.close()
    store.close()


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium (apt-get install -y chromium)")
def test_report_renders_in_a_headless_browser(tmp_path, capsys):
    """scripts/screenshot_report.sh: the charts are drawn, offline, in each run's colour."""
    from PIL import Image

    report = tmp_path / "report"
    assert main([DEMO, "--report", str(report)]) == 0
    capsys.readouterr()
    screenshot = tmp_path / "report.png"
    subprocess.run([REPO / "scripts/screenshot_report.sh", report / "report.html", screenshot, "1400,1100"],
                   check=True, timeout=90, capture_output=True)
    image = Image.open(screenshot).convert("RGB")
    width, height = image.size
    pixels = image.load()
    # The runs' colours, as report.html gives them (the table's swatches) and the charts draw them.
    colours = re.findall(r'class="swatch" style="background:#([0-9a-f]{6})"', (report / "report.html").read_text())
    assert len(colours) == 2
    for colour in colours:
        rgb = tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))
        columns = {x for x in range(width) for y in range(0, height, 2) if pixels[x, y] == rgb}
        # A curve spans the chart's width; the table's 10-pixel swatch alone could never do that.
        assert len(columns) > width // 3, (colour, len(columns))
    # The trade statistics, as the browser built the page: a row per run with its win rate.
    rendered = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                               "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}",
                               "--dump-dom", f"file://{report / 'report.html'}"],
                              check=True, timeout=90, capture_output=True, text=True).stdout
    assert "<h2>Round trips</h2>" in rendered and "<h2>Round trips by asset and by month</h2>" in rendered
    for run in ("ict_smc_strategy@backtest_2023_q1", "smart_dca_btc@backtest_2023_q1"):
        stats = json.loads((report / run / "summary.json").read_text())["trade_stats"]
        assert stats["round_trips"] > 0
        row = re.search(rf"<tr><td>{re.escape(run)}</td><td>{stats['round_trips']:,}</td><td>[^<]*</td>"
                        rf"<td>{stats['win_rate_pct']:.1f}</td>", rendered)
        assert row is not None, (run, stats["round_trips"], stats["win_rate_pct"])


def test_long_curves_and_many_trades_are_thinned_without_losing_extremes(tmp_path, monkeypatch):
    from services.report import html

    run = tmp_path / "run"
    run.mkdir()
    start = datetime.fromisoformat("2024-01-01T00:00:00+00:00")
    with open(run / "equity.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("time", "equity", "drawdown_pct"))
        for index in range(10_000):
            equity = {7_777: 50.0, 3_333: 250.0}.get(index, 100.0 + index % 3)
            writer.writerow(((start + timedelta(minutes=5 * index)).isoformat(), equity, 50.0 if index == 7_777 else 1))
    curve = html.read_curve(run / "equity.csv", 10_000, buckets=100)
    assert len(curve.times) <= 500
    assert min(curve.equity) == 50.0 and max(curve.equity) == 250.0 and max(curve.drawdown) == 50.0
    assert curve.times[0] == start and curve.times[-1] == start + timedelta(minutes=5 * 9_999)
    assert curve.times == sorted(curve.times)

    with open(run / "trades.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("time", "side", "equity_after"))
        for index in range(95):
            writer.writerow(((start + timedelta(hours=index)).isoformat(), "buy" if index % 2 else "sell", 100))
    monkeypatch.setattr(html, "MAX_MARKERS", 10)
    markers, step = html.read_markers(run / "trades.csv", 95)
    assert step == 10 and len(markers["buy"][0]) + len(markers["sell"][0]) == 10
