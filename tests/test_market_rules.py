"""The exchange's market rules (tick, lot, minimum order and cost): how they round an order,
markets.json, and the same rounding and minimums in a backtest, a paper run and a live one (the
last two against the fake Kraken, whose AddOrder refuses what Kraken refuses)."""

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ccxt
import pytest

from backend.dtos import AccountState, OrderDTO, OrderSide, OrderStatus, OrderType, PositionState
from backend.errors import ConfigError, SettingError
from backend.market_data.market_rules import NO_RULES, MarketRules, load_market_rules, save_market_rules
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from backend.state import StateStore
from backend.venues.kraken.market_rules import fetch_market_rules
from services.cli import main
from services.execution_environments import ExecutionEnvironments
from tests.fake_kraken import FakeKraken
from tests.helpers import backtest_environment, blueprint, candle_at, tick, write_config_tree
from tests.live_support import fast_client, live_env
from tests.test_live_orders import LINK, buy, live_account

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KRAKEN_BTC = MarketRules(price_increment=0.1, amount_increment=1e-8, min_quantity=0.00005, min_cost=0.5)


# --- rounding ------------------------------------------------------------------------------------


def test_a_quantity_is_truncated_to_the_lot_never_above_it():
    rules = MarketRules(amount_increment=1e-8)
    assert rules.quantity(0.123456789) == 0.12345678
    assert rules.quantity(0.3) == 0.3  # on the lot already: unchanged (decimal, not binary, steps)
    for quantity in (1e-8, 0.1 + 0.2, 2 / 3, 123.456789123, 0.00005 * 3):
        assert rules.quantity(quantity) <= quantity
        assert quantity - rules.quantity(quantity) < 1e-8
    assert MarketRules(amount_increment=0.001).quantity(0.0009) == 0.0  # less than one lot


def test_all_of_a_float_sum_of_whole_lots_is_sold_not_a_lot_less():
    held = 0.7 + 0.1  # 0.7999999999999999: two fills of whole lots, as a float
    assert MarketRules(amount_increment=1e-8).quantity(held) == held


def test_a_limit_price_moves_to_the_tick_never_worse_for_its_order():
    rules = MarketRules(price_increment=0.1)
    assert rules.limit_price(50_000.07, buy=True) == 50_000.0  # a buy pays no more than it asked
    assert rules.limit_price(50_000.01, buy=False) == 50_000.1  # a sell takes no less
    assert rules.limit_price(50_000.3, buy=True) == rules.limit_price(50_000.3, buy=False) == 50_000.3
    assert rules.limit_price(0.04, buy=True) == 0.1  # never a price of zero


def test_a_trigger_price_and_a_trailing_offset_go_to_the_nearest_tick():
    rules = MarketRules(price_increment=0.5)
    assert [rules.trigger_price(price) for price in (100.2, 100.3, 100.75)] == [100.0, 100.5, 101.0]


def test_no_rules_change_nothing_and_refuse_nothing():
    assert (NO_RULES.quantity(1e-12), NO_RULES.limit_price(1.23456, buy=True), NO_RULES.trigger_price(1.23456)) == (
        1e-12, 1.23456, 1.23456)
    assert NO_RULES.below_minimum(1e-12, 1.0) is None


def test_an_order_below_the_minimum_quantity_or_cost_says_why():
    assert KRAKEN_BTC.below_minimum(0.00005, 50_000) is None
    assert KRAKEN_BTC.below_minimum(0.00004, 50_000) == "quantity 4e-05 is below the market's minimum order of 5e-05"
    assert KRAKEN_BTC.below_minimum(0.00006, 5_000) == "cost 0.3 is below the market's minimum order cost of 0.5"


# --- markets.json ----------------------------------------------------------------------------------


def test_markets_json_reads_back_as_written_and_is_replaced_whole(tmp_path):
    path = tmp_path / "markets.json"
    fetched = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    rules = {"ETH/USD": MarketRules(0.01, 1e-8, 0.002, 0.5), "BTC/USD": KRAKEN_BTC}
    save_market_rules(path, "kraken", {"BTC/USD": NO_RULES}, fetched)
    save_market_rules(path, "kraken", rules, fetched)

    cached = load_market_rules(path)
    assert (cached.exchange, cached.fetched_at, cached.markets) == ("kraken", fetched, rules)
    assert json.loads(path.read_text())["fetched_at"] == "2024-05-01T12:30:00Z"
    assert [p.name for p in tmp_path.iterdir()] == ["markets.json"]  # nothing left beside it


