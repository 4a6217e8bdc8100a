"""The fake Kraken's resting orders, driven by the real ccxt clients (ccxt.kraken over REST,
ccxt.pro.kraken's watch_orders over the websocket), so the daemon's order layer can be tested
against what ccxt really sends and parses."""

import asyncio
from collections.abc import Iterator

import aiohttp
import ccxt
import ccxt.pro
import pytest

from tests.fake_kraken import TEST_API_KEY, TEST_API_SECRET, FakeKraken, running_fake_kraken
from tests.fake_kraken_ws import FakeKrakenStream, running_fake_kraken_ws
from tests.live_support import credentials, fast_client, live_env  # noqa: F401  (fixture)

T0 = 1_700_000_040  # a candle open time


@pytest.fixture
def fake() -> Iterator[FakeKraken]:
    with running_fake_kraken() as server:
        yield server


@pytest.fixture
def client(fake: FakeKraken, credentials: None) -> ccxt.kraken:  # noqa: F811
    return fast_client(live_env(fake), with_credentials=True)


def hold(fake: FakeKraken, client: ccxt.kraken, asset: str) -> float:
    return float(client.privatePostBalanceEx()["result"][asset]["hold_trade"])


# --- limits ---------------------------------------------------------------------------------


def test_a_limit_buy_rests_then_a_later_candle_fills_it_at_the_limit_with_the_maker_fee(
        fake: FakeKraken, client: ccxt.kraken) -> None:
    order = client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0, {"clientOrderId": "lim-1"})
    (sent,) = fake.received("private/AddOrder")
    assert {k: sent.params[k] for k in ("ordertype", "price", "volume", "cl_ord_id")} == {
        "ordertype": "limit", "price": "49000", "volume": "0.01", "cl_ord_id": "lim-1"}
    assert client.fetch_order(order["id"])["status"] == "open"
    (listed,) = client.fetch_open_orders()
    assert (listed["id"], listed["price"], listed["clientOrderId"]) == (order["id"], 49_000.0, "lim-1")
    assert hold(fake, client, "ZUSD") == pytest.approx(0.01 * 49_000 * 1.0016)  # price * volume + maker fee

    fake.trade_candle("XXBTZUSD", T0, 49_500.0, 49_600.0, 49_000.0, 49_400.0)  # touches, not through
    assert client.fetch_order(order["id"])["status"] == "open"
    fake.trade_candle("XXBTZUSD", T0 + 60, 49_400.0, 49_450.0, 48_900.0, 49_100.0)

    filled = client.fetch_order(order["id"])
    assert (filled["status"], filled["filled"], filled["average"]) == ("closed", 0.01, 49_000.0)
    assert float(filled["info"]["fee"]) == pytest.approx(490 * 0.0016)
    assert fake.balances["ZUSD"] == pytest.approx(10_000 - 490 - 0.784)
    assert fake.balances["XXBT"] == pytest.approx(0.01)
    assert hold(fake, client, "ZUSD") == 0.0


@pytest.mark.parametrize(("rule", "side", "bar", "expected"), [
    ("through", "buy", (48_800.0, 49_100.0, 48_700.0), 48_800.0),  # opens below the limit: at the open
    ("touch", "buy", (49_500.0, 49_600.0, 49_000.0), 49_000.0),  # touching is enough
    ("through", "sell", (51_200.0, 51_300.0, 51_100.0), 51_200.0),  # opens above a sell limit: at the open
    ("through", "sell", (50_900.0, 51_100.0, 50_800.0), 51_000.0),  # trades through it: at the limit
    ("through", "sell", (50_900.0, 51_000.0, 50_800.0), None),  # only touches it
])
def test_limit_fill_rules(rule: str, side: str, bar: tuple[float, float, float], expected: float | None,
                          credentials: None) -> None:  # noqa: F811
    with running_fake_kraken(limit_fill=rule, balances={"ZUSD": 10_000.0, "XXBT": 1.0}) as fake:
        client = fast_client(live_env(fake), with_credentials=True)
        order = client.create_order("BTC/USD", "limit", side, 0.01, 49_000.0 if side == "buy" else 51_000.0)
        open_, high, low = bar
        fake.trade_candle("XXBTZUSD", T0, open_, high, low, open_)
        seen = client.fetch_order(order["id"])
        assert seen["average"] == expected if expected else seen["status"] == "open"


