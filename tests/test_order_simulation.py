"""The order simulator's fill rules, candle by candle, and the account's order state machine on it
(backtests and paper trading): resting limits, stops and take-profits, expiry, post-only, cancel
and amend, reservations, protective stops, and open orders across a restart."""

import os
import random
import uuid
from datetime import timedelta

import numpy as np
import pytest

from backend.dtos import OrderDTO, OrderSide, OrderStatus, OrderType, TimeInForce
from backend.errors import OperatorOrderError
from backend.interfaces.journal import Protection
from backend.market_data.raw_tick import columns_of
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from backend.state import StateStore, StoreJournal
from tests.helpers import START, tick

MAKER, TAKER = 0.0016, 0.0026
RULES = FillRules(MAKER, TAKER, slippage_bps=10.0)


def account(rules: FillRules = RULES, detail=None, cash: float = 10_000.0) -> StrategyAccount:
    return StrategyAccount(Ledger(cash), SimulatedGateway(rules, detail))


def at(index: int):
    return START + timedelta(hours=index)


def buy_limit(price: float, quantity: float = 0.1, **fields) -> OrderDTO:
    return OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=quantity, reference_price=fields.pop("ref", 100.0),
                    reason="test", order_type=OrderType.LIMIT, limit_price=price, **fields)


def replay(acct: StrategyAccount, *candles) -> None:
    """Each candle opened and closed by the account, as a tick whose workers did nothing."""
    for candle in candles:
        acct.open_tick(candle, trading=True)
        acct.close_tick(candle.symbol, candle.close, candle.timestamp, trading=True)


def test_a_resting_buy_limit_fills_three_candles_later_at_its_price_with_the_maker_fee():
    acct = account()
    acct.open_tick(tick(0, 100.0), trading=True)
    ticket = acct.place(buy_limit(95.0), at(0))
    assert ticket.status is OrderStatus.OPEN and ticket.fill is None
    replay(acct, tick(1, 99.0, low=96.0), tick(2, 98.0, low=95.0))  # touches 95: not through
    assert [o.status for o in acct.open_orders()] == [OrderStatus.OPEN]
    replay(acct, tick(3, 97.0, open=98.0, low=94.0))
    assert acct.open_orders() == []
    position = acct.ledger.position("BTC/USD")
    assert position.qty == pytest.approx(0.1) and position.avg_entry_price == 95.0
    assert acct.ledger.cash == pytest.approx(10_000 - 9.5 - 9.5 * MAKER)


@pytest.mark.parametrize("rule, next_candle, entry", [
    ("touch", tick(1, 98.0, low=95.0), 95.0),  # the touch rule fills a limit the candle only touches
    ("through", tick(1, 92.0, open=93.0), 93.0),  # a candle opening below a buy limit fills it at its open
], ids=["touch", "gap"])
def test_a_buy_limit_fills_by_the_rule_on_the_next_candle(rule, next_candle, entry):
    acct = account(FillRules(MAKER, TAKER, limit_fill=rule))
    acct.open_tick(tick(0, 100.0), trading=True)
    acct.place(buy_limit(95.0), at(0))
    replay(acct, next_candle)
    assert acct.ledger.position("BTC/USD").avg_entry_price == entry


def test_an_order_never_fills_on_the_candle_it_was_placed_on():
    acct = account()
    candle = tick(0, 100.0, low=90.0)
    acct.open_tick(candle, trading=True)
    acct.place(buy_limit(95.0), at(0))
    acct.close_tick("BTC/USD", 100.0, at(0), trading=True)
    assert [o.status for o in acct.open_orders()] == [OrderStatus.OPEN]


def test_a_stop_gapped_through_fills_at_the_open_with_taker_fee_and_slippage():
    acct = account()
    acct.open_tick(tick(0, 100.0), trading=True)
    acct.submit(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=1.0, reference_price=100.0, reason="in"), at(0))
    cash = acct.ledger.cash
    acct.place(OrderDTO(asset="BTC/USD", side=OrderSide.SELL, quantity=1.0, reference_price=100.0, reason="stop",
                        order_type=OrderType.STOP_LOSS, trigger_price=95.0), at(0))
    replay(acct, tick(1, 96.0, low=95.5))  # above the trigger: nothing
    assert acct.ledger.position("BTC/USD").qty == 1.0
    replay(acct, tick(2, 90.0, open=91.0))
    price = 91.0 * (1 - 0.001)
    assert acct.ledger.position("BTC/USD").qty == 0
    assert acct.ledger.cash == pytest.approx(cash + price - price * TAKER)


