"""The spot ledger's arithmetic on partial sells: the remainder keeps its entry price and is
valued at the market; only float residue below DUST_QUANTITY closes the position."""

from datetime import UTC, datetime

import numpy as np
import pytest

from backend.dtos import AccountState, FillDTO, OrderSide, PositionState
from backend.portfolio.ledger import DUST_QUANTITY, SHORT_STRETCH, Ledger

T = datetime(2024, 1, 1, tzinfo=UTC)


def fill(side: OrderSide, quantity: float, price: float, fee: float = 0.0) -> FillDTO:
    return FillDTO(asset="BTC/USD", side=side, quantity=quantity, price=price, fee=fee, timestamp=T)


def test_a_partial_sell_keeps_the_remainder_at_its_entry_price_and_books_the_cash():
    ledger = Ledger(10_000)
    ledger.apply_fill(fill(OrderSide.BUY, 0.2, 20_000, fee=4.0))  # 4,000 + 4 fee
    ledger.apply_fill(fill(OrderSide.SELL, 0.05, 30_000, fee=1.5))  # 1,500 - 1.5 fee
    position = ledger.position("BTC/USD")
    assert position.qty == pytest.approx(0.15)
    assert position.avg_entry_price == pytest.approx(20_000)  # a sell never moves the entry price
    assert ledger.cash == pytest.approx(10_000 - 4_004 + 1_498.5)
    ledger.mark("BTC/USD", 30_000)
    assert ledger.equity() == pytest.approx(ledger.cash + 0.15 * 30_000)
    assert (ledger.state.trades, ledger.fees_paid) == (2, pytest.approx(5.5))


def test_only_float_residue_below_the_dust_threshold_closes_a_position():
    ledger = Ledger(10_000)
    ledger.apply_fill(fill(OrderSide.BUY, 0.3, 10_000))
    ledger.apply_fill(fill(OrderSide.SELL, 0.1, 10_000))
    ledger.apply_fill(fill(OrderSide.SELL, 0.2 - 10 * DUST_QUANTITY, 10_000))  # leaves 1e-11: a real remainder
    assert ledger.position("BTC/USD").qty == pytest.approx(10 * DUST_QUANTITY, rel=1e-3)
    assert "BTC/USD" in ledger.positions

    ledger = Ledger(10_000)
    ledger.apply_fill(fill(OrderSide.BUY, 0.3, 10_000))
    ledger.apply_fill(fill(OrderSide.SELL, 0.1, 10_000))
    ledger.apply_fill(fill(OrderSide.SELL, 0.2, 10_000))  # 0.3 - 0.1 - 0.2 is float residue, not zero
    assert "BTC/USD" not in ledger.positions
    assert ledger.position("BTC/USD").qty == 0


def test_a_positive_float_residue_after_selling_everything_closes_the_position():
    """0.1 + 0.2 bought is a hair more than the 0.3 sold: that residue (above zero, below
    DUST_QUANTITY) is no position left open."""
    ledger = Ledger(10_000)
    ledger.apply_fill(fill(OrderSide.BUY, 0.1, 10_000))
    ledger.apply_fill(fill(OrderSide.BUY, 0.2, 10_000))
    assert 0 < ledger.position("BTC/USD").qty - 0.3 < DUST_QUANTITY
    ledger.apply_fill(fill(OrderSide.SELL, 0.3, 10_000))
    assert "BTC/USD" not in ledger.positions
    assert ledger.open_positions() == []


