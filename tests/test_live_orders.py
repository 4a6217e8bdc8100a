"""Real orders through the real ccxt client against a local fake Kraken that loses replies, lags
and fills above the close; accounts journaled in real SQLite files."""

import threading
import time
from datetime import UTC, datetime, timedelta

import ccxt
import pytest

from backend.dtos import AccountState, OrderDTO, OrderSide, OrderStatus, PositionState
from backend.errors import FatalExchangeError
from backend.interfaces.order_gateway import OrderRequest
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from backend.state import OrderRecord, StateStore, StoreJournal
from backend.venues.kraken.client import make_kraken_client
from backend.venues.kraken.execution import KrakenOrderGateway, link_tag
from services.reconciliation import reconcile
from tests.fake_kraken import TEST_API_KEY, TEST_API_SECRET, FakeKraken
from tests.helpers import candle_at
from tests.live_support import fast_client, live_env

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LINK = "ict@kraken_live"


@pytest.fixture
def store(tmp_path):
    opened = StateStore.open(tmp_path, "op")
    yield opened
    opened.close()


def live_account(fake: FakeKraken, store: StateStore | None, link: str = LINK, capital: float = 10_000,
                 client=None, stop: threading.Event | None = None, **gateway: float) -> StrategyAccount:
    environment = live_env(fake, mode="live", allow_live_orders=True)
    client = client or fast_client(environment, with_credentials=True)
    settings = {"fill_wait_seconds": 1.0, "poll_seconds": 0.01, **gateway}
    kraken = KrakenOrderGateway(client, link_tag(link), stop or threading.Event(), **settings)
    journal = StoreJournal(store, link) if store is not None else None
    return StrategyAccount(Ledger(capital), kraken, journal)


def buy(quantity: float, price: float = 50_000.0) -> OrderDTO:
    return OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=quantity, reference_price=price, reason="test")


def sell(quantity: float, price: float = 50_000.0) -> OrderDTO:
    return OrderDTO(asset="BTC/USD", side=OrderSide.SELL, quantity=quantity, reference_price=price, reason="test")


def assert_no_secrets(text: str) -> None:
    assert TEST_API_KEY not in text and TEST_API_SECRET not in text


def test_a_buy_is_tagged_sent_as_quote_amount_booked_and_journaled(fake, credentials, store, logs):
    account = live_account(fake, store)
    fill = account.submit(buy(0.01), NOW)

    (add_order,) = fake.received("private/AddOrder")
    assert {k: add_order.params[k] for k in ("pair", "type", "ordertype", "volume")} == {
        "pair": "XXBTZUSD", "type": "buy", "ordertype": "market", "volume": "500"}  # 0.01 BTC at 50,000 in USD
    assert set(add_order.params["oflags"].split(",")) == {"fciq", "viqc"}
    assert "userref" not in add_order.params  # Kraken refuses an order with both userref and cl_ord_id
    assert add_order.params["cl_ord_id"].startswith(link_tag(LINK) + "-")
    (exchange_order,) = fake.orders_of(link_tag(LINK))
    assert exchange_order["cl_ord_id"] == add_order.params["cl_ord_id"]

    assert fill is not None and (fill.quantity, fill.price) == (pytest.approx(0.01), 50_000.0)
    assert fill.fee == pytest.approx(1.3)  # 0.26 % of 500 USD, as the exchange reported it
    assert account.ledger.cash == pytest.approx(10_000 - 500 - 1.3)
    (journaled,) = store.fills(LINK)
    assert (journaled.client_order_id, journaled.exchange_order_id) == (exchange_order["cl_ord_id"], fill.order_id)
    assert store.order(journaled.client_order_id).state is OrderStatus.FILLED
    assert store.load_account(LINK) == account.ledger.state
    assert_no_secrets(repr(logs))


