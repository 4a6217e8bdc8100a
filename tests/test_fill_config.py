"""How an environment's settings fill simulated orders: maker and taker fees (`fee_rate` sets both),
the limit rule, and the finer candle file (`detail_data_file`) that tells what happened inside a
candle; every mistake is one config error naming the file and the key."""

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from backend.config import EnvironmentConfig, load_operation
from backend.dtos import OrderSide, OrderStatus
from backend.errors import ConfigError
from backend.interfaces.order_gateway import OrderRequest
from backend.market_data import candle_readers
from backend.portfolio.fill_rules import KRAKEN_MAKER_FEE_RATE, KRAKEN_TAKER_FEE_RATE, FillRules
from services.cli import main
from services.execution_environments import ExecutionEnvironments
from tests.helpers import REPO, START, backtest_environment, blueprint, ticks_from_closes, write_config_tree

DCA = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}], "planning": [{"plugin": "position_sizer"}]})


def tree(tmp_path: Path, environment: dict) -> Path:
    return write_config_tree(tmp_path, [("dca", "bt")], {"dca": DCA}, {"bt": environment},
                             ticks_from_closes([100, 101, 102]))


def without_fee_rate(**overrides: object) -> dict:
    environment = backtest_environment(**overrides)
    del environment["fee_rate"]
    return environment


def loaded(tmp_path: Path, environment: dict) -> EnvironmentConfig:
    (link,) = load_operation(tree(tmp_path, environment)).links
    return link.environment


def config_error(tmp_path: Path, environment: dict) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        load_operation(tree(tmp_path, environment))
    return error.value


