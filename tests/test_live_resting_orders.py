"""Resting orders (limits, stops, take-profits) on Kraken: a StrategyAccount with the real
KrakenOrderGateway and a StoreJournal on a real SQLite file, the real ccxt clients (REST, and
ccxt.pro on the executions channel) against the fake Kraken on 127.0.0.1, which rests, matches
(`trade_candle`), cancels and amends orders and streams their executions."""

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from backend.dtos import FillDTO, OrderDTO, OrderSide, OrderStatus, OrderType, TimeInForce
from backend.market_data.raw_tick import RawTick
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from backend.state import StateStore, StoreJournal
from backend.venues.kraken.client import AccountClient
from backend.venues.kraken.execution import KrakenOrderGateway, link_tag
from backend.venues.kraken.executions import ExecutionFeed
from tests.fake_kraken import FakeKraken
from tests.fake_kraken_ws import FakeKrakenStream, running_fake_kraken_ws
from tests.helpers import candle_at
from tests.live_support import credentials, fake, fast_client, live_env, logs  # noqa: F401  (fixtures)

LINK = "resting@kraken_live"
T0 = 1_700_000_040  # the candle the orders are decided on (epoch seconds)
PAIR = "XXBTZUSD"
MAKER, TAKER = 0.0016, 0.0026


@pytest.fixture
def store(tmp_path) -> Iterator[StateStore]:
    opened = StateStore.open(tmp_path, "op")
    yield opened
    opened.close()


@pytest.fixture
def client(fake: FakeKraken, credentials: None) -> AccountClient:  # noqa: F811
    return fast_client(live_env(fake, mode="live", allow_live_orders=True), with_credentials=True)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def stream(fake: FakeKraken) -> Iterator[FakeKrakenStream]:  # noqa: F811
    with running_fake_kraken_ws(rest=fake) as served:
        yield served


@pytest.fixture
def feed(client: AccountClient, stream: FakeKrakenStream, stop: threading.Event) -> Iterator[ExecutionFeed]:
    executions = ExecutionFeed(client, stream.url, stop)
    executions.start()
    wait_until(lambda: executions.connected)
    yield executions
    stop.set()
    executions.join(2)


def account(client: AccountClient, store: StateStore, stop: threading.Event, feed: ExecutionFeed | None = None,
            check_seconds: float = 60.0) -> StrategyAccount:
    gateway = KrakenOrderGateway(client, link_tag(LINK), stop, fill_wait_seconds=1.0, poll_seconds=0.01,
                                 executions=feed, check_seconds=check_seconds)
    return StrategyAccount(Ledger(10_000), gateway, StoreJournal(store, LINK))


def at(candle: int) -> datetime:
    return datetime.fromtimestamp(T0 + 60 * candle, tz=UTC)


def candle(acct: StrategyAccount, fake: FakeKraken, n: int, open_: float, high: float, low: float,  # noqa: F811
           close: float) -> None:
    """The market trades candle n on the fake, then the daemon processes it."""
    fake.trade_candle(PAIR, T0 + 60 * n, open_, high, low, close)
    acct.open_tick(candle_at(at(n), close), trading=True)


def quiet(acct: StrategyAccount, n: int, price: float = 49_500.0) -> None:
    """Candle n, in which nothing reaches any order: the daemon processes it."""
    acct.open_tick(candle_at(at(n), price), trading=True)


def limit_buy(quantity: float, limit: float, **extra: object) -> OrderDTO:
    return OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=quantity, reference_price=50_000.0,
                    reason="test", order_type=OrderType.LIMIT, limit_price=limit, **extra)


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def heard_done(feed: ExecutionFeed, order_id: str | None) -> Callable[[], bool]:
    return lambda: (heard := feed.latest(order_id, "")) is not None and heard.done


def add_orders(fake: FakeKraken, ordertype: str) -> list[dict]:  # noqa: F811
    return [r.params for r in fake.received("private/AddOrder") if r.params["ordertype"] == ordertype]