@pytest.mark.parametrize(("params", "refusal"), [
    ({"cl_ord_id": "6d1b345e-2821-40e2-ad83-4ecb18a06876", "userref": 7}, "EGeneral:Invalid arguments"),
    ({"cl_ord_id": "nineteen-characters"}, "EGeneral:Invalid arguments:cl_ord_id"),
    ({"cl_ord_id": "6d1b345e-2821-40e2-ad83-4ecb18a0687"}, "EGeneral:Invalid arguments:cl_ord_id"),
    ({"userref": 2**31}, "EGeneral:Invalid arguments:userref"),
])
def test_the_fake_refuses_order_identifiers_as_kraken_documents(fake, credentials, params, refusal):
    client = fast_client(live_env(fake, mode="live", allow_live_orders=True), with_credentials=True)
    with pytest.raises(ccxt.BaseError, match=refusal):
        client.create_order("BTC/USD", "market", "sell", 0.001, params=params)
    fake.balances["XXBT"] = 1.0
    accepted = {"cl_ord_id": "6d1b345e-2821-40e2-ad83-4ecb18a06876"}, {"cl_ord_id": "18-characters-long"}, {
        "cl_ord_id": "6d1b345e282140e2ad834ecb18a06876"}, {"userref": -7}
    for ids in accepted:
        client.create_order("BTC/USD", "market", "sell", 0.001, params=ids)
    assert len(fake.orders) == len(accepted)


def test_the_fake_refuses_volumes_kraken_refuses(fake, credentials):
    fake.balances["XXBT"] = 1.0
    client = fast_client(live_env(fake, mode="live", allow_live_orders=True), with_credentials=True)
    client.load_markets()
    refused = [("sell", "0.000000001", ""), ("sell", "0.00001", ""), ("sell", "1e-3", ""),
               ("sell", "0.001", "viqc"), ("buy", "0.4", "viqc"), ("buy", "10.123456", "viqc"),
               ("sell", "0.001", "fciq,fcib"), ("sell", "0.001", "fciq,reduce")]
    for side, volume, oflags in refused:
        with pytest.raises(ccxt.BaseError, match=r"EGeneral:Invalid arguments|EOrder:"):
            client.privatePostAddOrder({"pair": "XXBTZUSD", "type": side, "ordertype": "market",
                                        "volume": volume, "oflags": oflags})
    assert fake.orders == {}


@pytest.mark.parametrize("refusal", ["EGeneral:Invalid arguments", "EOrder:Cost minimum not met",
                                     "EOrder:Rate limit exceeded", "EGeneral:Invalid arguments:cl_ord_id"])
def test_an_order_kraken_refuses_plainly_is_rejected_never_unknown(fake, credentials, store, logs, refusal):
    fake.refuse_next_add_order(refusal)
    account = live_account(fake, store)

    assert account.submit(buy(0.01), NOW) is None

    (order,) = [store.order(r.params["cl_ord_id"]) for r in fake.received("private/AddOrder")]
    assert order.state is OrderStatus.REJECTED and refusal in order.detail
    assert store.open_orders(LINK) == [] and not fake.received("private/OpenOrders")  # not looked up
    assert account.submit(buy(0.01), NOW) is not None  # nothing blocks the next entry


def test_an_add_order_answer_without_an_order_id_is_looked_up(fake, credentials, store, logs):
    account = live_account(fake, store)
    fake.answer_next_add_order_without_id()

    fill = account.submit(buy(0.01), NOW)

    assert fill is not None and fill.order_id == next(iter(fake.orders))
    assert any(e["event"] == "order_reply_unreadable" for e in logs)


def test_a_lost_add_order_reply_is_looked_up_not_resent(fake, credentials, store, logs):
    account = live_account(fake, store)
    account.ledger.mark("BTC/USD", 50_000.0)
    fake.lose_next_add_order_reply()

    fill = account.submit(buy(0.01), NOW)

    assert len(fake.received("private/AddOrder")) == 1  # never sent twice
    assert len(fake.orders) == 1
    assert fill is not None and fill.quantity == pytest.approx(0.01)
    assert account.ledger.state.trades == 1 and len(store.fills(LINK)) == 1
    assert any(e["event"] == "order_reply_lost" for e in logs)
    assert account.submit(buy(0.01), NOW) is not None  # nothing unsettled: trading goes on