def test_a_stop_reached_inside_the_candle_fills_at_its_trigger():
    acct = account(FillRules(MAKER, TAKER))
    acct.open_tick(tick(0, 100.0), trading=True)
    acct.submit(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=1.0, reference_price=100.0, reason="in"), at(0))
    acct.place(OrderDTO(asset="BTC/USD", side=OrderSide.SELL, quantity=1.0, reference_price=100.0, reason="stop",
                        order_type=OrderType.STOP_LOSS, trigger_price=95.0), at(0))
    fills = []
    acct.on_fill = fills.append
    replay(acct, tick(1, 97.0, open=99.0, low=94.0))
    assert [(f.side, f.price) for f in fills] == [(OrderSide.SELL, 95.0)]


def protected_entry(acct: StrategyAccount, stop: float, target: float) -> None:
    acct.open_tick(tick(0, 100.0), trading=True)
    acct.submit(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=1.0, reference_price=100.0, reason="in",
                         stop_loss_price=stop, take_profit_price=target), at(0))


def test_an_entry_with_a_protection_gets_a_stop_and_a_take_profit_on_the_venue_at_once():
    acct = account()
    protected_entry(acct, 95.0, 110.0)
    protective = {o.order_type: (o.trigger_price, o.quantity) for o in acct.open_orders() if o.protective}
    assert protective == {OrderType.STOP_LOSS: (95.0, 1.0), OrderType.TAKE_PROFIT: (110.0, 1.0)}
    assert acct.snapshot().protections == {"BTC/USD": Protection(95.0, 110.0)}


def test_stop_and_take_profit_in_one_candle_the_stop_is_assumed_first_and_the_other_cancelled():
    acct = account(FillRules(MAKER, TAKER))
    protected_entry(acct, 95.0, 110.0)
    fills = []
    acct.on_fill = fills.append
    replay(acct, tick(1, 100.0, high=111.0, low=94.0))
    assert [(f.side, f.price, f.quantity) for f in fills] == [(OrderSide.SELL, 95.0, 1.0)]
    assert acct.open_orders() == [] and acct.ledger.position("BTC/USD").qty == 0
    assert acct.snapshot().protections == {}  # the position is gone, so is its protection


def test_a_detail_series_tells_the_take_profit_was_reached_first():
    def detail(open_time):
        assert open_time == at(1)
        # 5 minute candles: up to 111 first, down to 94 afterwards.
        return (np.array([100.0, 108.0, 99.0]), np.array([108.0, 111.0, 100.0]),
                np.array([99.0, 107.0, 94.0]), np.array([108.0, 109.0, 95.0]))

    acct = account(FillRules(MAKER, TAKER), detail=detail)
    protected_entry(acct, 95.0, 110.0)
    fills = []
    acct.on_fill = fills.append
    replay(acct, tick(1, 100.0, high=111.0, low=94.0))
    assert [(f.side, f.price) for f in fills] == [(OrderSide.SELL, 110.0)]
    assert acct.open_orders() == []


def test_a_strategy_exit_cancels_the_protection_first_and_sells_once():
    acct = account()
    protected_entry(acct, 95.0, 110.0)
    replay(acct, tick(1, 101.0))
    fill = acct.submit(OrderDTO(asset="BTC/USD", side=OrderSide.SELL, quantity=1.0, reference_price=101.0,
                                reason="out"), at(1))
    assert fill is not None and fill.quantity == 1.0
    assert acct.open_orders() == [] and acct.ledger.position("BTC/USD").qty == 0
    replay(acct, tick(2, 90.0, low=80.0))  # the stop would have triggered: it is gone
    assert acct.ledger.state.trades == 2


def test_good_till_date_expires_and_ioc_and_post_only_never_rest():
    acct = account()
    acct.open_tick(tick(0, 100.0), trading=True)
    gtd = acct.place(buy_limit(90.0, time_in_force=TimeInForce.GTD, expires_at=at(2)), at(0))
    ioc = acct.place(buy_limit(90.0, time_in_force=TimeInForce.IOC), at(0))
    post_only = acct.place(buy_limit(101.0, post_only=True), at(0))
    assert (ioc.status, post_only.status) == (OrderStatus.EXPIRED, OrderStatus.REJECTED)
    replay(acct, tick(1, 99.0))
    assert [o.client_order_id for o in acct.open_orders()] == [gtd.client_order_id]
    replay(acct, tick(2, 80.0))  # it would fill, but it expired at this candle's open
    assert acct.open_orders() == [] and acct.ledger.state.trades == 0
    assert acct.order_outcomes["expired"] == 2 and acct.order_outcomes["rejected"] == 1


