"""Resting orders of a live daemon on the fake Kraken, end to end: real processes killed with
SIGKILL or stopped with SIGTERM and started again, while the fake matches the orders candle by
candle (and while no daemon runs). Whatever happens, each fill is booked once, a held position has
exactly one protective stop on the exchange, and the journal agrees with the exchange.

The blueprint is the parity test's (tests/test_order_parity.py), on the same slice: row START_ROW
places a post-only limit buy at 23,124.0; row START_ROW + 1 fills it, and the daemon then places a
stop-loss at 22,993.1 and a take-profit at 23,385.8 for the position."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from backend.dtos import OrderStatus
from backend.state import StateStore
from backend.venues.kraken.execution import link_tag
from tests.daemon import wait_until
from tests.fake_kraken import FakeKraken
from tests.live_support import credentials, fake, fast_client, live_env  # noqa: F401  (fixtures)
from tests.order_e2e import (
    PAIR,
    SHIPPED,
    STEM,
    Market,
    Run,
    assert_clean,
    data_slice,
    operation_tree,
    report_rows,
    step,
)
from tests.test_order_parity import BLUEPRINT, CREDENTIALS, FIRST_ROW, ROWS, START_ROW, live_environment

pytestmark = pytest.mark.e2e

LINK = "ict@live"
ENTRY, STOP, TARGET = 23_124.0, 22_993.1, 23_385.8
FILLED = START_ROW + 1  # the row that fills the entry

Start = Callable[..., Run]


@pytest.fixture
def market(fake: FakeKraken) -> Market:  # noqa: F811
    return Market(fake, data_slice(FIRST_ROW, ROWS))


@pytest.fixture
def start(tmp_path: Path, fake: FakeKraken) -> Iterator[Start]:  # noqa: F811
    """start(*flags, **environment): the live link's daemon on tmp_path's config and data dir; any
    left running when the test ends is killed by its pid."""
    started: list[Run] = []

    def run(*flags: object, **environment: object) -> Run:
        operation = operation_tree(tmp_path, "ict", BLUEPRINT, "live",
                                   {**live_environment(fake, "live"), **environment})
        started.append(Run(operation, tmp_path / "state", LINK, *flags, env=CREDENTIALS))
        return started[-1]

    yield run
    for each in started:
        each.kill_if_running()


def orders_on(fake: FakeKraken, ordertype: str, status: str | None = "open") -> list[dict]:  # noqa: F811
    """The link's orders of the type on the exchange (with that status; None: any)."""
    return [o for o in fake.orders_of(link_tag(LINK)) if o["_type"] == ordertype and status in (None, o["status"])]


def sent(fake: FakeKraken, ordertype: str) -> int:  # noqa: F811
    return sum(1 for r in fake.received("private/AddOrder") if r.params["ordertype"] == ordertype)


def txid_of(fake: FakeKraken, order: dict) -> str:  # noqa: F811
    return next(txid for txid, o in fake.orders.items() if o is order)


def state(tmp_path: Path) -> StateStore:
    return StateStore.open(tmp_path / "state", STEM)


def placed_entry(market: Market, run: Run) -> None:
    """The run warms up and trades up to START_ROW, which places the limit entry."""
    run.wait_processed(market.moment(START_ROW - 1))
    step(market, run, START_ROW)


def assert_one_protection_matching_the_journal(tmp_path: Path, fake: FakeKraken) -> None:  # noqa: F811
    """Exactly one open stop-loss and one open take-profit of the link on the exchange, each sent
    once, and the journal's open orders are those two, by exchange order id."""
    (stop_order,), (target_order,) = orders_on(fake, "stop-loss"), orders_on(fake, "take-profit")
    assert (sent(fake, "stop-loss"), sent(fake, "take-profit")) == (1, 1)
    assert (stop_order["_trigger"], stop_order["_volume"]) == (STOP, pytest.approx(0.41082857))
    assert target_order["_trigger"] == TARGET
    store = state(tmp_path)
    try:
        journaled = {(o.order_type, o.state, o.exchange_order_id) for o in store.open_orders(LINK)}
        (fill,) = store.fills(LINK)
    finally:
        store.close()
    assert journaled == {("stop_loss", OrderStatus.OPEN, txid_of(fake, stop_order)),
                         ("take_profit", OrderStatus.OPEN, txid_of(fake, target_order))}
    assert (fill.side, fill.price, fill.quantity) == ("buy", ENTRY, pytest.approx(0.41082857))


# --- a protective stop across kill -9 --------------------------------------------------------------