def test_an_order_the_exchange_lists_late_is_booked_once_it_appears(fake, credentials, store):
    fake.hidden_lookups = 3  # the next three looks at a new order do not find it
    account = live_account(fake, store)

    fill = account.submit(buy(0.01), NOW)

    assert fill is not None and len(store.fills(LINK)) == 1
    assert len(fake.received("private/QueryOrders")) == 4


def test_an_order_still_unknown_blocks_new_buys_and_is_settled_on_a_later_tick(fake, credentials, store, logs):
    fake.lose_next_add_order_reply()
    fake.hidden_lookups = 50  # longer than the gateway looks: the outcome stays unknown
    account = live_account(fake, store, lookup_attempts=2)

    assert account.submit(buy(0.01), NOW) is None
    (unknown,) = store.open_orders(LINK)
    assert unknown.state is OrderStatus.UNKNOWN and account.ledger.state.trades == 0
    assert account.submit(buy(0.01), NOW) is None  # no new entry while one is unknown
    assert len(fake.received("private/AddOrder")) == 1
    assert any(e["event"] == "order_skipped" for e in logs)

    fake.orders_of()[0]["_hidden_lookups"] = 0  # the exchange catches up
    account.open_tick(candle_at(NOW, 50_000.0), trading=True)
    assert account.ledger.state.trades == 1 and store.open_orders(LINK) == []
    assert store.order(unknown.client_order_id).state is OrderStatus.FILLED
    assert len(fake.received("private/AddOrder")) == 1


def test_a_restarted_account_still_settles_the_order_it_did_not_know(fake, credentials, tmp_path):
    fake.lose_next_add_order_reply()
    fake.hidden_lookups = 50
    first_store = StateStore.open(tmp_path, "op")
    live_account(fake, first_store, lookup_attempts=1).submit(buy(0.01), NOW)
    first_store.close()

    fake.orders_of()[0]["_hidden_lookups"] = 0
    second_store = StateStore.open(tmp_path, "op")
    restored = StrategyAccount(Ledger(10_000, second_store.load_account(LINK)), live_account(
        fake, None)._gateway, StoreJournal(second_store, LINK))
    assert [r.client_order_id for r in restored.unsettled_orders] == [fake.orders_of()[0]["cl_ord_id"]]
    restored.settle(NOW)
    assert restored.ledger.state.trades == 1 and restored.ledger.position("BTC/USD").qty == pytest.approx(0.01)
    assert second_store.load_account(LINK) == restored.ledger.state
    second_store.close()


def test_a_fill_above_the_close_never_overspends_the_account(fake, credentials, store):
    fake.fill_slippage = 0.02  # fills 2 % above the candle close
    account = live_account(fake, store, capital=1_000)

    fill = account.submit(buy(1.0), NOW)  # more than the account can pay: capped

    assert fill is not None and fill.price == pytest.approx(51_000)
    assert account.ledger.cash >= 0
    assert account.ledger.cash == pytest.approx(0, abs=0.01)


def test_insufficient_funds_is_a_rejection_that_leaves_the_account_alone(fake, credentials, store, logs):
    fake.balances["ZUSD"] = 10.0  # the real account holds less than the strategy's ledger thinks
    account = live_account(fake, store)

    assert account.submit(buy(0.01), NOW) is None

    assert account.ledger.state.cash == 10_000 and account.ledger.state.trades == 0
    (order,) = [store.order(r.params["cl_ord_id"]) for r in fake.received("private/AddOrder")]
    assert order.state is OrderStatus.REJECTED and "Insufficient funds" in order.detail
    assert account.order_outcomes == {"filled": 0, "rejected": 1, "unknown": 0, "skipped": 0}
    assert any(e["event"] == "order_rejected" for e in logs)
    assert_no_secrets(repr(logs))


