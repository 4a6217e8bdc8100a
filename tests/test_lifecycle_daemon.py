"""Independent link lifecycle and reload end to end: the real CLI in a real process, paper trading
against the fake Kraken in this process, driven over real HTTP (the status server) and real
SIGHUPs; its state store read after it exits."""

import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from backend.state import LinkControls
from tests.daemon import Daemon, wait_until, write_hourly_csv
from tests.fake_kraken import FakeKraken
from tests.helpers import REPO, backtest_environment, write_config_tree, write_yaml
from tests.live_support import KEY_ENV, SECRET_ENV
from tests.probes import probe_blueprint
from tests.test_plugins import SAMPLE_PLUGINS
from tests.test_restart import (
    BUY_USD,
    CREDENTIALS,
    FAST_CLI,
    Minutes,
    dca_blueprint,
    let_it_poll,
    state_of,
    stop,
    wait_for,
)
from tests.test_status_server import Client

pytestmark = pytest.mark.e2e

TOKEN_ENV, TOKEN = "OPDAEMON_TEST_CONTROL_TOKEN", "lifecycle-daemon-token"


def paper_settings(fake: FakeKraken) -> dict:
    return {
        "type": "live", "display_name": "fake kraken, paper", "exchange": "kraken", "symbols": ["BTC/USD"],
        "timeframe": "1m", "mode": "paper", "api_key_env": KEY_ENV, "api_secret_env": SECRET_ENV,
        "api_url": fake.url, "market_data": "rest", "poll_interval_seconds": 0.05, "startup_timeout_seconds": 2,
        "starting_capital": 10_000, "fee_rate": 0.0026,
    }


def paper_operation(root: Path, fake: FakeKraken, blueprints: Mapping[str, dict],
                    extra_links: tuple[tuple[str, str], ...] = (), extra_environments: Mapping[str, dict] = {},
                    ) -> Path:
    """config/ under root: one link per blueprint on the paper environment `live` (plus extra links),
    control through the status server enabled."""
    return write_config_tree(root, [*((b, "live") for b in blueprints), *extra_links], dict(blueprints),
                             {"live": paper_settings(fake), **extra_environments},
                             operation_settings={"control_token_env": TOKEN_ENV})


@pytest.fixture
def daemons() -> Iterator:
    """start(operation, data_dir): run-operation with the status server on a free port; (daemon,
    its HTTP client). Any still running when the test ends is killed by its pid."""
    started: list[Daemon] = []

    def start(operation: Path, data_dir: Path) -> tuple[Daemon, Client]:
        daemon = Daemon([str(operation), "--data-dir", str(data_dir), "--http", "127.0.0.1:0"], module=FAST_CLI,
                        env={**CREDENTIALS, TOKEN_ENV: TOKEN})
        started.append(daemon)
        (listening,) = wait_for(daemon, "status_server_started")
        return daemon, Client(listening["port"])

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(5)


def post(client: Client, path: str) -> dict:
    status, body = client.json(path, "POST", TOKEN)
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def fills_of(daemon: Daemon, link: str) -> list[str]:
    return [e["candle_time"] for e in daemon.events("order_filled") if e["strategy_link"] == link]