def test_a_post_only_limit_that_would_take_liquidity_is_refused(fake: FakeKraken, client: ccxt.kraken) -> None:
    with pytest.raises(ccxt.ExchangeError, match="EOrder:Post only order"):
        client.create_order("BTC/USD", "limit", "buy", 0.01, 50_100.0, {"postOnly": True})
    assert fake.received("private/AddOrder")[0].params["oflags"] == "post"
    assert fake.orders == {}
    resting = client.create_order("BTC/USD", "limit", "buy", 0.01, 49_900.0, {"postOnly": True})
    assert client.fetch_order(resting["id"])["postOnly"] is True


def test_price_precision_minimums_and_bad_time_in_force_are_refused(fake: FakeKraken, client: ccxt.kraken) -> None:
    with pytest.raises(ccxt.ExchangeError, match="price can only be specified up to 1 decimals"):
        client.privatePostAddOrder({"pair": "XXBTZUSD", "type": "buy", "ordertype": "limit",
                                    "volume": "0.01", "price": "49000.05"})
    with pytest.raises(ccxt.InvalidOrder, match="Order minimum not met"):
        client.create_order("BTC/USD", "limit", "buy", 0.00001, 49_000.0)
    with pytest.raises(ccxt.ExchangeError, match="expiretm"):
        client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0, {"timeInForce": "GTD"})
    assert fake.orders == {}


def test_an_ioc_limit_that_does_not_cross_expires_and_one_that_crosses_fills(
        fake: FakeKraken, client: ccxt.kraken) -> None:
    missed = client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0, {"timeInForce": "IOC"})
    assert fake.received("private/AddOrder")[0].params["timeinforce"] == "IOC"
    assert client.fetch_order(missed["id"])["status"] == "expired"
    taken = client.create_order("BTC/USD", "limit", "buy", 0.01, 50_100.0, {"timeInForce": "IOC"})
    seen = client.fetch_order(taken["id"])
    assert (seen["status"], seen["average"]) == ("closed", 50_000.0)  # at the market, taker fee
    assert float(seen["info"]["fee"]) == pytest.approx(500 * 0.0026)


def test_a_gtd_order_expires_when_a_candle_opens_at_its_expiry(fake: FakeKraken, client: ccxt.kraken) -> None:
    order = client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0,
                                {"timeInForce": "GTD", "expiretm": str(T0 + 120)})
    fake.trade_candle("XXBTZUSD", T0 + 60, 49_500.0, 49_600.0, 49_100.0, 49_500.0)
    assert client.fetch_order(order["id"])["status"] == "open"
    fake.trade_candle("XXBTZUSD", T0 + 120, 48_000.0, 48_100.0, 47_000.0, 48_000.0)  # would fill, but expired
    seen = client.fetch_order(order["id"])
    assert (seen["status"], seen["filled"], seen["info"]["reason"]) == ("expired", 0.0, "Order expired")
    assert fake.balances["ZUSD"] == 10_000.0


# --- trigger orders -------------------------------------------------------------------------


def test_a_stop_loss_holds_nothing_and_a_gap_through_it_fills_at_the_open_with_the_taker_fee(
        fake: FakeKraken, client: ccxt.kraken) -> None:
    client.create_order("BTC/USD", "market", "buy", 0.01)
    stop = client.create_order("BTC/USD", "market", "sell", 0.01, None, {"stopLossPrice": 48_000.0})
    sent = fake.received("private/AddOrder")[-1].params
    assert (sent["ordertype"], sent["price"]) == ("stop-loss", "48000")
    assert (stop["stopLossPrice"], client.fetch_order(stop["id"])["status"]) == (48_000.0, "open")
    assert hold(fake, client, "XXBT") == 0.0  # trigger orders hold nothing until they fire
    usd = fake.balances["ZUSD"]

    fake.trade_candle("XXBTZUSD", T0, 47_000.0, 47_500.0, 46_500.0, 47_200.0)
    seen = client.fetch_order(stop["id"])
    assert (seen["status"], seen["average"]) == ("closed", 47_000.0)
    assert fake.balances["ZUSD"] == pytest.approx(usd + 470 - 470 * 0.0026)