def test_links_on_one_key_order_at_once_without_a_nonce_error(fake, credentials, tmp_path):
    environment = live_env(fake, mode="live", allow_live_orders=True)
    shared = fast_client(environment, with_credentials=True)
    shared.load_markets()
    store = StateStore.open(tmp_path, "op")
    accounts = [live_account(fake, store, link=f"s{i}@live", capital=1_000, client=shared) for i in range(6)]
    start = threading.Barrier(len(accounts))
    fills = []

    def trade(account: StrategyAccount) -> None:
        start.wait()
        fills.append(account.submit(buy(0.001), NOW))

    threads = [threading.Thread(target=trade, args=(account,)) for account in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    store.close()

    assert fake.nonce_errors == 0
    assert len(fills) == 6 and all(fill is not None for fill in fills)
    assert len(fake.orders) == 6
    assert {o["cl_ord_id"][:8] for o in fake.orders_of()} == {link_tag(f"s{i}@live") for i in range(6)}


def test_separate_clients_on_one_key_do_race_their_nonces(fake, credentials):
    """The failure the shared client prevents: the fake does notice nonces out of order."""
    environment = live_env(fake, mode="live", allow_live_orders=True)
    clients = [fast_client(environment, with_credentials=True) for _ in range(2)]
    clients[1]._last_nonce = 10**15  # this client's nonces are far ahead of the other's
    clients[1].fetch_balance()
    with pytest.raises(Exception, match="Invalid nonce"):
        clients[0].fetch_balance()
    assert fake.nonce_errors == 1


@pytest.mark.slow
@pytest.mark.parametrize("paced", [True, False])
def test_links_on_one_key_stay_within_krakens_call_counter_when_paced(fake, credentials, store, paced):
    """ccxt's pacing of the one shared client (a private call costs 3 x rateLimit) against Kraken's
    Starter counter (15, decaying 0.33/s), both 100 times faster; unpaced, the fake does refuse."""
    fake.call_counter = (15, 0.33 * 100)
    fake.open_polls = 4  # every order is polled a few times before it shows filled
    environment = live_env(fake, mode="live", allow_live_orders=True)
    shared = make_kraken_client(environment, with_credentials=True)
    shared.rateLimit, shared.enableRateLimit = 1000 / 100, paced
    shared.load_markets()
    accounts = [live_account(fake, store, link=f"s{i}@live", capital=1_000, client=shared, poll_seconds=0.001,
                             fill_wait_seconds=5.0) for i in range(4)]

    fills = [account.submit(buy(0.001), NOW) for account in accounts for _ in range(2)]

    if paced:
        assert fake.rate_limited == 0 and all(fill is not None for fill in fills)
    else:
        assert fake.rate_limited > 0


def test_a_stop_cuts_the_fill_wait_short_and_leaves_the_order_unknown(fake, credentials, store):
    fake.open_polls = 10_000  # the order stays open
    stop = threading.Event()
    account = live_account(fake, store, stop=stop, fill_wait_seconds=60, poll_seconds=0.05)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()

    assert account.submit(buy(0.01), NOW) is None

    assert time.monotonic() - started < 20  # the stop's 0.3 s, not the 60 s fill wait (a loaded machine's margin)
    (unknown,) = store.open_orders(LINK)
    (placed,) = fake.orders
    assert (unknown.state, unknown.exchange_order_id) == (OrderStatus.UNKNOWN, placed)


def test_a_rejected_key_stops_the_run_without_leaking_it(fake, monkeypatch, store):
    monkeypatch.setenv("OPDAEMON_TEST_KRAKEN_KEY", "SOME-OTHER-KEY-" + "x" * 20)
    monkeypatch.setenv("OPDAEMON_TEST_KRAKEN_SECRET", TEST_API_SECRET)
    fake.echo_key_in_errors = True
    account = live_account(fake, store)
    with pytest.raises(FatalExchangeError, match="EAPI:Invalid key") as raised:
        account.submit(buy(0.01), NOW)
    assert "SOME-OTHER-KEY" not in str(raised.value) and TEST_API_SECRET not in str(raised.value)
    assert account.ledger.state.trades == 0


def journal_unsent_intent(store: StateStore, minutes_ago: float) -> OrderRecord:
    """An intent journaled by a daemon that died before sending it."""
    record = OrderRecord("c0ffee00-0000-4000-8000-000000000001", LINK, "BTC/USD", "buy", 0.01, 50_000.0,
                         "test", OrderStatus.PENDING, created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago))
    store.record_intent(record)
    return record