BTC_ENTRY = {"price_increment": 0.1, "amount_increment": 1e-8, "min_quantity": 0.00005, "min_cost": 0.5}


@pytest.mark.parametrize(("document", "key", "reason"), [
    ("{", None, "not a JSON markets file"),
    ({"fetched_at": "2024-05-01T00:00:00Z", "markets": {"BTC/USD": BTC_ENTRY}}, "exchange", "exchange's name"),
    ({"exchange": "kraken", "fetched_at": "May 1st", "markets": {"BTC/USD": BTC_ENTRY}}, "fetched_at", "ISO 8601"),
    ({"exchange": "kraken", "fetched_at": "2024-05-01T00:00:00Z", "markets": {}}, "markets", "per symbol"),
    ({"exchange": "kraken", "fetched_at": "2024-05-01T00:00:00Z", "markets": {"BTC/USD": {**BTC_ENTRY,
      "min_cost": -1}}}, "markets.BTC/USD.min_cost", "expected a number, 0 or more, got -1"),
    ({"exchange": "kraken", "fetched_at": "2024-05-01T00:00:00Z", "markets": {"BTC/USD": {**BTC_ENTRY,
      "amount_increment": 0}}}, "markets.BTC/USD.amount_increment", "a positive number (or null: any)"),
    ({"exchange": "kraken", "fetched_at": "2024-05-01T00:00:00Z", "markets": {"BTC/USD": {**BTC_ENTRY,
      "ordermin": 1}}}, "markets.BTC/USD.ordermin", "unknown key"),
    ({"exchange": "kraken", "fetched_at": "2024-05-01T00:00:00Z", "markets": {"BTC/USD": {
      "price_increment": 0.1, "amount_increment": 1e-8, "min_quantity": 0}}}, "markets.BTC/USD.min_cost", "missing"),
])
def test_a_bad_markets_file_is_a_config_error_naming_it_and_the_key(tmp_path, document, key, reason):
    path = tmp_path / "markets.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(ConfigError) as refused:
        load_market_rules(path)
    assert (refused.value.file, refused.value.key) == (str(path), key)
    assert reason in refused.value.reason


def test_kraken_rules_are_its_asset_pairs_as_ccxt_sends_orders_by(fake):
    rules = fetch_market_rules(fast_client(live_env(fake)), ["BTC/USD", "ETH/USD"])
    assert rules["BTC/USD"] == KRAKEN_BTC  # pair_decimals 1, lot_decimals 8, ordermin, costmin, tick_size
    assert rules["ETH/USD"] == MarketRules(0.1, 1e-8, 0.002, 0.5)  # tick_size, coarser than its 2 decimals
    with pytest.raises(SettingError, match="kraken has no market DOGE/USD"):
        fetch_market_rules(fast_client(live_env(fake)), ["DOGE/USD"])


# --- backtest --------------------------------------------------------------------------------------

DCA = blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}], "planning": [{"plugin": "position_sizer"}]})


