"""`run-operation validate PATH` and `run-operation PATH --print-config`: checked and shown, never run."""

import base64
import json
import socket
import threading
from pathlib import Path

import pytest
import yaml

from services.cli import main, parse_args
from tests.helpers import REPO, backtest_environment, blueprint, tick, write_config_tree

DEMO = REPO / "config/operations/backtest_demo.yaml"
PAPER_AND_BACKTEST = REPO / "config/operations/multi_strategy_operation.yaml"  # paper Kraken: a run opens the store
KEY_ENV, SECRET_ENV = "OPDAEMON_VALIDATE_TEST_KEY", "OPDAEMON_VALIDATE_TEST_SECRET"
SECRET_VALUE = base64.b64encode(b"validate-test-secret-never-printed").decode()
KEY_VALUE = "validate-test-key-never-printed"


@pytest.fixture
def nothing_started(monkeypatch) -> list[str]:
    """What was attempted that validate must never do: start a thread, open a network connection."""
    attempts: list[str] = []

    def start(thread: threading.Thread) -> None:
        attempts.append(f"thread {thread.name}")

    def connect(_socket: socket.socket, address: object) -> None:
        attempts.append(f"connect {address}")
        raise OSError("no network in this test")

    monkeypatch.setattr(threading.Thread, "start", start)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def live_environment(**overrides: object) -> dict:
    return {
        "type": "live", "display_name": "Kraken", "exchange": "kraken", "symbols": ["BTC/USD"], "timeframe": "1h",
        "mode": "live", "allow_live_orders": True, "api_key_env": KEY_ENV, "api_secret_env": SECRET_ENV,
        "starting_capital": 1_000, "fee_rate": 0.0026, **overrides,
    }


def live_tree(root: Path, **environment: object) -> Path:
    strategy = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}],
                          "planning": [{"plugin": "position_sizer"}]})
    return write_config_tree(root, [("dca", "kraken")], {"dca": strategy},
                             {"kraken": live_environment(**environment)})


def test_the_subcommand_is_only_a_literal_first_argument():
    assert parse_args(["validate", "op.yaml"]).command == "validate"
    assert parse_args(["op.yaml"]).command == "run"
    assert parse_args(["./validate"]).command == "run"
    assert parse_args(["op.yaml", "--print-config"]).print_config == "yaml"
    assert parse_args(["op.yaml", "--print-config", "json"]).print_config == "json"
    with pytest.raises(SystemExit):
        parse_args(["validate", "op.yaml", "--print-config"])