def test_a_take_profit_fills_at_its_trigger_and_a_stop_loss_limit_becomes_a_limit(
        fake: FakeKraken, client: ccxt.kraken) -> None:
    fake.balances["XXBT"] = 0.02
    take = client.create_order("BTC/USD", "market", "sell", 0.01, None, {"takeProfitPrice": 52_000.0})
    stop = client.create_order("BTC/USD", "limit", "sell", 0.01, 47_900.0, {"stopLossPrice": 48_000.0})
    sent = fake.received("private/AddOrder")[-1].params
    assert (sent["ordertype"], sent["price"], sent["price2"]) == ("stop-loss-limit", "48000", "47900")
    fake.trade_candle("XXBTZUSD", T0, 51_000.0, 52_500.0, 50_900.0, 52_100.0)
    assert client.fetch_order(take["id"])["average"] == 52_000.0

    fake.trade_candle("XXBTZUSD", T0 + 60, 48_500.0, 48_600.0, 47_950.0, 48_000.0)  # fires: now a limit 47,900
    fired = client.fetch_order(stop["id"])
    assert (fired["status"], fired["info"]["limitprice"]) == ("open", "47900.00000")
    assert hold(fake, client, "XXBT") == pytest.approx(0.01)  # the limit it became holds the base
    fake.trade_candle("XXBTZUSD", T0 + 120, 47_800.0, 48_000.0, 47_700.0, 47_900.0)
    assert client.fetch_order(stop["id"])["average"] == 47_900.0


def test_a_trailing_stop_buy_tracks_the_trough_and_its_price_must_be_a_relative_offset(
        fake: FakeKraken, client: ccxt.kraken) -> None:
    """AddOrder, price: "Trailing Stops: Must use a relative price for this field, namely the `+`
    prefix ... The `%` suffix also works"; trigger: index or last."""
    for price, trigger in (("49500", "last"), ("-500", "last"), ("+500", "mark"), ("+5.55", "last")):
        with pytest.raises(ccxt.BaseError, match="Invalid"):
            client.privatePostAddOrder({"pair": "XBTUSD", "type": "buy", "ordertype": "trailing-stop",
                                        "volume": "0.01", "price": price, "trigger": trigger})
    trail = client.create_order("BTC/USD", "market", "buy", 0.01, None, {"trailingAmount": "500"})
    sent = fake.received("private/AddOrder")[-1].params
    assert (sent["ordertype"], sent["price"], sent["trigger"]) == ("trailing-stop", "+500", "last")
    assert hold(fake, client, "ZUSD") == 0.0  # a trigger order holds nothing until it fires
    fake.trade_candle("XXBTZUSD", T0, 50_000.0, 50_400.0, 48_000.0, 48_200.0)  # under 50,500: trough 48,000
    assert client.fetch_order(trail["id"])["status"] == "open"
    fake.trade_candle("XXBTZUSD", T0 + 60, 48_200.0, 48_600.0, 47_800.0, 48_500.0)  # reaches 48,500
    seen = client.fetch_order(trail["id"])
    assert (seen["status"], seen["average"]) == ("closed", 48_500.0)


def test_a_stop_that_fires_without_the_funds_is_cancelled_for_insufficient_funds(
        fake: FakeKraken, client: ccxt.kraken) -> None:
    stop = client.create_order("BTC/USD", "market", "sell", 0.01, None, {"stopLossPrice": 48_000.0})  # no BTC held
    fake.trade_candle("XXBTZUSD", T0, 47_000.0, 47_500.0, 46_500.0, 47_200.0)
    seen = client.fetch_order(stop["id"])
    assert (seen["status"], seen["filled"], seen["info"]["reason"]) == ("canceled", 0.0, "Insufficient funds")


