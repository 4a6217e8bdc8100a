"""Config loading: the shipped files load; every kind of mistake is a ConfigError that names the
file, the key and the reason."""

from pathlib import Path

import pytest

from backend.config import LiveEnvironment, load_operation
from backend.errors import ConfigError
from backend.market_data.candle_file import read_candle_file
from tests.helpers import (
    REPO,
    START,
    backtest_environment,
    blueprint,
    tick,
    ticks_from_closes,
    write_config_tree,
    write_csv,
    write_yaml,
)

DCA = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}], "planning": [{"plugin": "position_sizer"}]})


def tree(tmp_path: Path, *, environment: dict | None = None, strategy: dict | None = None) -> Path:
    return write_config_tree(
        tmp_path, [("dca", "bt")], {"dca": strategy or DCA}, {"bt": environment or backtest_environment()},
        ticks_from_closes([100, 101, 102]),
    )


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        load_operation(path)
    return error.value


def test_shipped_operations_load():
    demo = load_operation(REPO / "config/operations/backtest_demo.yaml")
    assert [link.link_id for link in demo.links] == [
        "ict_smc_strategy@backtest_2023_q1", "smart_dca_btc@backtest_2023_q1",
    ]
    multi = load_operation(REPO / "config/operations/multi_strategy_operation.yaml")
    live = multi.links[0].environment
    assert isinstance(live, LiveEnvironment)
    assert live.mode == "paper" and not live.allow_live_orders


def test_a_valid_tree_resolves_blueprint_environment_and_data_file(tmp_path):
    operation = load_operation(tree(tmp_path))
    (link,) = operation.links
    assert link.blueprint.workforce.opportunity[0].plugin == "dca_schedule_opportunity"
    assert link.environment.data_file == (tmp_path / "data" / "ticks.csv").resolve()


def test_inactive_links_are_not_loaded(tmp_path):
    path = tree(tmp_path)
    write_yaml(tmp_path / "config" / "strategies" / "unfinished.yaml", {"display_name": "not a blueprint yet"})
    write_yaml(path, {
        "display_name": "op",
        "strategy_links": [
            {"strategy_blueprint_id": "dca", "execution_environment_id": "bt", "is_active": True},
            {"strategy_blueprint_id": "unfinished", "execution_environment_id": "bt", "is_active": False},
        ],
    })
    assert [link.link_id for link in load_operation(path).links] == ["dca@bt"]


def test_unknown_key_in_operation_is_named(tmp_path):
    path = tree(tmp_path)
    write_yaml(path, {"display_name": "op", "strategy_links": [
        {"strategy_blueprint_id": "dca", "execution_environment_id": "bt", "is_activ": True}]})
    error = config_error(path)
    assert error.file == str(path)
    assert error.key == "strategy_links[0].is_activ"
    assert "Extra inputs are not permitted" in error.reason


def test_wrong_type_is_named(tmp_path):
    path = tree(tmp_path)
    write_yaml(path, {"display_name": "op", "strategy_links": [
        {"strategy_blueprint_id": "dca", "execution_environment_id": "bt", "is_active": "maybe"}]})
    assert config_error(path).key == "strategy_links[0].is_active"


def test_unknown_blueprint_names_the_id_and_the_file_searched(tmp_path):
    path = tree(tmp_path)
    write_yaml(path, {"display_name": "op", "strategy_links": [
        {"strategy_blueprint_id": "nope", "execution_environment_id": "bt"}]})
    error = config_error(path)
    assert error.key == "strategy_links[0].strategy_blueprint_id"
    assert "'nope'" in error.reason and str(tmp_path / "config" / "strategies" / "nope.yaml") in error.reason


def test_unknown_environment_names_the_id_and_the_file_searched(tmp_path):
    path = tree(tmp_path)
    write_yaml(path, {"display_name": "op", "strategy_links": [
        {"strategy_blueprint_id": "dca", "execution_environment_id": "moon"}]})
    error = config_error(path)
    assert error.key == "strategy_links[0].execution_environment_id"
    assert "moon.yaml" in error.reason


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tree(tmp_path)
    path.write_text("display_name: op\nstrategy_links: [\n  - oops: : :\n")
    error = config_error(path)
    assert error.key.startswith("line ") and "invalid YAML" in error.reason