@pytest.mark.slow
def test_stop_and_start_keep_the_paper_account_and_pause_and_stop_survive_a_restart(tmp_path, fake, daemons):
    operation, data_dir = paper_operation(tmp_path, fake, {"dca": dca_blueprint(), "other": dca_blueprint()}), \
        tmp_path / "state"
    minutes = Minutes(fake, 4)  # rows 0-2 closed: a fresh start trades row 2
    first, client = daemons(operation, data_dir)
    wait_for(first, "order_filled", count=2)

    stopped = post(client, "/strategies/dca@live/stop")
    assert (stopped["status"], stopped["account"]["trades"]) == ("stopped", 1)
    minutes.add()  # row 3 closes: only the other link trades it
    wait_for(first, "order_filled", count=2, strategy_link="other@live")
    let_it_poll(fake)
    assert client.json("/strategies/dca@live")[1]["account"]["trades"] == 1  # type: ignore[index]

    started = post(client, "/strategies/dca@live/start")
    assert (started["status"], started["account"]["trades"]) == ("running", 1)
    minutes.add()  # row 4 closes: both trade it, dca on the account it had
    wait_for(first, "order_filled", count=2, strategy_link="dca@live")
    wait_for(first, "order_filled", count=3, strategy_link="other@live")
    # The status snapshot is published once the tick is done, a moment after its fill is logged.
    wait_until(lambda: client.json("/strategies/dca@live")[1]["account"]["trades"] == 2,  # type: ignore[index]
               "dca's second trade in its status", daemon=first)
    account = client.json("/strategies/dca@live")[1]["account"]  # type: ignore[index]
    assert account["trades"] == 2 and account["cash"] == pytest.approx(10_000 - 2 * BUY_USD, abs=1)
    assert fills_of(first, "dca@live") == [minutes.time(2), minutes.time(4)]  # row 3 missed while stopped
    assert fills_of(first, "other@live") == [minutes.time(2), minutes.time(3), minutes.time(4)]

    post(client, "/strategies/dca@live/pause")
    post(client, "/strategies/dca@live/stop")
    stop(first)

    second, client = daemons(operation, data_dir)
    (restored,) = wait_for(second, "link_controls_restored")
    assert (restored["strategy_link"], restored["paused"], restored["stopped"]) == ("dca@live", True, True)
    wait_for(second, "warmup_replayed")  # rows up to 4 seen again; a row closing from now on is traded
    kept = client.json("/strategies/dca@live")[1]
    assert (kept["status"], kept["account"]["trades"]) == ("stopped", 2)  # type: ignore[index]
    assert kept["paused"] is not None  # type: ignore[index]
    minutes.add()  # row 5: the other link trades, dca is still stopped
    wait_for(second, "order_filled", strategy_link="other@live")
    let_it_poll(fake)
    assert fills_of(second, "dca@live") == []

    post(client, "/strategies/dca@live/start")
    minutes.add()  # row 6: dca runs again, but still paused: its buy is skipped
    (skipped,) = wait_for(second, "order_skipped", strategy_link="dca@live")
    assert skipped["reason"] == "paused by the operator (status server)"
    post(client, "/strategies/dca@live/resume")
    minutes.add()  # row 7: it buys again
    wait_for(second, "order_filled", strategy_link="dca@live")
    stop(second)

    assert fills_of(second, "dca@live") == [minutes.time(7)]
    with state_of(data_dir) as store:
        assert [f.candle_time for f in store.fills("dca@live")] == [minutes.moment(i) for i in (2, 4, 7)]
        assert store.load_account("dca@live").trades == 3  # type: ignore[union-attr]
        assert store.link_controls("dca@live") == LinkControls()  # resumed and started: nothing kept
    for daemon in (first, second):
        assert "Traceback" not in daemon.stderr