@pytest.mark.parametrize("reply", ["received", "lost"])
def test_kill_9_as_the_protective_stop_is_sent_leaves_exactly_one_stop_after_the_restart(
        tmp_path, fake, market, start, reply):  # noqa: F811
    market.show(START_ROW)
    first = start()
    placed_entry(market, first)
    if reply == "lost":
        # The stop's AddOrder executes but its reply is lost, and Kraken does not list it yet: the
        # daemon is still looking it up (journaled, not settled) when it is killed.
        fake.lose_next_reply("private/AddOrder")
        fake.hidden_lookups = 1_000
    market.trade(FILLED)  # the entry fills
    market.show(FILLED + 1)
    wait_until(lambda: orders_on(fake, "stop-loss"), "the stop is sent", daemon=first.daemon)
    first.kill()
    for order in fake.orders.values():
        order["_hidden_lookups"] = 0
    fake.hidden_lookups = 0
    if reply == "lost":
        store = state(tmp_path)
        try:
            (journaled,) = [o for o in store.open_orders(LINK) if o.order_type == "stop_loss"]
        finally:
            store.close()
        assert journaled.state in (OrderStatus.PENDING, OrderStatus.UNKNOWN) and journaled.exchange_order_id is None

    second = start()
    second.daemon.wait_for_event("warmup_replayed")
    step(market, second, FILLED + 1)  # the restart's first traded candle: nothing reaches the exits
    second.stop()

    assert_one_protection_matching_the_journal(tmp_path, fake)
    assert second.daemon.events("reconciliation_mismatch") == []  # its open exits are its journal's
    assert_clean(second)


# --- fills while the daemon is down ----------------------------------------------------------------


def test_a_limit_filled_and_then_a_stop_triggered_while_the_daemon_was_down_are_each_booked_once(
        tmp_path, fake, market, start):  # noqa: F811
    market.show(START_ROW)
    first = start()
    placed_entry(market, first)
    first.stop()
    (entry,) = orders_on(fake, "limit")

    market.trade(FILLED)  # fills the entry while no daemon runs
    market.show(FILLED + 1)
    assert entry["status"] == "closed"
    second = start()
    second.daemon.wait_for_event("warmup_replayed")
    step(market, second, FILLED + 1)  # booked on the restart's first traded candle; exits placed
    second.stop()
    assert_one_protection_matching_the_journal(tmp_path, fake)
    assert second.daemon.events("reconciliation_mismatch") == []

    # The market falls through the stop while no daemon runs (a candle the daemon never sees).
    fake.trade_candle(PAIR, market.times[FILLED + 2], 23_100.0, 23_110.0, 22_900.0, 22_950.0)
    market.show(FILLED + 3)
    (stop_order,) = orders_on(fake, "stop-loss", status="closed")
    third = start()
    third.daemon.wait_for_event("warmup_replayed")
    step(market, third, FILLED + 3, trade=False)
    third.stop()

    assert (sent(fake, "limit"), sent(fake, "stop-loss"), sent(fake, "take-profit")) == (1, 1, 1)
    assert orders_on(fake, "take-profit", status="canceled")  # the stop's sibling, cancelled at restart
    store = state(tmp_path)
    try:
        fills = store.fills(LINK)
        account = store.load_account(LINK)
        open_orders = store.open_orders(LINK)
    finally:
        store.close()
    assert [(f.side, f.price, f.exchange_order_id) for f in fills] == [
        ("buy", ENTRY, txid_of(fake, entry)), ("sell", STOP, txid_of(fake, stop_order))]
    assert fills[1].candle_time == market.moment(FILLED + 3)
    assert account is not None and "BTC/USD" not in account.positions and open_orders == []
    assert account.cash == pytest.approx(fake.balances["ZUSD"], abs=1e-4)  # Kraken's 4 decimals of USD
    assert_clean(first, second, third)


# --- reconciliation and the operator's view ---------------------------------------------------------