def test_an_intent_kraken_never_heard_of_is_rejected_after_a_while(fake, credentials, store, logs):
    record = journal_unsent_intent(store, minutes_ago=3)
    account = live_account(fake, store, lookup_attempts=1)
    account.settle(NOW)
    assert store.order(record.client_order_id).state is OrderStatus.REJECTED
    assert "never placed" in store.order(record.client_order_id).detail
    assert account.unsettled_orders == [] and account.submit(buy(0.01), NOW) is not None  # buys again


@pytest.mark.parametrize(("minutes_ago", "failing_lookups"), [(0.2, 0), (10, 10)],
                         ids=["recent_kraken_may_lag", "old_but_kraken_does_not_answer"])
def test_an_intent_stays_unknown_while_nothing_can_be_concluded(fake, credentials, store, minutes_ago,
                                                                failing_lookups):
    record = journal_unsent_intent(store, minutes_ago=minutes_ago)
    fake.fail_next(failing_lookups)
    account = live_account(fake, store, lookup_attempts=1)
    account.settle(NOW)
    assert store.order(record.client_order_id).state is OrderStatus.UNKNOWN
    assert account.submit(buy(0.01), NOW) is None  # still no new buys


def test_a_fill_reported_by_two_paths_is_booked_once(fake, credentials, store, logs):
    """Two accounts on one link's journal (a run that outlived its stop and the run replacing it)
    both learn of the same exchange order: it is one fill, in the store and in what they book."""
    fake.lose_next_add_order_reply()
    fake.hidden_lookups = 50
    first = live_account(fake, store, lookup_attempts=1)
    assert first.submit(buy(0.01), NOW) is None  # unknown: the reply was lost, the order not listed yet
    second = StrategyAccount(Ledger(10_000, store.load_account(LINK)), first._gateway, StoreJournal(store, LINK))
    fake.orders_of()[0]["_hidden_lookups"] = 0

    second.settle(NOW)
    first.settle(NOW)

    (fill,) = store.fills(LINK)
    assert fill.exchange_order_id == next(iter(fake.orders))
    assert second.ledger.position("BTC/USD").qty == pytest.approx(0.01)
    assert first.ledger.position("BTC/USD").qty == 0 and first.unsettled_orders == []
    assert store.load_account(LINK) == second.ledger.state
    assert [e["event"] for e in logs if e["event"] == "fill_already_booked"] == ["fill_already_booked"]


def test_an_order_settled_at_start_is_booked_on_its_candle_not_the_wall_clock(fake, credentials, tmp_path):
    fake.lose_next_add_order_reply()
    fake.hidden_lookups = 50
    first_store = StateStore.open(tmp_path, "op")
    crashed = live_account(fake, first_store, lookup_attempts=1)
    crashed.open_tick(candle_at(NOW, 50_000.0), trading=True)  # the candle it trades on
    assert crashed.submit(buy(0.01), NOW) is None
    first_store.close()

    fake.orders_of()[0]["_hidden_lookups"] = 0
    store = StateStore.open(tmp_path, "op")
    restored = StrategyAccount(Ledger(10_000, store.load_account(LINK)), crashed._gateway, StoreJournal(store, LINK))
    reconcile({LINK: restored}, {LINK: "USD"})

    (fill,) = store.fills(LINK)
    assert fill.candle_time == NOW
    store.close()