def test_sighup_adds_removes_restarts_and_keeps_links_and_a_bad_file_leaves_the_set_running(
        tmp_path, fake, daemons):
    blueprints = {"keep": dca_blueprint(), "change": dca_blueprint(), "drop": dca_blueprint()}
    operation = paper_operation(tmp_path, fake, blueprints)
    minutes = Minutes(fake, 4)
    daemon, client = daemons(operation, tmp_path / "state")
    wait_for(daemon, "order_filled", count=3)

    changed = dca_blueprint()
    changed["workforce"]["planning"][0]["params"]["quote_amount"] = 2 * BUY_USD
    csv = write_hourly_csv(tmp_path / "data" / "bt.csv", 24)
    paper_operation(tmp_path, fake, {"keep": dca_blueprint(), "change": changed, "add": dca_blueprint()},
                    extra_links=(("bt_probe", "bt"),),
                    extra_environments={"bt": backtest_environment(str(csv))})
    write_yaml(tmp_path / "config" / "strategies" / "bt_probe.yaml", dca_blueprint() | {"timeframe": "1h"})
    daemon.signal(signal.SIGHUP)
    (reloaded,) = wait_for(daemon, "operation_reloaded")
    assert (reloaded["added"], reloaded["removed"], reloaded["restarted"], reloaded["unchanged"]) == (
        ["add@live", "bt_probe@bt"], ["drop@live"], ["change@live"], ["keep@live"])
    assert reloaded["new_feeds"] == ["bt"]  # add@live joined the running feed of `live`
    started = [e["strategy_link"] for e in daemon.events("strategy_run_started")]
    assert sorted(started) == sorted(["keep@live", "change@live", "drop@live",  # at start
                                      "change@live", "add@live", "bt_probe@bt"])  # by the reload
    assert [e["environment"] for e in daemon.events("environment_feed_started")] == ["live", "bt"]
    (dropped,) = [e for e in daemon.events("strategy_summary") if e["strategy_link"] == "drop@live"]
    assert (dropped["status"], dropped["trades"]) == ("stopped", 1)
    listed = {s["strategy_link"]: s for s in client.json("/strategies")[1]}  # type: ignore[union-attr]
    assert list(listed) == ["keep@live", "change@live", "add@live", "bt_probe@bt"]
    assert listed["keep@live"]["ticks_processed"] >= 1  # untouched: its counters never went back
    assert listed["change@live"]["account"]["trades"] == 1  # restarted on the account it had

    minutes.add()  # row 3: every live link of the new set trades it, the changed one with its new amount
    for link in ("keep@live", "change@live", "add@live"):
        wait_for(daemon, "order_filled", strategy_link=link, candle_time=minutes.time(3))
    (bigger,) = [e for e in daemon.events("order_filled")
                 if e["strategy_link"] == "change@live" and e["candle_time"] == minutes.time(3)]
    assert bigger["quantity"] * 50_000 == pytest.approx(2 * BUY_USD, rel=0.01)
    assert fills_of(daemon, "drop@live") == [minutes.time(2)]

    # A bad blueprint: rejected as file: key: reason, logged; the running set stays as it is.
    broken = dca_blueprint()
    broken["workforce"]["planning"][0]["params"]["no_such_param"] = 1
    write_yaml(tmp_path / "config" / "strategies" / "add.yaml", broken)
    daemon.signal(signal.SIGHUP)
    (rejected,) = wait_for(daemon, "operation_reload_rejected")
    assert rejected["file"] == str(tmp_path / "config" / "strategies" / "add.yaml")
    assert rejected["key"] == "workforce.planning[0].params.no_such_param"
    assert rejected["error"] == f"{rejected['file']}: {rejected['key']}: {rejected['reason']}"
    minutes.add()  # row 4: the same three live links trade it
    for link in ("keep@live", "change@live", "add@live"):
        wait_for(daemon, "order_filled", strategy_link=link, candle_time=minutes.time(4))
    assert len(daemon.events("strategy_run_started")) == 6

    stop(daemon)
    assert [e["event"] for e in daemon.events() if e["event"].startswith("operation_reload")] == [
        "operation_reload_requested", "operation_reloaded", "operation_reload_requested",
        "operation_reload_rejected"]
    assert "Traceback" not in daemon.stderr


