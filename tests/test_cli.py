"""run-operation end to end: the shipped demo on the bundled data, exit codes, signals, logs."""

import importlib.metadata
import json
import os
import signal
import subprocess
import sys

import pytest
import structlog

from services.cli import main
from services.logging_setup import configure_logging, mask_secrets
from tests.helpers import REPO, backtest_environment, blueprint, tick, write_config_tree
from tests.probes import PLUGINS_WITH_PROBE, probe_blueprint

DEMO = str(REPO / "config/operations/backtest_demo.yaml")
LINKS = ("ict_smc_strategy@backtest_2023_q1", "smart_dca_btc@backtest_2023_q1")


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_backtest_demo_runs_both_strategies_on_the_bundled_data(capsys):
    assert main([DEMO]) == 0
    out, err = capsys.readouterr()
    for link in LINKS:
        assert f"== {link} [completed]" in out
    events = json_lines(err)
    summaries = {e["strategy_link"]: e for e in events if e["event"] == "strategy_summary"}
    assert set(summaries) == set(LINKS)
    for summary in summaries.values():
        assert summary["ticks_processed"] == 2160  # every hour of Q1 2023
        assert summary["trades"] > 0 and summary["fees_paid"] > 0
        assert summary["final_equity"] == round(10_000 + summary["pnl"], 6)
        assert summary["max_drawdown_pct"] > 0
    fills = [e for e in events if e["event"] == "order_filled"]
    assert {f["strategy_link"] for f in fills} == set(LINKS)  # every strategy line is bound
    assert sum(e["event"] == "backtest_progress" for e in events) == 10


def test_console_log_format(capsys):
    assert main([DEMO, "--log-format", "console", "--log-level", "warning"]) == 0
    _, err = capsys.readouterr()
    assert "order_filled" not in err  # info is below the level
    assert not err.lstrip().startswith("{")


def test_config_error_exits_2_with_one_clear_line(tmp_path, capsys):
    path = write_config_tree(tmp_path, [("s", "bt")], {"s": blueprint({})}, {"bt": backtest_environment(fee_rate=2)},
                             [tick(0, 1)])
    assert main([str(path)]) == 2
    _, err = capsys.readouterr()
    env_file = tmp_path / "config" / "environments" / "bt.yaml"
    assert f"run-operation: config error: {env_file}: fee_rate: 2 looks like a percentage; write 0.02" in err
    assert "Traceback" not in err


def test_failed_strategy_exits_1_while_the_other_completes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("services.worker_factory.PLUGINS", PLUGINS_WITH_PROBE)
    blueprints = {"bad": probe_blueprint("bad", crash_at_tick=3), "good": probe_blueprint("good")}
    path = write_config_tree(tmp_path, [("bad", "bt"), ("good", "bt")], blueprints, {"bt": backtest_environment()},
                             [tick(i, 100 + i) for i in range(10)])
    assert main([str(path)]) == 1
    out, err = capsys.readouterr()
    assert "== bad@bt [failed]" in out and "error: ZeroDivisionError: probe crashed on purpose" in out
    assert "== good@bt [completed]" in out
    failure = next(e for e in json_lines(err) if e["event"] == "strategy_run_failed")
    assert failure["strategy_link"] == "bad@bt" and failure["exception"]  # traceback kept in the log


@pytest.mark.e2e
def test_sigint_stops_cleanly_and_prints_summaries(tmp_path):
    ticks = [tick(i, 100 + (i % 50)) for i in range(200_000)]
    strategy = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}],
                          "planning": [{"plugin": "position_sizer"}]})
    path = write_config_tree(tmp_path, [("dca", "bt")], {"dca": strategy},
                             {"bt": backtest_environment(end="2050-01-01T00:00:00Z")}, ticks)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", str(path)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    for line in process.stderr:
        # The feed reads up to a few blocks of 4,096 candles ahead of the run: at 20 % read, the
        # run has processed some.
        if '"backtest_progress"' in line and json.loads(line)["percent"] >= 20:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "== dca@bt [stopped]" in out
    summary = next(e for e in json_lines(err) if e["event"] == "strategy_summary")
    assert 0 < summary["ticks_processed"] < 200_000
    assert "Traceback" not in err


def test_credential_fields_are_masked_in_logs():
    event = {"event": "x", "api_key": "abc", "KRAKEN_API_SECRET": "def", "price": 1}
    assert mask_secrets(None, "info", event) == {"event": "x", "api_key": "***", "KRAKEN_API_SECRET": "***", "price": 1}


def test_failure_tracebacks_in_logs_never_show_local_variables(capsys):
    configure_logging("json", "info")
    log = structlog.get_logger()
    try:
        api_secret = "hunter2-not-a-real-secret"
        raise RuntimeError(f"boom ({len(api_secret)})")
    except RuntimeError:
        log.exception("strategy_run_failed")
    _, err = capsys.readouterr()
    (event,) = json_lines(err)
    assert event["exception"][0]["exc_value"] == "boom (25)"
    assert "hunter2" not in err


def test_the_printed_summary_shows_each_open_position_with_its_unrealised_pnl():
    from backend.portfolio.ledger import AccountSummary, OpenPosition
    from services.cli_text import format_summaries
    from services.strategy_run import RunStatus, RunSummary

    held = (OpenPosition("BTC/USD", 0.5, 20_000.0, 22_000.0, 1_000.0, 10.0, False),
            OpenPosition("ETH/USD", 1e-9, 1_500.0, 1_400.0, -1e-7, -6.67, True))
    account = AccountSummary(3, 1.5, 11_000.0, 1_000.0, 10.0, 2.0, held)
    out = format_summaries([RunSummary("a@live", "a", "live", RunStatus.STOPPED, 10, account, None)])

    assert "   holds 0.5 BTC/USD @ 20,000.00   now 22,000.00   unrealised +1,000.00 (+10.00%)" in out
    assert "   holds 1e-09 ETH/USD @ 1,500.00   now 1,400.00   unrealised -0.00 (-6.67%)   dust" in out


def test_a_config_error_is_one_line_on_stderr_and_an_event_in_the_log_files(tmp_path, capsys):
    path = write_config_tree(tmp_path, [("s", "bt")], {"s": blueprint({})}, {"bt": backtest_environment(fee_rate=2)},
                             [tick(0, 1)])
    env_file = tmp_path / "config" / "environments" / "bt.yaml"
    expected = f"run-operation: config error: {env_file}: fee_rate: 2 looks like a percentage; write 0.02"
    for command in ([str(path), "--log-dir", str(tmp_path / "logs")], ["validate", str(path)]):
        assert main(command) == 2
        _, err = capsys.readouterr()
        reported = [line for line in err.splitlines() if "fee_rate" in line]
        assert len(reported) == 1 and reported[0].startswith(expected), err
    (event,) = [e for e in json_lines((tmp_path / "logs" / "daemon.jsonl").read_text()) if e["event"] == "config_error"]
    assert (event["file"], event["key"]) == (str(env_file), "fee_rate")


def test_version_prints_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"run-operation {importlib.metadata.version('opdaemon')}\n"