def test_a_paper_order_journaled_without_its_fill_settles_as_never_executed(tmp_path):
    """The daemon died between a paper order's intent and its simulated fill: the next start
    settles it as rejected and trades on (it used to fail the run at every start)."""
    store = StateStore.open(tmp_path, "op")
    journal = StoreJournal(store, "p@paper")
    intent = OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=0.01, reference_price=50_000.0, reason="t")
    journal.record_intent(OrderRequest("paper-1", "BTC/USD", OrderSide.BUY, 0.01, 50_000.0, reason=intent.reason))

    restarted = StrategyAccount(Ledger(10_000), SimulatedGateway(FillRules(0.0026, 0.0026)),
                                StoreJournal(store, "p@paper"))
    restarted.open_tick(candle_at(NOW, 50_000.0), trading=True)

    assert store.order("paper-1").state is OrderStatus.REJECTED and restarted.unsettled_orders == []
    assert restarted.submit(intent, NOW) is not None  # entries are not blocked
    store.close()


def test_selling_all_of_a_float_sum_of_fills_sells_all_of_it(fake, credentials, store):
    """0.7 + 0.1 BTC is 0.7999999999999999 as a float: the sell must not leave one lot behind."""
    fake.balances["ZUSD"] = 50_000.0
    account = live_account(fake, store, capital=50_000)
    account.submit(buy(0.7), NOW)
    account.submit(buy(0.1), NOW)
    assert account.ledger.position("BTC/USD").qty < 0.8  # the float sum, a hair below

    account.submit(sell(account.ledger.position("BTC/USD").qty), NOW)

    assert fake.received("private/AddOrder")[-1].params["volume"] == "0.8"
    assert "BTC/USD" not in account.ledger.positions and fake.balances["XXBT"] == pytest.approx(0, abs=1e-12)


def test_a_position_below_the_minimum_order_is_dust_never_shown_to_workers_as_held(fake, credentials, tmp_path):
    store = StateStore.open(tmp_path, "op")
    store.save_account(LINK, AccountState(10_000, 9_999, 0, 10_000, 0, 2, {"BTC/USD": PositionState(2e-8, 50_000)}))
    environment = live_env(fake, mode="live", allow_live_orders=True)
    gateway = KrakenOrderGateway(fast_client(environment, with_credentials=True), link_tag(LINK), threading.Event())
    account = StrategyAccount(Ledger(10_000, store.load_account(LINK)), gateway, StoreJournal(store, LINK))

    _, held, entry, equity, _ = account.open_tick(candle_at(NOW, 50_000.0), trading=True)

    assert (held, entry) == (0.0, None)  # a planner sees a flat account: it never plans to sell dust
    assert equity == pytest.approx(9_999 + 2e-8 * 50_000)  # still valued
    (dust,) = account.ledger.open_positions()
    assert (dust.asset, dust.quantity, dust.dust) == ("BTC/USD", 2e-8, True)
    store.close()


def test_an_order_a_lookup_finds_still_open_is_polled_until_done(fake, credentials, store):
    """Found open by its cl_ord_id after a lost reply: it is waited for, never booked rejected (which
    would let new buys through while a live order is out)."""
    fake.lose_next_add_order_reply()
    fake.open_polls = 3  # open on the first looks
    account = live_account(fake, store)

    fill = account.submit(buy(0.01), NOW)

    assert fill is not None and fill.quantity == pytest.approx(0.01)
    assert store.order(fake.orders_of()[0]["cl_ord_id"]).state is OrderStatus.FILLED