def test_cancel_and_amend_of_a_resting_order():
    acct = account()
    acct.open_tick(tick(0, 100.0), trading=True)
    first = acct.place(buy_limit(90.0), at(0))
    second = acct.place(buy_limit(80.0), at(0))
    assert first.client_order_id and second.client_order_id
    assert acct.amend(first.client_order_id, limit_price=96.0) is OrderStatus.OPEN
    assert acct.cancel(second.client_order_id) is OrderStatus.CANCELED
    replay(acct, tick(1, 97.0, low=95.0))
    assert acct.ledger.position("BTC/USD").avg_entry_price == pytest.approx(96.0) and acct.open_orders() == []


def test_an_open_buy_reserves_its_cash_and_an_open_sell_its_quantity():
    acct = account(FillRules(0.0, 0.0), cash=1_000.0)
    acct.open_tick(tick(0, 100.0), trading=True)
    acct.place(buy_limit(90.0, quantity=10.0), at(0))  # reserves 900
    assert acct.snapshot().reserved_cash == pytest.approx(900.0)
    fill = acct.submit(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=5.0, reference_price=100.0,
                                reason="market"), at(0))
    assert fill is not None and fill.quantity == pytest.approx(1.0)  # the 100 left
    acct.place(OrderDTO(asset="BTC/USD", side=OrderSide.SELL, quantity=0.6, reference_price=100.0, reason="tp",
                        order_type=OrderType.LIMIT, limit_price=120.0), at(0))
    sell = acct.submit(OrderDTO(asset="BTC/USD", side=OrderSide.SELL, quantity=1.0, reference_price=100.0,
                                reason="out"), at(0))
    assert sell is not None and sell.quantity == pytest.approx(0.4)


def test_columnar_replay_names_every_row_an_open_order_could_fill_on():
    acct = account()
    acct.open_tick(tick(0, 100.0), trading=True)
    acct.place(buy_limit(95.0), at(0))
    candles = columns_of([tick(i, 100.0, low=99.0) for i in range(1, 6)] + [tick(6, 96.0, low=94.0)])
    assert acct.next_order_row("BTC/USD", candles, 0) == 5
    assert acct.next_order_row("ETH/USD", candles, 0) == len(candles)


def test_a_paper_resting_order_survives_a_restart_and_fills_once(tmp_path):
    store = StateStore.open(tmp_path, "op")
    first = StrategyAccount(Ledger(10_000), SimulatedGateway(RULES), StoreJournal(store, "p@paper"))
    first.open_tick(tick(0, 100.0), trading=True)
    ticket = first.place(buy_limit(95.0), at(0))
    first.close_tick("BTC/USD", 100.0, at(0), trading=True)

    restarted = StrategyAccount(Ledger(10_000, store.load_account("p@paper")), SimulatedGateway(RULES),
                                StoreJournal(store, "p@paper"))
    assert [o.client_order_id for o in restarted.open_orders()] == [ticket.client_order_id]
    replay(restarted, tick(1, 94.0, open=96.0))
    replay(restarted, tick(2, 93.0))
    assert restarted.ledger.position("BTC/USD").qty == pytest.approx(0.1) and restarted.ledger.state.trades == 1
    states = [event.state for event in store.order_events("p@paper")]
    assert states == [OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.FILLED]
    (fill,) = store.fills("p@paper")
    assert (fill.price, fill.candle_time) == (95.0, at(1))
    store.close()


def test_a_paper_protection_is_replaced_after_a_restart_that_lost_its_stop(tmp_path):
    """The journal keeps the protection asked for: a held position found without its stop gets one
    on the next candle, and only one."""
    store = StateStore.open(tmp_path, "op")
    first = StrategyAccount(Ledger(10_000), SimulatedGateway(RULES), StoreJournal(store, "p@paper"))
    protected_entry(first, 95.0, 110.0)
    first.close_tick("BTC/USD", 100.0, at(0), trading=True)
    for order in first.open_orders():  # lost on the venue's side (cancelled by hand, say)
        first.cancel(order.client_order_id)
    first.protect("BTC/USD", 95.0, 110.0)  # asked again: placed again at once
    assert len([o for o in first.open_orders() if o.protective]) == 2
    for order in first.open_orders():
        store.update_order(order.client_order_id, OrderStatus.CANCELED)  # gone while the daemon was down

    restarted = StrategyAccount(Ledger(10_000, store.load_account("p@paper")), SimulatedGateway(RULES),
                                StoreJournal(store, "p@paper"))
    assert restarted.open_orders() == []
    replay(restarted, tick(1, 101.0), tick(2, 102.0))
    kinds = sorted(o.order_type for o in restarted.open_orders() if o.protective)
    assert kinds == [OrderType.STOP_LOSS, OrderType.TAKE_PROFIT]
    store.close()