def events(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def markets_json(path: Path, **btc: float) -> Path:
    save_market_rules(path, "kraken", {"BTC/USD": MarketRules(**{**vars(KRAKEN_BTC), **btc})},
                      datetime(2024, 5, 1, tzinfo=UTC))
    return path


def test_a_backtest_skips_an_order_below_the_markets_json_minimum_beside_its_data(tmp_path, capsys):
    path = write_config_tree(tmp_path, [("dca", "bt")], {"dca": DCA}, {"bt": backtest_environment()},
                             [tick(i, 100 + i) for i in range(48)])
    markets_json(tmp_path / "data" / "markets.json", min_quantity=1_000.0)  # more than 10,000 USD buys at 100

    assert main([str(path)]) == 0

    lines = events(capsys.readouterr().err)
    skipped = [e for e in lines if e["event"] == "order_skipped"]
    assert skipped and all("below the market's minimum order of 1000" in e["reason"] for e in skipped)
    assert not [e for e in lines if e["event"] in ("order_filled", "market_rules_defaulted")]
    (loaded,) = [e for e in lines if e["event"] == "market_rules_loaded"]
    assert (loaded["exchange"], loaded["fetched_at"]) == ("kraken", "2024-05-01T00:00:00+00:00")
    (summary,) = [e for e in lines if e["event"] == "strategy_summary"]
    assert summary["trades"] == 0


def test_a_backtest_rounds_to_the_lot_of_its_markets_file(tmp_path, capsys):
    environment = backtest_environment(markets_file="../markets/kraken.json")
    path = write_config_tree(tmp_path, [("dca", "bt")], {"dca": DCA}, {"bt": environment},
                             [tick(i, 100 + i) for i in range(48)])
    (tmp_path / "config" / "markets").mkdir()
    markets_json(tmp_path / "config" / "markets" / "kraken.json", amount_increment=0.1)

    assert main([str(path)]) == 0

    fills = [e for e in events(capsys.readouterr().err) if e["event"] == "order_filled"]
    assert fills and all(round(f["quantity"], 9) == round(f["quantity"], 1) for f in fills)


def test_a_backtest_without_market_rules_says_so_once(tmp_path, capsys):
    path = write_config_tree(tmp_path, [("dca", "bt"), ("again", "bt")], {"dca": DCA, "again": DCA},
                             {"bt": backtest_environment()}, [tick(i, 100 + i) for i in range(48)])

    assert main([str(path)]) == 0

    lines = events(capsys.readouterr().err)
    (defaulted,) = [e for e in lines if e["event"] == "market_rules_defaulted"]  # two links, many orders: once
    assert defaulted["data_file"] == str(tmp_path / "data" / "ticks.csv") and "none" in defaulted["rules"]
    assert sum(e["event"] == "order_filled" for e in lines) > 2


@pytest.mark.parametrize(("markets", "message"), [
    ({"min_quantity": -1}, "markets.json: markets.BTC/USD.min_quantity: expected a number, 0 or more, got -1"),
    ({"symbol": "ETH/USD"}, "markets.json: markets: no market BTC/USD, which bt.yaml trades (it has ETH/USD)"),
])
def test_a_bad_markets_file_beside_the_data_exits_2_with_one_line(tmp_path, capsys, markets, message):
    path = write_config_tree(tmp_path, [("dca", "bt")], {"dca": DCA}, {"bt": backtest_environment()}, [tick(0, 100)])
    symbol = markets.pop("symbol", "BTC/USD")
    (tmp_path / "data" / "markets.json").write_text(json.dumps({
        "exchange": "kraken", "fetched_at": "2024-05-01T00:00:00Z", "markets": {symbol: {**BTC_ENTRY, **markets}}}))

    assert main(["validate", str(path)]) == 2

    err = capsys.readouterr().err
    assert f"run-operation: config error: {tmp_path / 'data'}/{message}" in err and "Traceback" not in err


def test_a_markets_file_named_but_missing_is_a_config_error(tmp_path, capsys):
    environment = backtest_environment(markets_file="../../data/nowhere.json")
    path = write_config_tree(tmp_path, [("dca", "bt")], {"dca": DCA}, {"bt": environment}, [tick(0, 100)])
    assert main(["validate", str(path)]) == 2
    missing = tmp_path / "data" / "nowhere.json"
    assert f"bt.yaml: markets_file: data file not found: {missing}" in capsys.readouterr().err


def test_a_position_below_the_minimum_of_a_simulated_market_is_dust():
    state = AccountState(10_000, 9_999, 0, 10_000, 0, 2, {"BTC/USD": PositionState(2e-5, 50_000)})
    gateway = SimulatedGateway(FillRules(), market_rules={"BTC/USD": KRAKEN_BTC}.__getitem__)
    account = StrategyAccount(Ledger(10_000, state), gateway)

    _, held, entry, _, _ = account.open_tick(candle_at(NOW, 50_000.0), trading=True)

    assert (held, entry) == (0.0, None)
    (dust,) = account.ledger.open_positions()
    assert dust.dust


# --- paper and live, on the fake Kraken ------------------------------------------------------------


def skipped_events(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "order_skipped"]


def test_a_paper_run_takes_the_venues_rules_skipping_and_rounding_as_live(fake, logs):
    environments = ExecutionEnvironments(threading.Event())
    gateway = environments.order_gateway(live_env(fake, mode="paper", symbols=["BTC/USD", "ETH/USD"]), "p@paper")
    account = StrategyAccount(Ledger(10_000), gateway)

    assert account.submit(buy(0.00001), NOW) is None  # 0.5 USD: over costmin, under ordermin

    (skipped,) = skipped_events(logs)
    assert skipped["reason"] == "quantity 1e-05 is below the market's minimum order of 5e-05"
    assert account.ledger.cash == 10_000 and account.order_outcomes["skipped"] == 1
    limit = account.place(OrderDTO(asset="ETH/USD", side=OrderSide.BUY, quantity=0.123456789, reference_price=3_000,
                                   reason="test", order_type=OrderType.LIMIT, limit_price=2_900.07), NOW)
    (view,) = account.open_orders()
    assert limit.status is OrderStatus.OPEN and (view.limit_price, view.quantity) == (2_900.0, 0.12345678)
    fill = account.submit(buy(0.001), NOW)
    assert fill is not None and fill.quantity == 0.001
    assert fake.received("private/AddOrder") == []  # paper: simulated fills


@pytest.mark.parametrize(("quantity", "price", "reason"), [
    (0.00001, 50_000.0, "quantity 1e-05 is below the market's minimum order of 5e-05"),
    (0.00006, 5_000.0, "cost 0.3 is below the market's minimum order cost of 0.5"),
])
def test_a_live_order_below_the_minimum_is_skipped_never_sent(fake, credentials, tmp_path, logs, quantity, price,
                                                               reason):
    """The fake Kraken refuses such an order (EOrder:Order minimum not met / Cost minimum not met):
    it never gets the chance."""
    fake.prices["XXBTZUSD"] = price
    store = StateStore.open(tmp_path, "op")
    account = live_account(fake, store)

    assert account.submit(buy(quantity, price), NOW) is None

    assert fake.received("private/AddOrder") == []
    (skipped,) = skipped_events(logs)
    assert (skipped["reason"], skipped["asset"]) == (reason, "BTC/USD")
    assert store.order_events(LINK) == [] and account.ledger.cash == 10_000  # nothing journaled either
    store.close()


@pytest.mark.parametrize(("quantity", "price"), [(0.00005, 50_000.0), (0.0001, 5_000.0)],
                         ids=["the_minimum_order", "the_minimum_cost"])
def test_a_live_order_of_exactly_the_minimum_is_placed_not_skipped(fake, credentials, logs, quantity, price):
    """A minimum is allowed (AssetPairs: "ordermin: Minimum order size", "costmin: Minimum order
    cost", both taken by the fake's AddOrder): exactly 0.00005 BTC, exactly 0.5 USD."""
    fake.prices["XXBTZUSD"] = price
    account = live_account(fake, None)

    fill = account.submit(buy(quantity, price), NOW)

    assert fill is not None and fill.quantity == pytest.approx(quantity)
    assert len(fake.received("private/AddOrder")) == 1 and skipped_events(logs) == []


def test_a_live_limit_is_rounded_to_the_tick_the_fake_would_refuse_it_off(fake, credentials):
    """ETH/USD's tick (0.1) is coarser than its two decimals: ccxt's precision alone would send
    2900.07, which AddOrder refuses; rounded down to the tick (a buy never pays more) it rests."""
    account = live_account(fake, None)

    ticket = account.place(OrderDTO(asset="ETH/USD", side=OrderSide.BUY, quantity=0.5, reference_price=3_000,
                                    reason="test", order_type=OrderType.LIMIT, limit_price=2_900.07), NOW)

    assert ticket.status is OrderStatus.OPEN
    (add_order,) = fake.received("private/AddOrder")
    assert (add_order.params["price"], add_order.params["volume"]) == ("2900", "0.5")


def test_the_fake_refuses_a_price_off_the_pairs_tick(fake: FakeKraken, credentials):
    client = fast_client(live_env(fake, mode="live", allow_live_orders=True), with_credentials=True)
    with pytest.raises(ccxt.ExchangeError, match=r"XETHZUSD price must be a multiple of the tick size 0\.1"):
        client.create_order("ETH/USD", "limit", "buy", 0.5, 2_900.07)
    assert client.create_order("ETH/USD", "limit", "buy", 0.5, 2_900.1)["id"]


def test_a_protective_stop_off_the_tick_is_placed_on_it_once_never_amended_each_candle(fake, credentials, logs):
    """The stop asked (49,000.37) rests at 49,000.4: the candles after see it covering the position
    as asked, and amend nothing (an AmendOrder per candle would spend Kraken's rate limit)."""
    account = live_account(fake, None)
    entry = OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=0.01, reference_price=50_000, reason="test",
                     stop_loss_price=49_000.37)
    assert account.submit(entry, NOW) is not None

    for hour in range(1, 4):
        account.open_tick(candle_at(NOW + timedelta(hours=hour), 50_000.0), trading=True)

    (stop,) = [r for r in fake.received("private/AddOrder") if r.params["ordertype"] == "stop-loss"]
    assert stop.params["price"] == "49000.4"
    assert fake.received("private/AmendOrder") == [] and not [e for e in logs if e["event"] == "order_amended"]