@pytest.mark.parametrize("holding", [False, True])
@pytest.mark.parametrize("count", [1, 2, SHORT_STRETCH, SHORT_STRETCH + 1, 500])
def test_quiet_closes_in_bulk_are_a_mark_and_an_equity_record_each(holding, count):
    """Both ways `record_closes` computes many closes (a Python loop for short stretches, numpy
    for long ones) give the floats of one close at a time."""
    closes = np.random.default_rng(count).uniform(10_000, 40_000, count)
    one_by_one, in_bulk = Ledger(10_000), Ledger(10_000)
    for ledger in (one_by_one, in_bulk):
        ledger.record_closes("BTC/USD", [25_000])
        if holding:
            ledger.apply_fill(fill(OrderSide.BUY, 0.3, 25_000, fee=7.5))
    for close in closes.tolist():
        one_by_one.record_closes("BTC/USD", [close])
    in_bulk.record_closes("BTC/USD", closes)
    assert in_bulk.state == one_by_one.state and in_bulk.equity() == one_by_one.equity()
    if count > 2:  # the curve moved: a position's value had a drawdown to find
        assert (in_bulk.state.max_drawdown_pct > 0) == holding


def test_an_asset_filled_twice_before_its_first_mark_is_valued_at_its_entry_price():
    """Two orders settled at start, before any candle (OpenPosition: "valued at the last close
    marked (its entry price before any)"): at cost, 25,000, never at one fill's price (20,000 would
    show a loss of 1,000 that never happened)."""
    ledger = Ledger(10_000)
    ledger.apply_fill(FillDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=0.1, price=20_000, fee=0, timestamp=T))
    ledger.apply_fill(FillDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=0.1, price=30_000, fee=0, timestamp=T))
    assert ledger.equity() == pytest.approx(10_000) and ledger.last_price("BTC/USD") is None
    (held,) = ledger.open_positions()
    assert (held.price, held.unrealised_pnl) == (pytest.approx(25_000), pytest.approx(0))
    ledger.mark("BTC/USD", 40_000)  # at the market once a close is marked
    assert ledger.equity() == pytest.approx(5_000 + 0.2 * 40_000)


def test_a_peak_equity_of_zero_records_no_drawdown_and_no_division_by_zero():
    """Every path that closes candles on the curve: a tick, a short and a long stretch of quiet
    closes (a loop, numpy), frames of several symbols; an account worth nothing all along."""
    for record in (lambda ledger: ledger.record_closes("BTC/USD", [0.0]),
                   lambda ledger: ledger.record_closes("BTC/USD", [0.0] * 3),
                   lambda ledger: ledger.record_closes("BTC/USD", np.zeros(SHORT_STRETCH + 2)),
                   lambda ledger: ledger.record_frames([("BTC/USD", np.arange(3), np.zeros(3)),
                                                        ("ETH/USD", np.arange(3), np.zeros(3))])):
        for held in (0.0, 1.0):  # flat, or holding an asset whose closes are all 0
            positions = {"BTC/USD": PositionState(held, 1.0)} if held else {}
            ledger = Ledger(0.0, AccountState(0.0, 0.0, positions=positions))
            record(ledger)
            assert (ledger.state.peak_equity, ledger.state.max_drawdown_pct) == (0.0, 0.0)
            assert ledger.snapshot().drawdown_pct == 0.0


def test_a_position_of_zero_quantity_is_not_shown_to_workers_as_held():
    """Not a position: workers see a flat account (no entry price to plan an exit from), even
    before the venue's minimum order is known (a restored account's first candle)."""
    ledger = Ledger(10_000, AccountState(10_000, 9_000, peak_equity=10_000,
                                         positions={"BTC/USD": PositionState(0.0, 50_000.0)}))
    ledger.mark("BTC/USD", 50_000.0)
    assert ledger.snapshot_values("BTC/USD") == (9_000, 0.0, None, 9_000, 10_000)


def test_a_snapshot_never_shows_a_drawdown_deeper_than_its_maximum():
    """An order between two candles (a force-exit's fee) takes equity below the curve's last close:
    the snapshot's maximum drawdown counts it already."""
    ledger = Ledger(10_000)
    ledger.record_closes("BTC/USD", [20_000.0])
    ledger.apply_fill(FillDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=0.1, price=20_000, fee=50, timestamp=T))
    snapshot = ledger.snapshot()
    assert snapshot.drawdown_pct == pytest.approx(0.5) and snapshot.max_drawdown_pct == snapshot.drawdown_pct
    assert ledger.state.max_drawdown_pct == 0  # the curve itself is untouched until the tick closes