# --- limits ------------------------------------------------------------------------------------


def test_a_limit_buy_filled_three_candles_later_is_booked_once_at_its_limit_with_the_maker_fee(
        fake, client, store, stop, feed):  # noqa: F811
    acct = account(client, store, stop, feed)
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.01, 49_000.0), at(0))
    assert ticket.status is OrderStatus.OPEN and ticket.fill is None
    (sent,) = add_orders(fake, "limit")
    assert (sent["price"], sent["volume"], sent["cl_ord_id"]) == ("49000", "0.01", ticket.client_order_id)

    quiet(acct, 1)  # the first poll checks every order over REST
    lookups = len(fake.received("private/QueryOrders"))
    candle(acct, fake, 2, 49_500.0, 49_600.0, 49_000.0, 49_400.0)  # touches the limit: no fill
    assert len(fake.received("private/QueryOrders")) == lookups  # the channel said nothing moved: no REST
    fake.trade_candle(PAIR, T0 + 180, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    order_id = store.order(ticket.client_order_id).exchange_order_id
    wait_until(heard_done(feed, order_id))
    quiet(acct, 3)
    quiet(acct, 4)

    (fill,) = store.fills(LINK)
    assert (fill.quantity, fill.price, fill.fee) == (pytest.approx(0.01), 49_000.0, pytest.approx(490 * MAKER))
    assert fill.candle_time == at(3)
    assert store.order(ticket.client_order_id).state is OrderStatus.FILLED
    assert acct.ledger.cash == pytest.approx(10_000 - 490 - 490 * MAKER)
    assert acct.open_orders() == []


def test_a_partial_fill_then_a_gtd_expiry_over_rest_only(fake, client, store, stop):  # noqa: F811
    acct = account(client, store, stop)  # no executions channel: REST on every candle
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.02, 49_000.0, time_in_force=TimeInForce.GTD, expires_at=at(3)), at(0))
    (sent,) = add_orders(fake, "limit")
    assert (sent["timeinforce"], sent["expiretm"]) == ("GTD", str(T0 + 180))

    fake.partial_fill_next(0.5)
    candle(acct, fake, 1, 49_500.0, 49_600.0, 48_900.0, 49_100.0)
    assert [(o.status, o.filled_quantity) for o in acct.open_orders()] == [(OrderStatus.PARTIALLY_FILLED, 0.01)]
    candle(acct, fake, 3, 48_000.0, 48_100.0, 47_000.0, 48_000.0)  # would fill, but it expired first

    record = store.order(ticket.client_order_id)
    assert (record.state, record.filled_quantity) == (OrderStatus.EXPIRED, pytest.approx(0.01))
    (fill,) = store.fills(LINK)
    assert (fill.quantity, fill.price) == (pytest.approx(0.01), 49_000.0)
    assert acct.ledger.position("BTC/USD").qty == pytest.approx(0.01)
    assert acct.open_orders() == []


def test_a_cancel_racing_a_fill_books_the_fill_once_as_filled(fake, client, store, stop, feed):  # noqa: F811
    acct = account(client, store, stop, feed)
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.01, 49_000.0), at(0))
    quiet(acct, 1)
    # The daemon decides to cancel; the order fills before its CancelOrder arrives.
    fake.trade_candle(PAIR, T0 + 120, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    assert acct.cancel(ticket.client_order_id, at(2)) is OrderStatus.FILLED
    (cancel,) = fake.received("private/CancelOrder")
    wait_until(heard_done(feed, cancel.params["txid"]))
    quiet(acct, 2)
    quiet(acct, 3)

    assert store.order(ticket.client_order_id).state is OrderStatus.FILLED
    (fill,) = store.fills(LINK)
    assert (fill.quantity, fill.price) == (pytest.approx(0.01), 49_000.0)
    assert acct.ledger.position("BTC/USD").qty == pytest.approx(0.01)


def test_a_cancel_of_an_open_order_is_canceled_with_what_filled(fake, client, store, stop):  # noqa: F811
    acct = account(client, store, stop)
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.02, 49_000.0), at(0))
    fake.partial_fill_next(0.5)
    fake.trade_candle(PAIR, T0 + 60, 49_500.0, 49_600.0, 48_900.0, 49_100.0)
    assert acct.cancel(ticket.client_order_id, at(1)) is OrderStatus.CANCELED
    record = store.order(ticket.client_order_id)
    assert (record.state, record.filled_quantity) == (OrderStatus.CANCELED, pytest.approx(0.01))
    assert len(store.fills(LINK)) == 1