def write_candles(path: Path, minutes: list[int]) -> Path:
    """Candles opening `minutes` after START, each priced after its minute (close: minute + 1.5)."""
    lines = ["timestamp,open,high,low,close,volume"]
    for minute in minutes:
        moment = (START + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
        lines.append(f"{moment},{minute + 1},{minute + 2},{minute + 0.5},{minute + 1.5},1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# --- fees and the limit rule --------------------------------------------------------------------


def test_fee_rate_alone_sets_both_rates(tmp_path):
    environment = loaded(tmp_path, backtest_environment(fee_rate=0.001, slippage_bps=2))
    assert environment.fill_rules == FillRules(maker_fee_rate=0.001, taker_fee_rate=0.001, slippage_bps=2,
                                               limit_fill="through")


def test_without_fees_krakens_entry_tier_applies(tmp_path):
    environment = loaded(tmp_path, without_fee_rate())
    assert environment.fill_rules == FillRules(KRAKEN_MAKER_FEE_RATE, KRAKEN_TAKER_FEE_RATE, 0.0, "through")
    assert (KRAKEN_MAKER_FEE_RATE, KRAKEN_TAKER_FEE_RATE) == (0.0016, 0.0026)


def test_maker_and_taker_rates_and_the_limit_rule_are_read(tmp_path):
    environment = loaded(tmp_path, without_fee_rate(maker_fee_rate=0.001, taker_fee_rate=0.002, slippage_bps=3,
                                                    limit_fill="touch"))
    assert environment.fill_rules == FillRules(0.001, 0.002, 3, "touch")


def test_one_rate_given_leaves_the_other_at_krakens(tmp_path):
    environment = loaded(tmp_path, without_fee_rate(maker_fee_rate=0))
    assert environment.fill_rules == FillRules(0.0, KRAKEN_TAKER_FEE_RATE)


@pytest.mark.parametrize("key", ["maker_fee_rate", "taker_fee_rate"])
def test_fee_rate_with_a_maker_or_taker_rate_is_one_config_error(tmp_path, capsys, key):
    path = tree(tmp_path, backtest_environment(fee_rate=0.001, **{key: 0.002}))
    assert main([str(path)]) == 2
    _, err = capsys.readouterr()
    env_file = tmp_path / "config" / "environments" / "bt.yaml"
    reported = [line for line in err.splitlines() if "config error" in line]
    assert reported == [f"run-operation: config error: {env_file}: fee_rate: sets both the maker and the taker "
                        "rate: give it or maker_fee_rate/taker_fee_rate, not both"], err
    assert "Traceback" not in err


@pytest.mark.parametrize("key", ["maker_fee_rate", "taker_fee_rate"])
@pytest.mark.parametrize(("rate", "written"), [(0.26, "0.0026"), (16, "0.0016")])
def test_a_maker_or_taker_rate_that_looks_like_a_percentage_is_refused(tmp_path, key, rate, written):
    error = config_error(tmp_path, without_fee_rate(**{key: rate}))
    assert error.key == key
    assert error.reason == (f"{rate} looks like a percentage; write {written} "
                            f"({key} is a fraction of the notional, at most 0.05)")


def test_a_limit_rule_other_than_touch_or_through_is_refused(tmp_path):
    error = config_error(tmp_path, backtest_environment(limit_fill="cross"))
    assert error.key == "limit_fill"
    assert error.reason == "Input should be 'touch' or 'through'"


def test_a_simulated_market_order_pays_the_taker_rate(tmp_path):
    environment = loaded(tmp_path, without_fee_rate(maker_fee_rate=0.001, taker_fee_rate=0.003))
    gateway = ExecutionEnvironments(threading.Event()).order_gateway(environment, "dca@bt")
    outcome = gateway.execute(OrderRequest("o-1", "BTC/USD", OrderSide.BUY, 2.0, 100.0))
    assert outcome.status is OrderStatus.FILLED
    assert outcome.fee == pytest.approx(2 * 100 * 0.003)


# --- detail_data_file ----------------------------------------------------------------------------


def test_a_detail_file_is_resolved_beside_the_environment_file(tmp_path):
    detail = write_candles(tmp_path / "data" / "detail_5m.csv", [0, 5, 10])
    environment = loaded(tmp_path, backtest_environment(detail_data_file="../../data/detail_5m.csv"))
    assert environment.detail_data_file == detail.resolve()


@pytest.mark.parametrize(("minutes", "timeframe", "reason"), [
    ([0, 60, 120], "1h", "its candles are 1h, not finer than the environment's 1h timeframe"),
    ([0, 120, 240], "1h", "its candles are 2h, not finer than the environment's 1h timeframe"),
    ([0, 40, 80, 120], "1h", "its candles are 40m, which does not divide the environment's 1h timeframe"),
    ([0, 10, 20, 30], "15m", "its candles are 10m, which does not divide the environment's 15m timeframe"),
])
def test_a_detail_file_not_finer_than_the_timeframe_or_not_dividing_it_is_refused(tmp_path, minutes, timeframe,
                                                                                  reason):
    write_candles(tmp_path / "data" / "detail.csv", minutes)
    error = config_error(tmp_path, backtest_environment(detail_data_file="../../data/detail.csv", timeframe=timeframe))
    assert (error.file, error.key, error.reason) == (
        str(tmp_path / "config" / "environments" / "bt.yaml"), "detail_data_file", reason)


def test_a_missing_detail_file_is_one_config_error(tmp_path, capsys):
    path = tree(tmp_path, backtest_environment(detail_data_file="../../data/nowhere_5m.csv"))
    assert main(["validate", str(path)]) == 2
    _, err = capsys.readouterr()
    env_file = tmp_path / "config" / "environments" / "bt.yaml"
    reported = [line for line in err.splitlines() if "config error" in line]
    assert reported == [f"run-operation: config error: {env_file}: detail_data_file: data file not found: "
                        f"{tmp_path / 'data' / 'nowhere_5m.csv'}"], err


def test_a_detail_file_the_readers_refuse_is_refused_as_a_data_file_is(tmp_path):
    detail = tmp_path / "data" / "detail.csv"
    detail.parent.mkdir()
    detail.write_text("time,price\n2024-01-01T00:00:00Z,1\n")
    error = config_error(tmp_path, backtest_environment(detail_data_file="../../data/detail.csv"))
    assert error.file == str(detail)
    assert error.reason.startswith("missing column(s): ")


def test_validate_checks_every_row_of_the_detail_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(candle_readers, "BLOCK_BYTES", 128)  # the bad row lies beyond the first block
    detail = write_candles(tmp_path / "data" / "detail.csv", list(range(0, 60, 5)))
    detail.write_text(detail.read_text() + "2024-01-01T01:00:00Z,1,2,3,1,1\n")  # low above the open
    path = tree(tmp_path, backtest_environment(detail_data_file="../../data/detail.csv"))
    assert main(["validate", str(path)]) == 2
    _, err = capsys.readouterr()
    reported = [line for line in err.splitlines() if "config error" in line]
    assert reported == [f"run-operation: config error: {detail}: line 14: low 3.0 / high 2.0 do not contain "
                        "open 1.0 and close 1.0"], err


def test_the_gateway_of_a_backtest_gets_its_detail_candles_loaded_once_when_first_asked(tmp_path, monkeypatch):
    from backend.market_data import detail_candles

    write_candles(tmp_path / "data" / "detail.csv", [0, 5, 55, 60])
    environment = loaded(tmp_path, backtest_environment(detail_data_file="../../data/detail.csv"))
    reads: list[Path] = []
    real_read = detail_candles.read_candle_file
    monkeypatch.setattr(detail_candles, "read_candle_file", lambda path, tf: reads.append(path) or real_read(path, tf))
    environments = ExecutionEnvironments(threading.Event())
    detail = environments.detail_candles(environment)
    assert detail is not None and environments.detail_candles(environment) is detail  # one per file
    assert reads == []  # nothing read before an order needs it
    first_hour = detail.within(START, 3600)
    assert first_hour is not None and first_hour[3].tolist() == [1.5, 6.5, 56.5]
    assert detail.within(START + timedelta(hours=1), 3600)[3].tolist() == [61.5]  # type: ignore[index]
    assert detail.intrabar(7200)(START)[3].tolist() == [1.5, 6.5, 56.5, 61.5]  # type: ignore[index]  # 2h candles
    assert reads == [environment.detail_data_file]


def test_a_live_environment_has_no_detail_candles(tmp_path):
    live = {"type": "live", "display_name": "paper", "exchange": "kraken", "symbols": ["BTC/USD"], "timeframe": "1h",
            "starting_capital": 100, "api_key_env": "K", "api_secret_env": "S"}
    environment = loaded(tmp_path, live)
    assert ExecutionEnvironments(threading.Event()).detail_candles(environment) is None
    assert environment.fill_rules == FillRules()


def test_the_shipped_hourly_demo_reads_the_five_minute_file_as_its_detail():
    (link, _) = load_operation(REPO / "config/operations/backtest_demo.yaml").links
    assert link.environment.detail_data_file == (REPO / "data" / "kraken_xbtusd_5m_2023q1.csv").resolve()
    assert link.environment.fill_rules == FillRules(0.0026, 0.0026, 2, "through")  # as before: fee_rate


def test_print_config_shows_the_rates_that_apply(tmp_path, capsys):
    path = tree(tmp_path, backtest_environment(fee_rate=0.001, limit_fill="touch"))
    assert main([str(path), "--print-config", "json"]) == 0
    (link,) = json.loads(capsys.readouterr().out)["strategy_links"]
    shown = {key: link["environment"][key] for key in ("maker_fee_rate", "taker_fee_rate", "fee_rate", "limit_fill")}
    assert shown == {"maker_fee_rate": 0.001, "taker_fee_rate": 0.001, "fee_rate": 0.001, "limit_fill": "touch"}