def test_missing_operation_file(tmp_path):
    error = config_error(tmp_path / "absent.yaml")
    assert error.reason == "file not found"


def test_no_active_link_and_duplicate_links_are_rejected(tmp_path):
    path = tree(tmp_path)
    link = {"strategy_blueprint_id": "dca", "execution_environment_id": "bt"}
    write_yaml(path, {"display_name": "op", "strategy_links": [{**link, "is_active": False}]})
    assert "nothing to run" in config_error(path).reason
    write_yaml(path, {"display_name": "op", "strategy_links": [link, link]})
    assert "listed twice" in config_error(path).reason


def test_bad_blueprint_value_names_the_blueprint_file_and_key(tmp_path):
    bad = {**DCA, "timeframe": "hourly"}
    error = config_error(tree(tmp_path, strategy=bad))
    assert error.file.endswith("config/strategies/dca.yaml") and error.key == "timeframe"


def test_live_mode_requires_allow_live_orders(tmp_path):
    live = {"type": "live", "display_name": "k", "exchange": "kraken", "symbols": ["BTC/USD"],
            "timeframe": "1h", "mode": "live", "starting_capital": 100, "fee_rate": 0.0026}
    error = config_error(tree(tmp_path, environment=live))
    assert error.file.endswith("config/environments/bt.yaml")
    assert "allow_live_orders: true" in error.reason


LIVE = {"type": "live", "display_name": "k", "exchange": "kraken", "symbols": ["BTC/USD"], "timeframe": "1h",
        "starting_capital": 100, "fee_rate": 0.0026}


def test_an_unknown_exchange_is_named_with_the_known_ones(tmp_path):
    environment = {**LIVE, "exchange": "binance", "api_url": "http://127.0.0.1:1"}
    error = config_error(tree(tmp_path, environment=environment))
    assert str(error) == (f"{tmp_path / 'config' / 'environments' / 'bt.yaml'}: exchange: "
                          "unknown exchange 'binance' (known: kraken)")


def test_a_live_environment_is_validated_by_its_venues_own_settings_model(tmp_path):
    from backend.venues import VENUES
    from backend.venues.kraken.settings import KrakenSettings

    (link,) = load_operation(tree(tmp_path, environment={**LIVE, "market_data": "rest"})).links
    assert type(link.environment) is KrakenSettings and VENUES["kraken"].settings() is KrakenSettings
    assert "market_data" not in LiveEnvironment.model_fields  # Kraken's keys are the venue folder's
    error = config_error(tree(tmp_path / "b", environment={**LIVE, "poll_interval_seconds": 0}))
    assert error.key == "poll_interval_seconds" and "greater than 0" in error.reason


def test_the_template_venue_is_not_an_exchange_until_registered(tmp_path):
    from backend.venues import VENUES
    from backend.venues.template.settings import TemplateSettings

    assert "template" not in VENUES
    error = config_error(tree(tmp_path, environment={**LIVE, "exchange": "template"}))
    assert error.key == "exchange" and error.reason == "unknown exchange 'template' (known: kraken)"
    settings = TemplateSettings.model_validate({**LIVE, "exchange": "kraken", "api_key_env": "TEMPLATE_KEY"})
    assert settings.api_key_env == "TEMPLATE_KEY"


def test_unknown_environment_type(tmp_path):
    error = config_error(tree(tmp_path, environment={**backtest_environment(), "type": "simulation"}))
    assert error.key == "type" and "'simulation'" in error.reason


def test_blueprint_and_environment_must_agree_on_timeframe_and_assets(tmp_path):
    error = config_error(tree(tmp_path, environment=backtest_environment(timeframe="4h")))
    assert error.key == "strategy_links[0]" and "timeframe" in error.reason
    error = config_error(tree(tmp_path, environment=backtest_environment(symbol="ETH/USD")))
    assert "BTC/USD" in error.reason and "ETH/USD" in error.reason