def test_validate_the_shipped_demo_exits_0_with_one_line_and_starts_nothing(nothing_started, capsys):
    assert main(["validate", str(DEMO)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == (
        f"run-operation: OK: {DEMO}: 2 strategy links (ict_smc_strategy@backtest_2023_q1, "
        "smart_dca_btc@backtest_2023_q1) on 1 environment (backtest_2023_q1); nothing was started"
    )
    assert "strategy_summary" not in err
    assert nothing_started == []


def test_validate_takes_the_run_command_line_as_it_is(nothing_started, capsys):
    """`run-operation validate` + the exact flags of a run: checked, nothing listens or forks."""
    flags = ["--http", "127.0.0.1:9", "--processes", "2", "--report", "unused-report-dir", "--log-level", "warning"]
    assert main(["validate", str(DEMO), *flags]) == 0
    assert capsys.readouterr().out.startswith(f"run-operation: OK: {DEMO}")
    assert nothing_started == [] and not Path("unused-report-dir").exists()


def test_validate_never_opens_the_data_dir_a_run_would_open(nothing_started, tmp_path, capsys):
    data_dir = tmp_path / "state"
    assert main(["validate", str(PAPER_AND_BACKTEST), "--data-dir", str(data_dir)]) == 0
    assert "2 environments (live_kraken_main, backtest_2023_q1)" in capsys.readouterr().out
    assert not data_dir.exists()
    assert nothing_started == []  # a paper environment is not contacted either


@pytest.mark.parametrize(("broken", "file", "key", "reason"), [
    ({"blueprint": {"context": [{"plugin": "ema_detector", "params": {"fast_period": 0}}]}},
     "config/strategies/s.yaml", "workforce.context[0].params.fast_period", "Input should be greater than or equal"),
    ({"blueprint": {"opportunity": [{"plugin": "no_such_package.workers:Thing"}]}},
     "config/strategies/s.yaml", "workforce.opportunity[0].plugin", "no module named 'no_such_package'"),
    ({"environment": {"start": "2030-01-01T00:00:00Z", "end": "2031-01-01T00:00:00Z"}},
     "data/ticks.csv", None, "no candles between 2030-01-01"),
])
def test_validate_a_broken_tree_exits_2_naming_file_and_key(nothing_started, tmp_path, capsys, broken, file, key,
                                                            reason):
    path = write_config_tree(tmp_path, [("s", "bt")], {"s": blueprint(broken.get("blueprint", {}))},
                             {"bt": backtest_environment(**broken.get("environment", {}))},
                             [tick(i, 100 + i) for i in range(5)])
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    line = next(line for line in err.splitlines() if line.startswith("run-operation: config error: "))
    assert line.startswith(f"run-operation: config error: {tmp_path / file}: " + (f"{key}: " if key else ""))
    assert reason in line
    assert "OK" not in out
    assert nothing_started == []


def test_validate_a_live_environment_without_its_key_exits_2_naming_api_key_env(nothing_started, tmp_path,
                                                                                monkeypatch, capsys):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(SECRET_ENV, SECRET_VALUE)
    path = live_tree(tmp_path)
    assert main(["validate", str(path)]) == 2
    environment_file = tmp_path / "config" / "environments" / "kraken.yaml"
    assert (f"run-operation: config error: {environment_file}: api_key_env: environment variable(s) {KEY_ENV} "
            "not set") in capsys.readouterr().err
    assert nothing_started == []


def test_validate_a_live_environment_with_its_keys_contacts_no_exchange(nothing_started, tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    monkeypatch.setenv(SECRET_ENV, SECRET_VALUE)
    assert main(["validate", str(live_tree(tmp_path)), "--data-dir", str(tmp_path / "state")]) == 0
    out, err = capsys.readouterr()
    assert "1 strategy link (dca@kraken) on 1 environment (kraken)" in out
    assert KEY_VALUE not in out + err and SECRET_VALUE not in out + err
    assert not (tmp_path / "state").exists()
    assert nothing_started == []


def test_print_config_shows_the_resolution_and_no_secret(nothing_started, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    monkeypatch.setenv(SECRET_ENV, SECRET_VALUE)
    path = live_tree(tmp_path, api_url="https://someone:hunter2@kraken.example", ws_url="wss://kraken.example/ws")
    assert main([str(path), "--print-config", "--data-dir", str(tmp_path / "state")]) == 0
    out, err = capsys.readouterr()
    assert KEY_VALUE not in out + err and SECRET_VALUE not in out + err and "hunter2" not in out + err
    config = yaml.safe_load(out)
    (link,) = config["strategy_links"]
    assert link["strategy_link"] == "dca@kraken"
    assert link["blueprint"]["id"] == "dca"
    assert link["blueprint"]["file"] == str(tmp_path / "config" / "strategies" / "dca.yaml")
    assert link["blueprint"]["workforce"]["opportunity"] == [{"plugin": "dca_schedule_opportunity", "params": {}}]
    assert link["environment"]["id"] == "kraken"
    assert link["environment"]["api_key_env"] == KEY_ENV  # the name is shown, never the value
    assert link["environment"]["api_url"] == "https://***@kraken.example"
    assert config["operation"]["file"] == str(path)
    assert not (tmp_path / "state").exists()
    assert nothing_started == []


def test_print_config_as_json_names_every_blueprint_of_the_shipped_demo(capsys):
    assert main([str(DEMO), "--print-config", "json"]) == 0
    out, err = capsys.readouterr()
    config = json.loads(out)
    assert [link["blueprint"]["id"] for link in config["strategy_links"]] == ["ict_smc_strategy", "smart_dca_btc"]
    assert {link["environment"]["data_file"] for link in config["strategy_links"]} == {
        str(REPO / "data" / "kraken_xbtusd_1h_2023q1.csv")
    }
    assert "strategy_summary" not in err  # printed, not run


def test_print_config_of_a_broken_tree_exits_2(tmp_path, capsys):
    path = write_config_tree(tmp_path, [("s", "missing")], {"s": blueprint({})}, {}, [tick(0, 1)])
    assert main([str(path), "--print-config"]) == 2
    assert "strategy_links[0].execution_environment_id: unknown execution environment 'missing'" in (
        capsys.readouterr().err
    )