def test_a_reload_to_a_plugin_whose_constructor_raises_is_rejected_and_the_link_keeps_running(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "sample_plugins.py").write_text(SAMPLE_PLUGINS)
    write_hourly_csv(tmp_path / "data" / "ticks.csv", 5_000)
    slow = probe_blueprint("a", sleep_seconds=0.01)
    path = write_config_tree(tmp_path, [("a", "bt")], {"a": slow}, {"bt": backtest_environment()})
    daemon = Daemon([path], module="tests.probe_cli",
                    env={"PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path / "plugins")])})
    try:
        daemon.wait_for_event("operation_started")
        fragile = {**slow, "workforce": {**slow["workforce"],
                                         "context": [{"plugin": "sample_plugins:Fragile"}]}}
        write_yaml(tmp_path / "config" / "strategies" / "a.yaml", fragile)
        daemon.signal(signal.SIGHUP)
        (rejected,) = wait_for(daemon, "operation_reload_rejected")
        blueprint_file = tmp_path / "config" / "strategies" / "a.yaml"
        assert (rejected["file"], rejected["key"]) == (str(blueprint_file), "workforce.context[0]")
        assert rejected["reason"] == ("plugin 'sample_plugins:Fragile' could not be built: "
                                      "RuntimeError: its model file is missing")
        runs_started = len(daemon.events("strategy_run_started"))
        daemon.signal(signal.SIGTERM)
        code, out = daemon.finish()
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    assert code == 0 and "== a@bt [stopped]" in out  # the run the reload would have replaced went on
    assert runs_started == 1 and not daemon.events("operation_reload_failed")
    assert "Traceback" not in daemon.stderr


def test_a_sighup_while_loading_never_kills_the_daemon_and_reloads_once_it_runs(tmp_path):
    """The operation file is a FIFO: the daemon reads it when the test writes it, at start and
    again on the reload the SIGHUP it got while loading asked for."""
    write_hourly_csv(tmp_path / "data" / "ticks.csv", 5_000)
    slow = {"a": probe_blueprint("a", sleep_seconds=0.01), "b": probe_blueprint("b", sleep_seconds=0.01)}
    environments = {"bt": backtest_environment()}
    path = write_config_tree(tmp_path, [("a", "bt")], slow, environments)
    first = path.read_text()
    second = write_config_tree(tmp_path, [("a", "bt"), ("b", "bt")], slow, environments).read_text()
    path.unlink()
    os.mkfifo(path)

    def feed_the_fifo(text: str) -> None:
        writer = threading.Thread(target=path.write_text, args=(text,), daemon=True)
        writer.start()
        writer.join(15)
        assert not writer.is_alive(), "the daemon never read the operation file"

    daemon = Daemon([path], module="tests.probe_cli")
    try:
        daemon.wait_for_event("operation_loading")
        daemon.signal(signal.SIGHUP)
        time.sleep(0.3)
        assert daemon.process.poll() is None  # SIGHUP's default action would have ended it
        feed_the_fifo(first)
        daemon.wait_for_event("operation_started")
        (requested,) = wait_for(daemon, "operation_reload_requested")
        assert requested["trigger"] == "SIGHUP"
        feed_the_fifo(second)  # what the reload reads
        (reloaded,) = wait_for(daemon, "operation_reloaded")
        assert (reloaded["added"], reloaded["unchanged"]) == (["b@bt"], ["a@bt"])
        daemon.signal(signal.SIGTERM)
        code, out = daemon.finish()
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    assert code == 0 and "== a@bt [stopped]" in out and "== b@bt [stopped]" in out
    assert "Traceback" not in daemon.stderr


@pytest.mark.parametrize("how", ["reload", "stop_start"])
def test_a_link_restarted_while_its_order_reply_is_slow_books_that_fill_once(tmp_path, fake, daemons, how):
    """The old run is still inside AddOrder when the link is restarted (a reload that changes it, or
    stop then start): it must never have two runs writing its account."""
    from tests.test_restart import live_operation

    operation = live_operation(tmp_path, fake, operation_settings={"control_token_env": TOKEN_ENV,
                                                                    "shutdown_timeout_seconds": 0.3})
    fake.delay_replies("private/AddOrder", 2.0)  # slower than the shutdown timeout
    minutes = Minutes(fake, 4)
    daemon, client = daemons(operation, tmp_path / "state")
    deadline = time.monotonic() + 20
    while not fake.received("private/AddOrder"):  # the first order is on its way
        assert time.monotonic() < deadline and daemon.process.poll() is None, daemon.stderr
        time.sleep(0.02)

    if how == "reload":
        changed = dca_blueprint()
        changed["workforce"]["planning"][0]["params"]["quote_amount"] = 2 * BUY_USD
        write_yaml(tmp_path / "config" / "strategies" / "dca.yaml", changed)
        post(client, "/reload")
        wait_for(daemon, "operation_reloaded")
    else:
        post(client, "/strategies/dca@live/stop")
        deadline = time.monotonic() + 10
        while (answer := client.json("/strategies/dca@live/start", "POST", TOKEN))[0] == 409:
            assert time.monotonic() < deadline, answer  # refused while the old run is still in its order
            time.sleep(0.1)
        assert answer[0] == 200, answer
    minutes.add()  # the restarted link trades the next candle
    wait_for(daemon, "order_filled", count=2)
    time.sleep(0.5)
    stop(daemon)

    assert len(daemon.events("order_filled")) == len(fake.orders) == 2
    from tests.test_restart import assert_books_match_the_exchange
    assert_books_match_the_exchange(tmp_path / "state", fake)


def test_force_exit_sells_now_and_force_entry_buys_on_the_next_candle_sized_by_the_link(tmp_path, fake, daemons):
    """A paper link: force-exit sells what it holds at once through its account (journaled),
    force-entry makes its planner buy on the next candle; both token-protected; a backtest's
    link refuses both."""
    rare = dca_blueprint()
    rare["workforce"]["opportunity"][0]["params"]["interval_bars"] = 1_000  # never buys on its own
    csv = write_hourly_csv(tmp_path / "data" / "bt.csv", 24)
    operation = paper_operation(tmp_path, fake, {"dca": dca_blueprint(), "rare": rare},
                                extra_links=(("bt_probe", "bt"),),
                                extra_environments={"bt": backtest_environment(str(csv))})
    write_yaml(tmp_path / "config" / "strategies" / "bt_probe.yaml", dca_blueprint() | {"timeframe": "1h"})
    minutes = Minutes(fake, 4)
    daemon, client = daemons(operation, tmp_path / "state")
    (bought,) = wait_for(daemon, "order_filled", strategy_link="dca@live")

    assert client.json("/strategies/dca@live/force-exit", "POST")[0] == 401  # no token
    sold = post(client, "/strategies/dca@live/force-exit/BTC/USD")
    (fill,) = sold["fills"]
    assert (fill["asset"], fill["quantity"]) == ("BTC/USD", pytest.approx(bought["quantity"]))
    assert sold["account"]["positions"] == {} and sold["account"]["trades"] == 2
    (logged,) = [e for e in daemon.events("order_filled") if e["reason"] == "force_exit by the operator"]
    assert (logged["strategy_link"], logged["side"]) == ("dca@live", "sell")  # logged (and notified) as any fill
    status, refused = client.json("/strategies/dca@live/force-exit", "POST", TOKEN)
    assert status == 409 and "holds nothing" in refused["error"]
    status, refused = client.json("/strategies/bt_probe@bt/force-exit", "POST", TOKEN)
    assert status == 409 and "backtest" in refused["error"]
    status, refused = client.json("/strategies/rare@live/force-entry/ETH/USD", "POST", TOKEN)
    assert status == 409 and "not an asset" in refused["error"]

    planned = post(client, "/strategies/rare@live/force-entry/BTC/USD")
    assert planned["force_entry"]["status"] == "planned on its next candle"
    assert not [e for e in daemon.events("order_filled") if e["strategy_link"] == "rare@live"]
    minutes.add()
    (entry,) = wait_for(daemon, "order_filled", strategy_link="rare@live", candle_time=minutes.time(3))
    assert entry["quantity"] * 50_000 == pytest.approx(BUY_USD, rel=0.01)  # the planner's own sizing
    stop(daemon)

    with state_of(tmp_path / "state") as store:  # journaled like the link's own orders
        buy, forced, _ = store.fills("dca@live")  # the last: its own buy of the next candle
        order = store.order(forced.client_order_id)
    assert (buy.side, forced.side, forced.candle_time) == ("buy", "sell", buy.candle_time)  # on the last candle
    assert order is not None and order.reason == "force_exit by the operator"


def test_a_paper_runs_report_files_have_each_row_while_it_runs(tmp_path, fake):
    """`--report` on a live or paper run: trades.csv and equity.csv show each row as it is booked
    (tail -f), not at the exit."""
    operation = paper_operation(tmp_path, fake, {"dca": dca_blueprint()})
    Minutes(fake, 4)
    report = tmp_path / "report"
    daemon = Daemon([str(operation), "--data-dir", str(tmp_path / "state"), "--report", str(report)],
                    module=FAST_CLI, env=CREDENTIALS)
    try:
        (filled,) = wait_for(daemon, "order_filled")
        trades = (report / "dca@live" / "trades.csv").read_text().splitlines()
        assert len(trades) == 2 and trades[1].startswith(filled["candle_time"])
        equity = report / "dca@live" / "equity.csv"
        deadline = time.monotonic() + 10  # its row comes when the candle's tick closes, just after the fill
        while len(equity.read_text().splitlines()) < 2:
            assert time.monotonic() < deadline, "no equity row while the daemon runs"
            time.sleep(0.05)
    finally:
        stop(daemon)