def test_missing_data_file(tmp_path):
    error = config_error(tree(tmp_path, environment=backtest_environment(data_file="../../data/none.csv")))
    assert error.key == "data_file" and "none.csv" in error.reason


def test_backtest_end_must_follow_start(tmp_path):
    env = backtest_environment(start="2024-02-01T00:00:00Z", end="2024-01-01T00:00:00Z")
    assert "end must be after start" in config_error(tree(tmp_path, environment=env)).reason


# --- historical data files ------------------------------------------------------------------

END = START.replace(year=2025)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2024-01-01T02:00:00Z,100,99,98,100,1", "do not contain"),
        ("2024-01-01T02:00:00Z,100,101,99,abc,1", "close 'abc' is not a number"),
        ("yesterday,100,101,99,100,1", "not an ISO 8601"),
        ("2024-01-01T02:00:00Z,100,101", "expected 6 fields"),
        ("2024-01-01T00:00:00Z,100,101,99,100,1", "is not after the previous candle"),
        ("2024-01-01T02:00:00Z,100,101,99,100,-1", "volume must not be negative"),
    ],
)
def test_malformed_data_rows_name_file_line_and_reason(tmp_path, row, reason):
    path = write_csv(tmp_path / "d.csv", [tick(0, 100), tick(1, 100)])
    path.write_text(path.read_text() + row + "\n")
    with pytest.raises(ConfigError) as error:
        read_candle_file(path, "1h")
    assert error.value.file == str(path) and error.value.key == "line 4" and reason in error.value.reason