def test_protect_moves_the_stop_in_place_and_none_cancels_it():
    """A trailing strategy calls protect with a higher stop each candle: the same order is amended
    (never a second stop); protect(asset, None) drops the protection and cancels its orders."""
    acct = account()
    protected_entry(acct, 95.0, 110.0)
    (stop,) = [o for o in acct.open_orders() if o.order_type is OrderType.STOP_LOSS]
    replay(acct, tick(1, 104.0))
    acct.protect("BTC/USD", 99.0, 110.0)
    moved = [o for o in acct.open_orders() if o.order_type is OrderType.STOP_LOSS]
    assert [(o.client_order_id, o.trigger_price) for o in moved] == [(stop.client_order_id, 99.0)]
    replay(acct, tick(2, 100.0, low=98.5))  # through the moved stop
    assert acct.ledger.position("BTC/USD").qty == 0 and acct.open_orders() == []

    protected_entry(acct, 95.0, 110.0)
    acct.protect("BTC/USD", None)
    assert acct.open_orders() == [] and acct.snapshot().protections == {}
    assert acct.ledger.position("BTC/USD").qty == pytest.approx(1.0)


# --- trailing stops ------------------------------------------------------------------------------


def trailing_stop(side: OrderSide = OrderSide.SELL, quantity: float = 1.0, **offset: float) -> OrderDTO:
    return OrderDTO(asset="BTC/USD", side=side, quantity=quantity, reference_price=100.0, reason="trail",
                    order_type=OrderType.TRAILING_STOP, **offset)


NO_SLIPPAGE = FillRules(MAKER, TAKER)


def held_with_trailing_stop(rules: FillRules = NO_SLIPPAGE, **offset: float) -> tuple[StrategyAccount, list]:
    """A position of 1 bought at 100 on candle 0, and a trailing stop sell for it placed there."""
    acct = account(rules)
    acct.open_tick(tick(0, 100.0), trading=True)
    acct.submit(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=1.0, reference_price=100.0, reason="in"), at(0))
    ticket = acct.place(trailing_stop(**offset), at(0))
    assert ticket.status is OrderStatus.OPEN and ticket.fill is None
    fills: list = []
    acct.on_fill = fills.append
    return acct, fills


def test_a_trailing_stop_sell_follows_the_highs_and_fills_at_the_trigger_under_the_peak():
    acct, fills = held_with_trailing_stop(trailing_offset=5.0)  # peak 100: trigger 95
    replay(acct, tick(1, 103.0, open=100.0, high=104.0, low=96.0))  # above 95: the peak becomes 104 (trigger 99)
    replay(acct, tick(2, 101.0, open=103.0, high=103.5, low=99.5))  # above 99: the peak stays 104
    assert fills == [] and [o.order_type for o in acct.open_orders()] == [OrderType.TRAILING_STOP]
    replay(acct, tick(3, 100.0, open=101.0, high=101.0, low=98.0))  # reaches 99 (it was 95 when placed)
    assert [(f.side, f.quantity, f.price, f.fee) for f in fills] == [
        (OrderSide.SELL, 1.0, 99.0, pytest.approx(99.0 * TAKER))]
    assert acct.open_orders() == [] and acct.ledger.position("BTC/USD").qty == 0


def test_a_trailing_stop_gapped_through_fills_at_the_open_with_taker_fee_and_slippage():
    acct, fills = held_with_trailing_stop(RULES, trailing_offset_pct=2.0)  # peak 100: trigger 98
    replay(acct, tick(1, 109.0, open=100.0, high=110.0, low=99.0))  # peak 110: trigger 107.8
    replay(acct, tick(2, 104.0, open=105.0, high=106.0, low=103.0))  # opens under 107.8
    price = 105.0 * (1 - 0.001)
    assert [(f.price, f.fee) for f in fills] == [(pytest.approx(price), pytest.approx(price * TAKER))]


def test_a_candle_whose_high_would_raise_the_peak_fills_at_the_old_trigger():
    """Inside one candle the order of its high and low is unknown: the low reaching the trigger the
    peak had before the candle fills it there, whatever the candle's high."""
    acct, fills = held_with_trailing_stop(trailing_offset=5.0)
    replay(acct, tick(1, 102.0, open=100.0, high=104.0, low=100.0))  # peak 104: trigger 99
    replay(acct, tick(2, 108.0, open=103.0, high=120.0, low=99.0))  # would make it 115, but reaches 99 first
    assert [f.price for f in fills] == [99.0]