def test_an_open_limit_the_journal_knows_is_not_a_mismatch_and_the_status_shows_it_then_its_stop(
        tmp_path, fake, market, start):  # noqa: F811
    market.show(START_ROW)
    first = start()
    placed_entry(market, first)
    (shown,) = first.status()["account"]["open_orders"]
    assert (shown["side"], shown["type"], shown["limit_price"], shown["status"]) == ("buy", "limit", ENTRY, "open")
    first.stop()

    second = start()  # the limit still rests on the exchange
    wait_until(lambda: second.daemon.events("reconciled"), "reconciled", daemon=second.daemon)
    assert second.daemon.events("reconciliation_mismatch") == []
    assert second.status()["paused"] is None
    second.daemon.wait_for_event("warmup_replayed")
    step(market, second, FILLED)  # the entry fills: its stop and take-profit go on the book
    code, ready = second.client.json("/readyz")
    assert (code, ready) == (200, {"status": "ready"})
    protection = second.status()["account"]["positions"]["BTC/USD"]["protection"]
    second.stop()
    stop_leg, target_leg = protection["stop"], protection["take_profit"]
    assert (stop_leg["price"], stop_leg["status"], stop_leg["open"]) == (pytest.approx(22_993.1216), "open", True)
    assert (target_leg["status"], target_leg["open"]) == ("open", True)
    assert_one_protection_matching_the_journal(tmp_path, fake)


def test_an_open_order_with_the_links_tag_the_journal_does_not_know_pauses_the_link(
        tmp_path, fake, market, start, credentials):  # noqa: F811
    client = fast_client(live_env(fake, mode="live", allow_live_orders=True), with_credentials=True)
    stray = f"{link_tag(LINK)}-1111-4111-8111-111111111111"
    client.create_order("BTC/USD", "limit", "buy", 0.01, 20_000.0, params={"cl_ord_id": stray})
    market.show(START_ROW)
    run = start()
    mismatch = run.daemon.wait_for_event("reconciliation_mismatch")  # logged before the status server starts
    assert (mismatch["strategy_link"], mismatch["open_orders"]) == (LINK, [stray])
    placed_entry(market, run)  # the strategy's entry is skipped: no new buys
    assert run.status()["paused"].startswith("orders open on the exchange that its journal does not know")
    skipped = run.daemon.wait_for_event("order_skipped")
    run.stop()
    assert len(run.daemon.events("reconciliation_mismatch")) == 1  # the cash its order holds is no mismatch
    assert skipped["strategy_link"] == LINK
    assert sent(fake, "limit") == 1  # the stray order only


# --- the shipped blueprints ------------------------------------------------------------------------

SHIPPED_FIRST_ROW, SHIPPED_START = "2023-01-07T08:00:00Z", 73  # ICT enters at 2023-01-10 09:00, row 73


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["paper", "live"])
@pytest.mark.parametrize("blueprint_id", ["ict_smc_strategy", "smart_dca_btc"])
def test_a_shipped_blueprint_places_its_resting_orders_and_stops_cleanly(tmp_path, fake, blueprint_id, mode):  # noqa: F811
    """The shipped blueprint file as it is, on 24 streamed candles after a warm-up of 72 (the most
    either workforce needs): post-only limit entries, and for ICT its venue stop and take-profit once
    its entry fills (at 10:00, the candle after it is placed)."""
    market = Market(fake, data_slice(SHIPPED_FIRST_ROW, SHIPPED_START + 25))
    blueprint = yaml.safe_load((SHIPPED / f"{blueprint_id}.yaml").read_text())
    environment = {**live_environment(fake, mode), "warmup_candles": SHIPPED_START - 1}
    operation = operation_tree(tmp_path, blueprint_id, blueprint, mode, environment)
    market.show(SHIPPED_START)
    run = Run(operation, tmp_path / "state", f"{blueprint_id}@{mode}", "--report", tmp_path / "report",
              env=CREDENTIALS)
    try:
        run.wait_processed(market.moment(SHIPPED_START - 1))
        for index in range(SHIPPED_START, SHIPPED_START + 24):
            step(market, run, index, trade=mode == "live")
        run.stop()
    finally:
        run.kill_if_running()

    assert_clean(run)
    orders = report_rows(tmp_path / "report", run.link, "orders.csv")
    entries = {o["client_order_id"] for o in orders if (o["side"], o["type"]) == ("buy", "limit")}
    exits = {o["type"] for o in orders if o["protective"] == "True"}
    assert entries and all(o["type"] != "market" for o in orders)
    assert exits == ({"stop_loss", "take_profit"} if blueprint_id == "ict_smc_strategy" else set())
    if mode == "live":
        added = fake.received("private/AddOrder")
        assert {r.params["ordertype"] for r in added} == {"limit"} | {e.replace("_", "-") for e in exits}
        assert all("post" in r.params.get("oflags", "").split(",") for r in added if r.params["ordertype"] == "limit")
        assert len([r for r in added if r.params["ordertype"] == "limit"]) == len(entries)
    else:
        assert not fake.received("private/AddOrder")