def test_data_file_needs_its_columns_and_rows_in_range(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("time,open,high,low,close\n")
    with pytest.raises(ConfigError, match="missing column"):
        read_candle_file(path, "1h")
    write_csv(path, [tick(0, 100)])
    with pytest.raises(ConfigError, match="no candles between"):
        read_candle_file(path, "1h").rows_between(START.replace(year=2030), END.replace(year=2031))


def test_data_range_is_start_inclusive_end_exclusive(tmp_path):
    path = write_csv(tmp_path / "d.csv", ticks_from_closes([1, 2, 3, 4]))
    candles = read_candle_file(path, "1h")
    rows = candles.rows_between(tick(1, 1).timestamp, tick(3, 1).timestamp)
    assert [close for block in candles.blocks(rows) for close in block.closes.tolist()] == [2, 3]


def test_backtest_bounds_without_an_offset_are_utc_even_next_to_one_with(tmp_path):
    environment = backtest_environment(start="2024-01-01T00:00:00", end="2024-01-01T02:00:00Z")
    (link,) = load_operation(tree(tmp_path, environment=environment)).links
    assert link.environment.start.isoformat() == "2024-01-01T00:00:00+00:00"
    reversed_range = backtest_environment(start="2024-01-02", end="2024-01-01T00:00:00+02:00")
    assert config_error(tree(tmp_path / "b", environment=reversed_range)).reason == "end must be after start"


@pytest.mark.parametrize("switch", ["yes", 1, "on", "true"])
def test_the_live_orders_switch_takes_only_true(tmp_path, switch):
    environment = {"type": "live", "display_name": "k", "exchange": "kraken", "symbols": ["BTC/USD"],
                   "timeframe": "1h", "mode": "live", "allow_live_orders": switch,
                   "starting_capital": 100, "fee_rate": 0.001}
    error = config_error(tree(tmp_path, environment=environment))
    assert error.key == "allow_live_orders" and f"write true or false, unquoted, not {switch!r}" in error.reason


LIVE_ORDERS_YAML = """\
type: live
display_name: k
exchange: kraken
symbols: [BTC/USD]
timeframe: 1h
mode: live
allow_live_orders: {switch}
starting_capital: 100
fee_rate: 0.001
"""


@pytest.mark.parametrize("switch", ["yes", "on", "YES", "On", "True", "TRUE", "y"])
def test_the_live_orders_switch_refuses_yaml_1_1_spellings_of_true(tmp_path, switch):
    path = tree(tmp_path)
    environment_file = tmp_path / "config" / "environments" / "bt.yaml"
    environment_file.write_text(LIVE_ORDERS_YAML.format(switch=switch))
    error = config_error(path)
    assert (error.file, error.key) == (str(environment_file), "allow_live_orders")
    assert "write true" in error.reason


def test_the_live_orders_switch_takes_the_literal_true(tmp_path):
    path = tree(tmp_path)
    (tmp_path / "config" / "environments" / "bt.yaml").write_text(LIVE_ORDERS_YAML.format(switch="true"))
    environment = load_operation(path).links[0].environment
    assert isinstance(environment, LiveEnvironment) and environment.allow_live_orders is True


def test_other_yes_and_no_spellings_still_mean_a_boolean_where_the_schema_wants_one(tmp_path):
    path = tree(tmp_path)
    path.write_text("display_name: op\nstrategy_links:\n"
                    "  - {strategy_blueprint_id: dca, execution_environment_id: bt, is_active: yes}\n"
                    "  - {strategy_blueprint_id: dca, execution_environment_id: bt2, is_active: off}\n")
    write_yaml(tmp_path / "config" / "environments" / "bt2.yaml", backtest_environment())
    assert [link.link_id for link in load_operation(path).links] == ["dca@bt"]


@pytest.mark.parametrize(("fee_rate", "written"), [(0.26, "0.0026"), (2, "0.02"), (0.1, "0.001"), (26, "0.0026")])
def test_a_fee_rate_that_looks_like_a_percentage_is_refused(tmp_path, fee_rate, written):
    error = config_error(tree(tmp_path, environment=backtest_environment(fee_rate=fee_rate)))
    assert error.key == "fee_rate"
    assert error.reason.startswith(f"{fee_rate} looks like a percentage; write {written}")


def test_a_slippage_beyond_ten_percent_is_refused(tmp_path):
    error = config_error(tree(tmp_path, environment=backtest_environment(slippage_bps=200_000)))
    assert (error.key, error.reason) == ("slippage_bps", "Input should be less than or equal to 1000")


def test_a_fee_rate_up_to_five_percent_is_taken(tmp_path):
    (link,) = load_operation(tree(tmp_path, environment=backtest_environment(fee_rate=0.05))).links
    assert link.environment.fee_rate == 0.05


@pytest.mark.parametrize(("missing_id", "key"), [
    ("strategy_blueprint_id", "strategy_links[1].strategy_blueprint_id"),
    ("execution_environment_id", "strategy_links[1].execution_environment_id"),
])
def test_an_inactive_link_naming_a_missing_file_is_refused(tmp_path, missing_id, key):
    path = tree(tmp_path)
    inactive = {"strategy_blueprint_id": "dca", "execution_environment_id": "bt", "is_active": False,
                missing_id: "gone"}
    write_yaml(path, {"display_name": "op", "strategy_links": [
        {"strategy_blueprint_id": "dca", "execution_environment_id": "bt"}, inactive]})
    error = config_error(path)
    assert (error.file, error.key) == (str(path), key) and "gone.yaml" in error.reason


def test_a_misspelt_required_key_is_named_with_the_key_it_should_be(tmp_path):
    misspelt = {key: value for key, value in DCA.items() if key != "timeframe"} | {"timefrme": "1h"}
    error = config_error(tree(tmp_path, strategy=misspelt))
    assert error.key == "timefrme"
    assert error.reason == "unknown key; did you mean 'timeframe'? (a required key)"


def test_more_problems_in_a_file_name_their_keys(tmp_path):
    broken = {**DCA, "timeframe": "hourly", "assets": "BTC/USD", "colour": "red"}
    error = config_error(tree(tmp_path, strategy=broken))
    assert error.key == "assets"
    assert error.reason.endswith("(and 2 more problems in this file: timeframe, colour)")


@pytest.mark.parametrize(("text", "line"), [
    ('display_name: "op\nstrategy_links: []\n', 1),
    ("display_name: op\ndescription: 'it is\nstrategy_links:\n  - {strategy_blueprint_id: dca}\n", 2),
])
def test_an_unclosed_quote_is_named_where_it_opens(tmp_path, text, line):
    path = tree(tmp_path)
    path.write_text(text)
    error = config_error(path)
    assert error.key == f"line {line}"
    assert error.reason == "invalid YAML: this quote is never closed"