def test_a_limit_beyond_the_funds_not_held_is_refused(fake: FakeKraken, client: ccxt.kraken) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USD", "limit", "buy", 1.0, 49_000.0)
    client.create_order("BTC/USD", "limit", "buy", 0.12, 49_000.0)  # holds 5,889.41 of 10,000
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USD", "limit", "buy", 0.1, 49_000.0)
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USD", "market", "buy", 0.1)


# --- cancel and amend -----------------------------------------------------------------------


def test_cancel_an_open_order_by_id_or_client_id_and_a_filled_one_is_an_unknown_order(
        fake: FakeKraken, client: ccxt.kraken) -> None:
    first = client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0)
    client.create_order("BTC/USD", "limit", "buy", 0.01, 48_000.0, {"clientOrderId": "second"})
    client.cancel_order(first["id"])
    client.cancel_order("", None, {"clientOrderId": "second"})
    assert fake.received("private/CancelOrder")[-1].params.get("cl_ord_id") == "second"
    seen = client.fetch_order(first["id"])
    assert (seen["status"], seen["info"]["reason"]) == ("canceled", "User requested")
    assert client.fetch_open_orders() == []
    assert hold(fake, client, "ZUSD") == 0.0

    filled = client.create_order("BTC/USD", "market", "buy", 0.01)
    with pytest.raises(ccxt.OrderNotFound):
        client.cancel_order(filled["id"])
    with pytest.raises(ccxt.OrderNotFound):
        client.cancel_order(first["id"])  # already cancelled


def test_amend_changes_quantity_and_price_in_place_and_keeps_the_filled_part(
        fake: FakeKraken, client: ccxt.kraken) -> None:
    order = client.create_order("BTC/USD", "limit", "buy", 0.02, 49_000.0, {"clientOrderId": "amend-me"})
    fake.partial_fill_next(0.5)
    fake.trade_candle("XXBTZUSD", T0, 49_500.0, 49_600.0, 48_900.0, 49_100.0)
    assert client.fetch_order(order["id"])["filled"] == 0.01

    amended = client.edit_order(order["id"], "BTC/USD", "limit", "buy", 0.03, 48_500.0)
    assert fake.received("private/AmendOrder")[0].params | {"nonce": ""} == {
        "txid": order["id"], "order_qty": "0.03", "limit_price": "48500", "nonce": ""}
    assert amended["id"].startswith("TA")  # ccxt takes the amend_id as the id of what edit_order returns
    seen = client.fetch_order(order["id"])
    assert (seen["amount"], seen["filled"], seen["price"], seen["clientOrderId"]) == (0.03, 0.01, 48_500.0, "amend-me")
    assert hold(fake, client, "ZUSD") == pytest.approx(0.02 * 48_500 * 1.0016)

    fake.trade_candle("XXBTZUSD", T0 + 60, 48_600.0, 48_700.0, 48_400.0, 48_500.0)
    done = client.fetch_order(order["id"])
    assert (done["status"], done["filled"]) == ("closed", 0.03)
    assert done["average"] == pytest.approx((0.01 * 49_000 + 0.02 * 48_500) / 0.03)


def test_amend_a_trigger_price_and_the_documented_refusals(fake: FakeKraken, client: ccxt.kraken) -> None:
    fake.balances["XXBT"] = 0.01
    stop = client.create_order("BTC/USD", "market", "sell", 0.01, None, {"stopLossPrice": 48_000.0})
    client.edit_order(stop["id"], "BTC/USD", "market", "sell", None, None, {"stopLossPrice": 47_000.0})
    assert fake.received("private/AmendOrder")[0].params["trigger_price"] == "47000"
    fake.trade_candle("XXBTZUSD", T0, 47_500.0, 47_600.0, 47_100.0, 47_200.0)  # under the old trigger only
    assert client.fetch_order(stop["id"])["status"] == "open"
    with pytest.raises(ccxt.ExchangeError, match="limit_price"):  # a stop-loss has no limit price
        client.edit_order(stop["id"], "BTC/USD", "market", "sell", None, 46_000.0)
    client.cancel_order(stop["id"])
    with pytest.raises(ccxt.InvalidOrder, match="Unknown order"):
        client.edit_order(stop["id"], "BTC/USD", "market", "sell", 0.01)


