"""What the hot path's shortcuts must not change: trusted DTOs are the validated ones, the base
context is the account as of the tick's open however late a worker asks, and equity is recomputed
whenever a price or the account changed."""

from typing import ClassVar

import pytest

from backend.dtos import BaseContextDTO, EmaDTO, OrderDTO, OrderSide, PortfolioSnapshotDTO, TradePlanDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams
from backend.market_data import RawTick
from backend.portfolio import Ledger
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from tests.helpers import START, Pipeline, simulated_account, tick


def test_a_trusted_dto_equals_the_validated_one_and_fills_in_the_defaults():
    trusted = TradePlanDTO.trusted(side=OrderSide.BUY, quantity=1.5, reason="r")
    validated = TradePlanDTO(side=OrderSide.BUY, quantity=1.5, reason="r")
    assert trusted == validated and trusted.stop_price is None and trusted.target_price is None
    assert trusted.model_dump() == validated.model_dump()
    assert hash(EmaDTO.trusted(fast_period=1, slow_period=2, fast=None, slow=3.0)) == hash(
        EmaDTO(fast_period=1, slow_period=2, fast=None, slow=3.0))
    with pytest.raises(ValueError, match="frozen"):
        trusted.reason = "changed"  # type: ignore[misc]
    assert trusted.model_copy(update={"reason": "other"}).reason == "other" and trusted.reason == "r"
    tick = RawTick.trusted(symbol="BTC/USD", timestamp=START, open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0)
    assert tick == RawTick(symbol="BTC/USD", timestamp=START, open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0)
    assert (tick.warmup, tick.missing_before, tick.missing_within) == (False, 0, 0)
    # Every field named (the hot path's common call, which skips the defaults): the values given.
    every_field = TradePlanDTO(side=OrderSide.SELL, quantity=2.0, reason="r", stop_price=90.0)
    named = TradePlanDTO.trusted(**dict(every_field))
    assert named == every_field and named.stop_price == 90.0
    assert named.model_fields_set == set(TradePlanDTO.model_fields)


def test_validation_still_guards_dtos_built_the_ordinary_way():
    with pytest.raises(ValueError, match="greater than 0"):
        TradePlanDTO(side=OrderSide.BUY, quantity=0, reason="r")


class CandleParams(WorkerParams):
    def history_needed(self) -> int:
        return 1


class BuyThenLook(IWorker):
    """Buys first thing in the tick, then reads the base context: it must be the tick's open."""

    plugin_name = "buy_then_look"
    category = WorkerCategory.EXECUTION
    Params = CandleParams
    seen: ClassVar[list[BaseContextDTO]] = []

    def process(self, asset: str) -> None:
        candle = self._candle(asset)
        self.services.broker.submit(
            OrderDTO(asset=asset, side=OrderSide.BUY, quantity=1.0, reference_price=candle.close, reason="t"),
            candle.open_time,
        )
        first = self._base(asset)
        assert self._base(asset) is first  # built once per tick
        type(self).seen.append(first)


def test_the_base_context_is_the_account_at_the_tick_open_even_when_first_read_after_a_fill():
    BuyThenLook.seen = []
    pipeline = Pipeline([(MarketOrderExecutor, {}), (BuyThenLook, {})], [], starting_capital=1_000)
    pipeline.feed([tick(0, 100.0), tick(1, 110.0)])
    first, second = BuyThenLook.seen
    assert first.portfolio == PortfolioSnapshotDTO(cash=1_000, position_qty=0, avg_entry_price=None,
                                                   equity=1_000, peak_equity=1_000)
    assert (first.close, first.timestamp, first.asset) == (100.0, START, "BTC/USD")
    # The second tick opens holding the first buy, marked at its close.
    assert second.portfolio.position_qty == 1.0 and second.portfolio.cash == 900
    assert second.portfolio.equity == 900 + 110 and second.portfolio.avg_entry_price == 100
    assert pipeline.ledger.position("BTC/USD").qty == 2.0


def test_equity_follows_every_price_mark_and_every_fill():
    ledger = Ledger(1_000)
    account = simulated_account(ledger, fee_rate=0.01)
    assert ledger.equity() == 1_000
    ledger.mark("BTC/USD", 100.0)
    account.submit(OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=2, reference_price=100, reason="t"), START)
    assert ledger.equity() == pytest.approx(1_000 - 2)  # the fee
    ledger.mark("BTC/USD", 150.0)
    assert ledger.equity() == pytest.approx(1_000 - 2 + 100)
    ledger.record_closes("BTC/USD", [150.0])
    assert ledger.state.peak_equity == pytest.approx(1_098)
    ledger.record_closes("BTC/USD", [50.0])
    assert ledger.state.max_drawdown_pct == pytest.approx((1 - 898 / 1_098) * 100)