def test_an_amend_changes_the_order_in_place_and_it_fills_as_amended(fake, client, store, stop, feed):  # noqa: F811
    acct = account(client, store, stop, feed)
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.01, 49_000.0), at(0))
    assert acct.amend(ticket.client_order_id, quantity=0.02, limit_price=48_500.0) is OrderStatus.OPEN
    (amend,) = fake.received("private/AmendOrder")
    assert (amend.params["order_qty"], amend.params["limit_price"]) == ("0.02", "48500")
    record = store.order(ticket.client_order_id)
    assert (record.quantity, record.limit_price) == (0.02, 48_500.0)

    candle(acct, fake, 1, 49_000.0, 49_100.0, 48_700.0, 48_800.0)  # under the old limit only
    assert acct.open_orders()[0].status is OrderStatus.OPEN
    fake.trade_candle(PAIR, T0 + 120, 48_600.0, 48_700.0, 48_400.0, 48_500.0)
    wait_until(heard_done(feed, amend.params["txid"]))
    quiet(acct, 2)
    (fill,) = store.fills(LINK)
    assert (fill.quantity, fill.price) == (pytest.approx(0.02), 48_500.0)


def test_a_refused_amend_leaves_the_order_as_it_was(fake, client, store, stop):  # noqa: F811
    acct = account(client, store, stop)
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.01, 49_000.0), at(0))
    fake.fail_next(1, endpoint="private/AmendOrder")
    assert acct.amend(ticket.client_order_id, limit_price=48_500.0) is OrderStatus.UNKNOWN
    assert store.order(ticket.client_order_id).limit_price == 49_000.0
    quiet(acct, 1)  # settled by lookup: still open at its old price
    (view,) = acct.open_orders()
    assert (view.status, view.limit_price) == (OrderStatus.OPEN, 49_000.0)


# --- refusals and lost replies ----------------------------------------------------------------


def test_a_post_only_limit_that_would_take_is_rejected_and_never_sent_again(fake, client, store, stop):  # noqa: F811
    acct = account(client, store, stop)
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.01, 50_100.0, post_only=True), at(0))
    assert ticket.status is OrderStatus.REJECTED
    (sent,) = add_orders(fake, "limit")
    assert sent["oflags"] == "fciq,post"
    assert fake.orders == {}
    detail = store.order(ticket.client_order_id).detail
    assert detail.startswith("post only") and "EOrder:Post only order" in detail
    quiet(acct, 1)
    assert len(fake.received("private/AddOrder")) == 1


def test_insufficient_funds_on_a_limit_is_rejected(fake, client, store, stop):  # noqa: F811
    fake.balances["ZUSD"] = 100.0  # the exchange account holds less than the strategy's ledger says
    acct = account(client, store, stop)
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.01, 49_000.0), at(0))
    assert ticket.status is OrderStatus.REJECTED
    assert store.order(ticket.client_order_id).detail.startswith("insufficient funds")
    assert acct.open_orders() == [] and acct.unsettled_orders == []