def test_the_order_rate_counter_refuses_past_its_threshold_per_pair(credentials: None) -> None:  # noqa: F811
    with running_fake_kraken(order_rate_counter=(10.0, 0.0)) as fake:
        client = fast_client(live_env(fake), with_credentials=True)
        order = client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0)  # +1
        client.cancel_order(order["id"])  # +8: cancelled within 5 s of being placed
        client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0)  # +1 = 10
        with pytest.raises(ccxt.DDoSProtection, match="EOrder:Rate limit exceeded"):
            client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0)
        client.create_order("ETH/USD", "limit", "buy", 0.1, 2_900.0)  # another pair, another counter
        assert fake.rate_limited == 1


def test_lost_replies_and_failures_apply_to_the_new_endpoints(fake: FakeKraken, client: ccxt.kraken) -> None:
    order = client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0)
    fake.lose_next_reply("private/CancelOrder")
    with pytest.raises(ccxt.NetworkError):
        client.cancel_order(order["id"])
    assert client.fetch_order(order["id"])["status"] == "canceled"  # it happened, the reply was lost
    fake.fail_next(1, endpoint="private/AmendOrder")
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.edit_order(order["id"], "BTC/USD", "limit", "buy", 0.02)


# --- websocket v2 executions ----------------------------------------------------------------


def pro_client(fake: FakeKraken, stream: FakeKrakenStream) -> ccxt.pro.kraken:
    """ccxt.pro's Kraken pointed at the fakes: REST (the token, orders) at fake.url, the private
    websocket (urls["api"]["ws"]["privateV2"], what watch_orders connects to) at stream.url."""
    exchange = ccxt.pro.kraken({"apiKey": TEST_API_KEY, "secret": TEST_API_SECRET, "enableRateLimit": False})
    exchange.urls["api"] = {**exchange.urls["api"], "public": fake.url, "private": fake.url}
    exchange.urls["api"]["ws"] = {**exchange.urls["api"]["ws"], "privateV2": stream.url}
    return exchange


class OrderWatch:
    """Calls watch_orders without pause, as a daemon would (an update that arrives while nobody
    waits on watch_orders is not handed out later), and keeps every order view it returns; after
    a dropped connection the next call reconnects and subscribes again."""

    def __init__(self, exchange: ccxt.pro.kraken) -> None:
        self.exchange = exchange
        self.seen: list[dict] = []
        self.errors: list[Exception] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                self.seen.extend(dict(order) for order in await self.exchange.watch_orders())
            except ccxt.NetworkError as error:
                self.errors.append(error)
                await asyncio.sleep(0.05)

    async def until(self, order_id: str, status: str) -> dict:
        """The first view of the order with this ccxt status (waits up to 5 s)."""
        async with asyncio.timeout(5):
            while True:
                for order in self.seen:
                    if order["id"] == order_id and order["status"] == status:
                        return order
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.task.cancel()
        await self.exchange.close()


def exec_types(stream: FakeKrakenStream, order_id: str) -> list[str]:
    return [m["data"][0]["exec_type"] for m in stream.executions_sent if m["data"][0]["order_id"] == order_id]