@pytest.mark.parametrize("status", ["canceled", "expired"])
def test_an_order_the_venue_ends_with_nothing_filled_is_rejected_not_a_fill_of_zero(fake, credentials, store,
                                                                                      status):
    fake.end_status = status
    account = live_account(fake, store)

    assert account.submit(buy(0.01), NOW) is None

    (order,) = [store.order(o["cl_ord_id"]) for o in fake.orders_of()]
    assert order.state is OrderStatus.REJECTED and status in order.detail
    assert store.fills(LINK) == [] and account.ledger.state.trades == 0 and account.ledger.cash == 10_000


def test_a_fee_kraken_charges_in_the_base_currency_is_booked_at_its_quote_value(fake, credentials, store):
    """The order comes back `oflags: fcib` (ccxt then labels its fee BTC), but QueryOrders' fee is
    "total fee (quote currency)" whichever currency paid it: booked as is, never times the price."""
    fake.fee_in_base = True
    account = live_account(fake, store)

    fill = account.submit(buy(0.01), NOW)

    assert fake.balances["XXBT"] == pytest.approx(0.01 - 0.01 * 0.0026)  # paid in BTC: 2.6e-5 BTC
    assert fill is not None and fill.fee == pytest.approx(0.01 * 0.0026 * 50_000)  # 1.3 USD
    assert account.ledger.fees_paid == pytest.approx(1.3) and store.fills(LINK)[0].fee == pytest.approx(1.3)


def test_an_order_closed_partly_filled_books_what_executed_and_says_so(fake, credentials, store, logs):
    account = live_account(fake, store)
    account.submit(buy(0.02), NOW)
    fake.executed_fraction = 0.5  # the exchange closes the sell half done (market price protection)

    fill = account.submit(sell(0.02), NOW)

    assert fill is not None and fill.quantity == pytest.approx(0.01)
    assert account.ledger.position("BTC/USD").qty == pytest.approx(0.01)
    (partial,) = [e for e in logs if e["event"] == "order_partially_filled"]
    assert (partial["filled"], partial["amount"]) == (pytest.approx(0.01), pytest.approx(0.02))


# Passing errors (support.kraken.com "API error messages"): "Service status errors" such as
# EService:Unavailable, in Kraken's envelope, and "Cloudflare (networking) errors", an HTTP 5xx.
@pytest.mark.parametrize("passing", ["http_503", "EService:Unavailable"])
def test_a_lookup_failing_on_a_passing_exchange_error_is_tried_again(fake, credentials, store, logs, passing):
    fake.lose_next_add_order_reply()
    account = live_account(fake, store, lookup_attempts=3)
    if passing == "http_503":  # the first lookup meets it
        fake.fail_next(1, endpoint="private/OpenOrders")
    else:
        fake.refuse_next(1, passing, endpoint="private/OpenOrders")

    fill = account.submit(buy(0.01), NOW)

    assert fill is not None and len(store.fills(LINK)) == 1
    assert [e["attempt"] for e in logs if e["event"] == "order_lookup_failed"] == [1]


def test_unknown_orders_are_looked_up_on_traded_candles_only_never_during_warm_up(fake, credentials, store):
    fake.lose_next_add_order_reply()
    fake.hidden_lookups = 50
    account = live_account(fake, store, lookup_attempts=1)
    assert account.submit(buy(0.01), NOW) is None
    lookups = len(fake.received("private/OpenOrders"))

    account.open_tick(candle_at(NOW, 50_000.0), trading=False)  # a warm-up candle
    assert len(fake.received("private/OpenOrders")) == lookups
    account.open_tick(candle_at(NOW, 50_000.0), trading=True)
    assert len(fake.received("private/OpenOrders")) == lookups + 1


def test_an_order_worth_exactly_the_minimum_notional_is_placed():
    from backend.portfolio.account import MIN_NOTIONAL
    from tests.helpers import simulated_account

    account = simulated_account(Ledger(1_000))
    assert account.submit(buy(MIN_NOTIONAL / 50_000), NOW) is not None
    assert account.submit(buy(MIN_NOTIONAL / 50_000 * 0.99), NOW) is None