def test_a_trailing_stop_buy_follows_the_lows_and_fills_above_the_trough():
    acct = account(FillRules(MAKER, TAKER))
    acct.open_tick(tick(0, 100.0), trading=True)
    acct.place(trailing_stop(OrderSide.BUY, 0.5, trailing_offset=4.0), at(0))  # trough 100: trigger 104
    fills: list = []
    acct.on_fill = fills.append
    replay(acct, tick(1, 92.0, open=100.0, high=103.0, low=90.0))  # under 104: trough 90 (trigger 94)
    replay(acct, tick(2, 93.0, open=92.0, high=93.5, low=91.0))  # under 94: trough stays 90
    assert fills == []
    replay(acct, tick(3, 95.0, open=93.0, high=96.0, low=92.0))
    assert [(f.side, f.quantity, f.price) for f in fills] == [(OrderSide.BUY, 0.5, 94.0)]


def test_a_trailing_stop_needs_one_offset_and_no_other_type_takes_one():
    with pytest.raises(ValueError, match="needs one of trailing_offset and trailing_offset_pct"):
        trailing_stop()
    with pytest.raises(ValueError, match="needs one of trailing_offset and trailing_offset_pct"):
        trailing_stop(trailing_offset=5.0, trailing_offset_pct=2.0)
    with pytest.raises(ValueError, match="a limit order takes no trailing_offset"):
        buy_limit(95.0, trailing_offset=5.0)
    with pytest.raises(ValueError, match="takes no trigger_price"):
        trailing_stop(trailing_offset=5.0, trigger_price=95.0)
    with pytest.raises(ValueError, match="gtc or gtd, not ioc"):
        trailing_stop(trailing_offset=5.0, time_in_force=TimeInForce.IOC)


def test_columnar_replay_names_the_first_row_a_trailing_stop_could_fill_on():
    """The peak before each row is the running maximum of the highs before it: candle 3's low (99)
    is above the trigger the stop had when placed (95) but reaches the one the highs made (104 - 5);
    the rows passed over quietly raise the peak as polling them would."""
    acct, fills = held_with_trailing_stop(trailing_offset=5.0)
    rows = [tick(1, 102.0, high=104.0, low=100.0), tick(2, 103.0, high=103.5, low=99.6),
            tick(3, 101.0, high=102.0, low=99.0), tick(4, 90.0, low=80.0)]
    candles = columns_of(rows)
    assert acct.next_order_row("BTC/USD", candles, 0) == 2
    acct.close_quiet_candles([(candles, range(0, 2))])  # the replay passes rows 1 and 2 over
    replay(acct, rows[2])
    assert [f.price for f in fills] == [99.0]  # as tick by tick: the quiet rows raised the peak


def test_a_trailing_stop_amends_its_quantity_but_not_a_trigger():
    acct, fills = held_with_trailing_stop(trailing_offset=5.0)
    (order,) = acct.open_orders()
    with pytest.raises(OperatorOrderError, match="trailing stop: its trigger follows the market"):
        acct.amend(order.client_order_id, trigger_price=97.0)
    assert acct.amend(order.client_order_id, quantity=0.5) is OrderStatus.OPEN
    replay(acct, tick(1, 94.0, open=96.0, low=93.0))
    assert [(f.quantity, f.price) for f in fills] == [(0.5, 95.0)]


def test_order_ids_are_version_4_uuids_that_a_plugins_random_seed_cannot_repeat():
    gateway = SimulatedGateway(RULES)
    state = random.getstate()
    try:
        random.seed(7)  # as a plugin seeding its own draws might
        first = [gateway.new_client_order_id() for _ in range(3)]
        random.seed(7)
        again = [gateway.new_client_order_id() for _ in range(3)]
    finally:
        random.setstate(state)
    assert not set(first) & set(again)
    for client_order_id in first + again:
        parsed = uuid.UUID(client_order_id)
        assert str(parsed) == client_order_id and parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.timeout(30)
def test_a_forked_process_draws_other_order_ids_than_its_parent():
    """A sweep's shards are forked: each must not repeat the ids its parent or a sibling draws next."""
    gateway = SimulatedGateway(RULES)
    reading, writing = os.pipe()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # the child: its next id to the parent, then gone without running the parent's cleanup
            try:
                os.write(writing, gateway.new_client_order_id().encode() + b"\n")
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    os.close(writing)
    with os.fdopen(reading) as pipe:
        drawn = pipe.read().split()
    drawn.append(gateway.new_client_order_id())
    assert len(drawn) == 3 and len(set(drawn)) == 3