async def test_watch_orders_receives_new_trade_filled_and_canceled(fake: FakeKraken) -> None:
    with running_fake_kraken_ws(rest=fake) as stream:
        exchange = pro_client(fake, stream)
        resting = await exchange.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0, {"clientOrderId": "ws-1"})
        watch = OrderWatch(exchange)
        try:
            seen = await watch.until(resting["id"], "open")  # the snapshot lists it
            assert (seen["info"]["cl_ord_id"], seen["info"]["exec_type"]) == ("ws-1", "new")
            assert seen["clientOrderId"] == "0"  # ccxt maps clientOrderId from order_userref: read info
            assert stream.subscriptions[-1]["params"]["token"] in fake.tokens

            await asyncio.to_thread(fake.trade_candle, "XXBTZUSD", T0, 49_500.0, 49_600.0, 48_900.0, 49_100.0)
            filled = await watch.until(resting["id"], "closed")
            assert filled["info"]["cl_ord_id"] == "ws-1"
            assert (filled["info"]["cum_qty"], filled["info"]["avg_price"]) == (0.01, 49_000.0)

            other = await exchange.create_order("BTC/USD", "limit", "buy", 0.01, 48_000.0, {"clientOrderId": "ws-2"})
            await watch.until(other["id"], "open")
            await exchange.cancel_order(other["id"])
            canceled = await watch.until(other["id"], "canceled")
            assert (canceled["info"]["cl_ord_id"], canceled["info"]["reason"]) == ("ws-2", "User requested")

            assert exec_types(stream, resting["id"]) == ["pending_new", "new", "trade", "filled"]
            assert exec_types(stream, other["id"]) == ["pending_new", "new", "canceled"]
            (trade,) = [m["data"][0] for m in stream.executions_sent if m["data"][0]["exec_type"] == "trade"]
            assert {k: trade[k] for k in ("order_status", "last_qty", "last_price", "liquidity_ind", "cum_cost")} == {
                "order_status": "partially_filled", "last_qty": 0.01, "last_price": 49_000.0,
                "liquidity_ind": "m", "cum_cost": 490.0}
            assert trade["fees"] == [{"asset": "USD", "qty": 0.784}] and trade["exec_id"]
        finally:
            await watch.close()


async def test_duplicated_reordered_dropped_and_late_executions(fake: FakeKraken) -> None:
    with running_fake_kraken_ws(rest=fake) as stream:
        exchange = pro_client(fake, stream)
        watch = OrderWatch(exchange)
        try:
            await asyncio.to_thread(stream.wait_for_subscriptions, 1)
            stream.duplicate_executions = True
            first = await exchange.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0)
            await watch.until(first["id"], "open")  # ccxt reads pending_new as open already
            await asyncio.to_thread(stream.wait_for_executions, 4)
            assert exec_types(stream, first["id"]) == ["pending_new", "pending_new", "new", "new"]

            stream.duplicate_executions, stream.reorder_executions = False, True
            second = await exchange.create_order("BTC/USD", "limit", "buy", 0.01, 48_000.0)
            await asyncio.to_thread(stream.wait_for_executions, 6)
            assert exec_types(stream, second["id"]) == ["new", "pending_new"]  # swapped

            stream.reorder_executions = False
            await asyncio.to_thread(stream.drop_executions, 1)
            await asyncio.to_thread(stream.deliver_late, 1)
            await exchange.cancel_order(first["id"])  # its "canceled" is lost
            await exchange.cancel_order(second["id"])  # its "canceled" comes after a reconnect
            await asyncio.sleep(0.2)
            assert len(stream.executions_sent) == 6
            assert (await exchange.fetch_order(first["id"]))["status"] == "canceled"  # the REST fallback

            await asyncio.to_thread(stream.drop_connections)
            late = await watch.until(second["id"], "canceled")  # after ccxt subscribed again
            assert late["info"]["exec_type"] == "canceled" and watch.errors
            assert exec_types(stream, second["id"]) == ["new", "pending_new", "canceled"]
            assert exec_types(stream, first["id"]) == ["pending_new", "pending_new", "new", "new"]  # never told
        finally:
            await watch.close()


async def test_a_token_the_rest_fake_did_not_issue_is_refused(fake: FakeKraken) -> None:
    with running_fake_kraken_ws(rest=fake) as stream:
        async with aiohttp.ClientSession() as session, session.ws_connect(stream.url) as socket:
            await socket.send_json({"method": "subscribe", "params": {"channel": "executions", "token": "forged"},
                                    "req_id": 7})
            answer = await socket.receive_json(timeout=3)
    assert (answer["success"], answer["req_id"]) == (False, 7) and "Invalid token" in answer["error"]


def test_a_stopped_stream_leaves_the_rest_fake_working(fake: FakeKraken, client: ccxt.kraken) -> None:
    with running_fake_kraken_ws(rest=fake):
        pass
    client.create_order("BTC/USD", "limit", "buy", 0.01, 49_000.0)  # no listener of a dead loop left behind
    assert fake.execution_listeners == []