def test_a_lost_add_order_reply_for_a_resting_order_is_settled_by_lookup_never_sent_twice(
        fake, client, store, stop):  # noqa: F811
    acct = account(client, store, stop)
    quiet(acct, 0, 50_000.0)
    fake.lose_next_reply("private/AddOrder")
    ticket = acct.place(limit_buy(0.01, 49_000.0), at(0))
    assert ticket.status is OrderStatus.OPEN
    (exchange_order,) = fake.orders_of(link_tag(LINK))
    assert store.order(ticket.client_order_id).exchange_order_id == next(iter(fake.orders))
    candle(acct, fake, 1, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    assert len(fake.received("private/AddOrder")) == 1
    assert store.order(ticket.client_order_id).state is OrderStatus.FILLED
    assert exchange_order["status"] == "closed" and len(store.fills(LINK)) == 1


# --- the executions channel misbehaving -----------------------------------------------------------


def test_duplicated_and_reordered_execution_messages_book_each_fill_once(fake, client, store, stop, feed, stream):  # noqa: F811
    acct = account(client, store, stop, feed)
    quiet(acct, 0, 50_000.0)
    stream.duplicate_executions = True
    first = acct.place(limit_buy(0.01, 49_000.0), at(0))
    quiet(acct, 1)
    first_id = store.order(first.client_order_id).exchange_order_id
    fake.partial_fill_next(0.5)
    fake.trade_candle(PAIR, T0 + 120, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    wait_until(lambda: feed.latest(first_id, "").cumulative_quantity == 0.005)
    quiet(acct, 2)
    quiet(acct, 3)
    fake.trade_candle(PAIR, T0 + 240, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    wait_until(heard_done(feed, first_id))
    quiet(acct, 4)

    stream.duplicate_executions, stream.reorder_executions = False, True
    second = acct.place(limit_buy(0.01, 48_000.0), at(4))
    quiet(acct, 5)
    fake.trade_candle(PAIR, T0 + 360, 48_400.0, 48_450.0, 47_900.0, 48_100.0)
    wait_until(heard_done(feed, store.order(second.client_order_id).exchange_order_id))
    quiet(acct, 6)
    quiet(acct, 7)

    fills = store.fills(LINK)
    assert [(f.client_order_id, round(f.quantity, 8), f.price) for f in fills] == [
        (first.client_order_id, 0.005, 49_000.0), (first.client_order_id, 0.005, 49_000.0),
        (second.client_order_id, 0.01, 48_000.0)]
    assert acct.ledger.position("BTC/USD").qty == pytest.approx(0.02)
    assert [store.order(t.client_order_id).state for t in (first, second)] == [OrderStatus.FILLED] * 2


def test_dropped_and_late_execution_messages_are_recovered_over_rest(fake, client, store, stop, feed, stream):  # noqa: F811
    acct = account(client, store, stop, feed, check_seconds=0.3)
    quiet(acct, 0, 50_000.0)
    dropped = acct.place(limit_buy(0.01, 49_000.0), at(0))
    late = acct.place(limit_buy(0.01, 48_000.0), at(0))
    quiet(acct, 1)  # the first poll: REST
    stream.drop_executions(10)  # every message of the next fill is lost
    fake.trade_candle(PAIR, T0 + 120, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    quiet(acct, 2)  # the channel reported nothing: not checked yet
    assert store.order(dropped.client_order_id).state is OrderStatus.OPEN
    time.sleep(0.35)
    quiet(acct, 3)  # not reported on for check_seconds: checked over REST
    assert store.order(dropped.client_order_id).state is OrderStatus.FILLED

    stream.deliver_late(10)  # the next fill's messages come only after a reconnect
    fake.trade_candle(PAIR, T0 + 240, 48_400.0, 48_450.0, 47_900.0, 48_100.0)
    epoch = feed.epoch
    stream.drop_connections()
    wait_until(lambda: feed.epoch > epoch)
    quiet(acct, 4)  # a new subscription: every working order checked over REST
    assert store.order(late.client_order_id).state is OrderStatus.FILLED
    quiet(acct, 5)
    assert [round(f.quantity, 8) for f in store.fills(LINK)] == [0.01, 0.01]
    assert acct.ledger.position("BTC/USD").qty == pytest.approx(0.02)


# --- protective stops -----------------------------------------------------------------------------


def protected_entry(acct: StrategyAccount, fake: FakeKraken) -> str:  # noqa: F811
    """A limit buy protected by a stop at 47,000, filled on candle 1: its stop goes on the book."""
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.01, 49_000.0, stop_loss_price=47_000.0), at(0))
    candle(acct, fake, 1, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    return str(ticket.client_order_id)


def test_a_protective_stop_is_placed_once_after_the_entry_fills_and_a_candle_triggers_it(
        fake, client, store, stop):  # noqa: F811
    acct = account(client, store, stop)
    protected_entry(acct, fake)
    (stop_order,) = add_orders(fake, "stop-loss")
    assert (stop_order["type"], stop_order["price"], stop_order["volume"]) == ("sell", "47000", "0.01")
    candle(acct, fake, 2, 49_000.0, 49_200.0, 48_000.0, 48_500.0)
    assert len(add_orders(fake, "stop-loss")) == 1
    candle(acct, fake, 3, 48_000.0, 48_100.0, 46_500.0, 46_800.0)  # through the stop: sold at 47,000

    entry, sell = store.fills(LINK)
    assert (entry.side, entry.price) == ("buy", 49_000.0)
    assert (sell.side, sell.quantity, sell.price) == ("sell", pytest.approx(0.01), 47_000.0)
    assert sell.fee == pytest.approx(470 * TAKER)
    assert acct.ledger.position("BTC/USD").qty == pytest.approx(0.0)
    candle(acct, fake, 4, 46_800.0, 46_900.0, 46_000.0, 46_500.0)
    assert len(add_orders(fake, "stop-loss")) == 1 and acct.open_orders() == []


def test_an_exit_whose_stop_cannot_be_cancelled_is_skipped_and_sells_once_the_cancel_takes(
        fake, client, store, stop):  # noqa: F811
    """The strategy sells while its venue stop covers the position: CancelOrder fails (an outage),
    so selling too could sell the coins twice: the sell is skipped, the stop stays booked open; on
    the next try the cancel takes and the position is sold once."""
    acct = account(client, store, stop)
    protected_entry(acct, fake)
    quiet(acct, 2, 49_500.0)
    exit_ = OrderDTO(asset="BTC/USD", side=OrderSide.SELL, quantity=0.01, reference_price=49_500.0, reason="out")
    fake.fail_next(1, endpoint="private/CancelOrder")
    assert acct.submit(exit_, at(2)) is None
    assert not [r for r in fake.received("private/AddOrder") if r.params["ordertype"] == "market"
                and r.params["type"] == "sell"]
    assert [o.order_type for o in acct.open_orders()] == [OrderType.STOP_LOSS]
    assert acct.ledger.position("BTC/USD").qty == pytest.approx(0.01)

    fill = acct.submit(exit_, at(2))
    assert fill is not None and fill.quantity == pytest.approx(0.01)
    assert acct.open_orders() == [] and [o["status"] for o in fake.orders_of(link_tag(LINK))
                                          if o["descr"]["ordertype"] == "stop-loss"] == ["canceled"]


def test_a_take_profit_whose_cancel_fails_after_the_stop_filled_is_cancelled_on_a_later_candle(
        fake, client, store, stop):  # noqa: F811
    """One-cancels-the-other by the daemon: the stop fills, the take-profit's cancel fails; the
    position is gone but the take-profit is not forgotten: the next candle cancels it."""
    acct = account(client, store, stop)
    quiet(acct, 0, 50_000.0)
    acct.place(limit_buy(0.01, 49_000.0, stop_loss_price=47_000.0, take_profit_price=53_000.0), at(0))
    candle(acct, fake, 1, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    assert sorted(o.order_type for o in acct.open_orders()) == [OrderType.STOP_LOSS, OrderType.TAKE_PROFIT]
    fake.fail_next(2, endpoint="private/CancelOrder")  # as the stop's fill is booked, and again on that candle
    candle(acct, fake, 2, 48_000.0, 48_100.0, 46_500.0, 46_800.0)  # through the stop
    assert acct.ledger.position("BTC/USD").qty == pytest.approx(0.0)
    assert [o.order_type for o in acct.open_orders()] == [OrderType.TAKE_PROFIT]  # still open on the venue
    quiet(acct, 3, 46_800.0)
    assert acct.open_orders() == [] and acct.snapshot().protections == {}
    statuses = {o["descr"]["ordertype"]: o["status"] for o in fake.orders_of(link_tag(LINK))}
    assert (statuses["stop-loss"], statuses["take-profit"]) == ("closed", "canceled")


def test_a_stop_triggered_while_the_daemon_was_down_is_booked_once_at_restart(
        fake, client, store, stop, stream):  # noqa: F811
    acct = account(client, store, stop)
    protected_entry(acct, fake)
    del acct  # the daemon stops; the market moves through the stop meanwhile
    fake.trade_candle(PAIR, T0 + 120, 48_000.0, 48_100.0, 46_500.0, 46_800.0)

    feed = ExecutionFeed(client, stream.url, stop)
    restarted = account(client, store, stop, feed)
    assert [view.order_type for view in restarted.open_orders()] == [OrderType.STOP_LOSS]
    quiet(restarted, 3, 46_800.0)  # the first poll is REST, whatever the channel says
    quiet(restarted, 4, 46_800.0)
    fills = store.fills(LINK)
    assert [(f.side, f.price) for f in fills] == [("buy", 49_000.0), ("sell", 47_000.0)]
    assert fills[1].candle_time == at(3)
    assert restarted.ledger.position("BTC/USD").qty == pytest.approx(0.0)
    assert len(add_orders(fake, "stop-loss")) == 1 and restarted.open_orders() == []


def test_a_rate_limited_protective_stop_is_placed_again_on_the_next_candle_exactly_once(
        fake, client, store, stop):  # noqa: F811
    acct = account(client, store, stop)
    quiet(acct, 0, 50_000.0)
    acct.place(limit_buy(0.01, 49_000.0, stop_loss_price=47_000.0), at(0))
    # The entry fills; its stop is refused, and so is the account's second try on that candle.
    fake.refuse_next_add_order("EOrder:Rate limit exceeded", count=2)
    candle(acct, fake, 1, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    assert [o for o in fake.orders.values() if o["_type"] == "stop-loss"] == []
    assert [order.state for order in store.order_events(LINK)].count(OrderStatus.REJECTED) == 2
    quiet(acct, 2, 49_100.0)  # the next candle places it again
    quiet(acct, 3, 49_100.0)
    stops = [o for o in fake.orders.values() if o["_type"] == "stop-loss"]
    assert [(o["status"], o["_volume"]) for o in stops] == [("open", 0.01)]
    assert len(add_orders(fake, "stop-loss")) == 3
    assert [view.order_type for view in acct.open_orders()] == [OrderType.STOP_LOSS]


# --- trailing stops -----------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "sent_price"), [({"trailing_offset": 500.0}, "+500"),
                                                    ({"trailing_offset_pct": 1.0}, "+1%")], ids=["quote", "pct"])
def test_a_trailing_stop_on_kraken_books_the_fill_the_simulator_books_on_the_same_candles(
        fake, client, store, stop, offset, sent_price):  # noqa: F811
    """Bought 0.01 at 50,000, then a trailing stop sell placed through ccxt; the candles raise the
    peak to 51,200 and the third one, whose high would raise it further, reaches the trigger the
    peak had before it: Kraken (the fake's book) and the simulator sell on the same candle at the
    same price."""
    live = account(client, store, stop)
    simulated = StrategyAccount(Ledger(10_000), SimulatedGateway(FillRules(MAKER, TAKER)))
    sells: list[FillDTO] = []
    simulated.on_fill = lambda fill: sells.append(fill) if fill.side is OrderSide.SELL else None
    candles = [(50_000.0, 50_800.0, 49_600.0, 50_700.0), (50_700.0, 51_200.0, 50_400.0, 51_000.0),
               (51_000.0, 51_500.0, 50_650.0, 50_900.0)]
    for acct in (live, simulated):
        acct.open_tick(candle_at(at(0), 50_000.0), trading=True)
        acct.submit(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=0.01, reference_price=50_000.0,
                             reason="in"), at(0))
        ticket = acct.place(OrderDTO(asset="BTC/USD", side=OrderSide.SELL, quantity=0.01, reference_price=50_000.0,
                                     reason="trail", order_type=OrderType.TRAILING_STOP, **offset), at(0))
        assert ticket.status is OrderStatus.OPEN
    (sent,) = add_orders(fake, "trailing-stop")
    assert (sent["type"], sent["price"], sent["trigger"], sent["volume"]) == ("sell", sent_price, "last", "0.01")
    for n, (open_, high, low, close) in enumerate(candles, start=1):
        candle(live, fake, n, open_, high, low, close)
        simulated.open_tick(RawTick(symbol="BTC/USD", timestamp=at(n), open=open_, high=high, low=low, close=close,
                                    volume=1.0), trading=True)
        if n < 3:
            assert sells == [] and [o.order_type for o in live.open_orders()] == [OrderType.TRAILING_STOP]

    (simulated_sell,) = sells
    assert simulated_sell.price == pytest.approx(51_200.0 - 500.0 if "trailing_offset" in offset else 51_200.0 * 0.99)
    (_, live_sell) = store.fills(LINK)
    assert (live_sell.side, live_sell.candle_time) == ("sell", simulated_sell.timestamp)
    assert (live_sell.quantity, live_sell.price) == (pytest.approx(simulated_sell.quantity),
                                                     pytest.approx(simulated_sell.price))
    assert live_sell.fee == pytest.approx(simulated_sell.fee, abs=1e-4)  # Kraken rounds a fee to 4 places
    assert live.ledger.cash == pytest.approx(simulated.ledger.cash, abs=1e-3)
    assert live.open_orders() == [] and simulated.open_orders() == []



# --- settings: the channel off, or unreachable ----------------------------------------------------


def test_order_updates_come_over_rest_when_the_channel_is_off_or_not_overridden_with_the_rest_host(
        fake, stream):  # noqa: F811
    assert live_env(fake, mode="live", allow_live_orders=True).order_updates_url is None  # fake REST, real ws: never
    channel = live_env(fake, mode="live", allow_live_orders=True, private_ws_url=stream.url)
    assert channel.order_updates_url == stream.url
    off = live_env(fake, mode="live", allow_live_orders=True, private_ws_url=stream.url, order_updates="rest")
    assert off.order_updates_url is None


def test_with_the_channel_unreachable_a_fill_is_found_over_rest(fake, client, store, stop, logs):  # noqa: F811
    unreachable = ExecutionFeed(client, "ws://127.0.0.1:9/v2", stop)  # nothing listens there
    acct = account(client, store, stop, unreachable)
    quiet(acct, 0, 50_000.0)
    ticket = acct.place(limit_buy(0.01, 49_000.0), at(0))
    quiet(acct, 1)
    wait_until(lambda: any(e["event"] == "order_updates_unavailable" for e in logs))
    candle(acct, fake, 2, 49_400.0, 49_450.0, 48_900.0, 49_100.0)
    assert store.order(ticket.client_order_id).state is OrderStatus.FILLED
    assert not unreachable.connected and len(store.fills(LINK)) == 1
