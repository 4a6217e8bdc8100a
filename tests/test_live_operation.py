"""The shipped multi-strategy operation's shape end to end: ICT/SMC paper-trading live Kraken
candles (real ccxt client, local fake exchange) next to DCA on the backtest data, one process."""

import shutil
import time
from types import SimpleNamespace

import pytest

from backend.config import load_operation
from backend.config.schema import LiveEnvironment
from backend.errors import ConfigError
from backend.state import StateStore
from services.operation_building import with_warmup_for
from services.operation_service import OperationService
from services.strategy_run import RunStatus
from tests.fake_kraken import candle, running_fake_kraken
from tests.helpers import REPO, blueprint, write_config_tree, write_yaml
from tests.live_support import KEY_ENV, SECRET_ENV, live_env
from tests.probes import PLUGINS_WITH_PROBE, probe_blueprint

HOUR = 3600


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.mark.slow
def test_live_paper_and_backtest_links_run_side_by_side(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config" / "strategies", config / "strategies")
    shutil.copytree(REPO / "config" / "operations", config / "operations")
    backtest = (REPO / "config/environments/backtest_2023_q1.yaml").read_text()
    data_file = REPO / "data" / "kraken_xbtusd_1h_2023q1.csv"
    (config / "environments").mkdir()
    (config / "environments" / "backtest_2023_q1.yaml").write_text(
        backtest.replace("../../data/kraken_xbtusd_1h_2023q1.csv", str(data_file))
        .replace("../../data/kraken_xbtusd_5m_2023q1.csv", str(REPO / "data" / "kraken_xbtusd_5m_2023q1.csv"))
    )
    with running_fake_kraken() as fake:
        live = {
            "type": "live", "display_name": "fake kraken", "exchange": "kraken", "symbols": ["BTC/USD"],
            "timeframe": "1h", "market_data": "rest", "poll_interval_seconds": 0.05, "api_url": fake.url,
            "warmup_candles": 2,
            "starting_capital": 10_000, "fee_rate": 0.0026,
        }
        write_yaml(config / "environments" / "live_kraken_main.yaml", live)
        hour = int(time.time()) // HOUR * HOUR
        rows = [candle(hour - (6 - i) * HOUR, 60_000 + i * 10) for i in range(4)]  # last: "forming"
        fake.set_candles("XXBTZUSD", rows)

        service = OperationService(load_operation(config / "operations" / "multi_strategy_operation.yaml"))
        live_run, backtest_run = service.runs
        assert live_run.link_id == "ict_smc_strategy@live_kraken_main"
        service.start()
        try:
            assert wait_until(lambda: live_run.ticks_processed == 3, timeout=20)  # 2 warm-up + 1
            fake.set_candles("XXBTZUSD", [*rows, candle(hour - 2 * HOUR, 60_100)])  # row 3 closes
            assert wait_until(lambda: live_run.ticks_processed == 4, timeout=20)
            assert wait_until(lambda: not backtest_run.is_alive(), timeout=20)
        finally:
            service.stop()
            live_summary, backtest_summary = service.wait()

    assert live_summary.status is RunStatus.STOPPED and live_summary.ticks_processed == 4
    assert backtest_summary.status is RunStatus.COMPLETED and backtest_summary.ticks_processed == 2160
    assert fake.received("public/OHLC")
    assert not [r for r in fake.requests if r.endpoint.startswith("private/")]  # paper: no orders sent


@pytest.mark.slow
def test_a_live_feed_whose_runs_all_failed_ends_without_waiting_for_the_next_candle(tmp_path, monkeypatch):
    monkeypatch.setattr("services.worker_factory.PLUGINS", PLUGINS_WITH_PROBE)
    with running_fake_kraken() as fake:
        hour = int(time.time()) // HOUR * HOUR
        fake.set_candles("XXBTZUSD", [candle(hour - (3 - i) * HOUR, 60_000 + i) for i in range(4)])
        live = {
            "type": "live", "display_name": "fake kraken", "exchange": "kraken", "symbols": ["BTC/USD"],
            "timeframe": "1h", "market_data": "rest", "poll_interval_seconds": 300, "api_url": fake.url,
            "starting_capital": 10_000, "fee_rate": 0.0026,
        }
        path = write_config_tree(tmp_path, [("bad", "live")], {"bad": probe_blueprint("bad", crash_at_tick=1)},
                                 {"live": live})
        service = OperationService(load_operation(path))
        started = time.monotonic()
        (summary,) = service.run()

    assert summary.status is RunStatus.FAILED
    # Not the 300 s poll interval, nor the next hour's candle (a margin a loaded machine cannot miss).
    assert time.monotonic() - started < 30


def test_a_live_environment_replays_what_its_workforces_need(fake, logs):
    runs = [SimpleNamespace(link_id="ict@live", history_needed=50),
            SimpleNamespace(link_id="dca@live", history_needed=9)]
    timeframes = {"ict@live": "1m", "dca@live": "15m"}
    environment = live_env(fake)  # 1m base, warmup_candles 0
    derived = with_warmup_for(environment, runs, timeframes)  # type: ignore[arg-type]
    assert isinstance(derived, LiveEnvironment) and derived.warmup_candles == 9 * 15 + 14  # more than ICT's 50
    asked_for_more = with_warmup_for(live_env(fake, warmup_candles=600), runs, timeframes)  # type: ignore[arg-type]
    assert isinstance(asked_for_more, LiveEnvironment) and asked_for_more.warmup_candles == 600
    runs[0].history_needed = 1_000
    capped = with_warmup_for(environment, runs, timeframes)  # type: ignore[arg-type]
    assert isinstance(capped, LiveEnvironment) and capped.warmup_candles == 700
    assert [e["event"] for e in logs] == ["warmup_capped"]


@pytest.mark.slow
def test_a_paper_account_never_becomes_a_live_one(tmp_path, fake, credentials):
    hour = int(time.time()) // HOUR * HOUR
    fake.set_candles("XXBTZUSD", [candle(hour - (3 - i) * HOUR, 60_000 + i) for i in range(4)])
    paper = {"type": "live", "display_name": "fake kraken", "exchange": "kraken", "symbols": ["BTC/USD"],
             "timeframe": "1h", "market_data": "rest", "api_url": fake.url,
             "api_key_env": KEY_ENV, "api_secret_env": SECRET_ENV, "starting_capital": 10_000, "fee_rate": 0.0026}
    dca = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}],
                     "planning": [{"plugin": "position_sizer"}]})
    path = write_config_tree(tmp_path, [("dca", "k")], {"dca": dca}, {"k": paper})
    store = StateStore.open(tmp_path / "state", "op")
    OperationService(load_operation(path), store=store)  # the paper account is recorded
    store.close()

    write_yaml(tmp_path / "config" / "environments" / "k.yaml", {**paper, "mode": "live", "allow_live_orders": True})
    store = StateStore.open(tmp_path / "state", "op")
    with pytest.raises(ConfigError, match=r"has a paper account in .* cannot continue as mode: live") as raised:
        OperationService(load_operation(path), store=store)
    store.close()
    assert (raised.value.file, raised.value.key) == (str(tmp_path / "config" / "environments" / "k.yaml"), "mode")
    assert not fake.received("private/AddOrder")
