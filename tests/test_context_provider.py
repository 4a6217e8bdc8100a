import pytest

from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import BaseContextDTO, EmaDTO, MarketRegimeDTO, PortfolioSnapshotDTO, Regime
from backend.errors import MissingDTOError
from tests.helpers import START


def base(asset: str = "BTC/USD", close: float = 100.0) -> BaseContextDTO:
    portfolio = PortfolioSnapshotDTO(cash=1, position_qty=0, avg_entry_price=None, equity=1, peak_equity=1)
    return BaseContextDTO(
        asset=asset, timestamp=START, open=close, high=close, low=close, close=close, volume=1, portfolio=portfolio
    )


EMA = EmaDTO(fast_period=2, slow_period=3, fast=1.0, slow=2.0)


def test_dtos_are_kept_per_asset_and_type_for_the_current_tick():
    provider = TradingContextProvider()
    provider.start_new_tick(base("BTC/USD"))
    provider.start_new_tick(base("ETH/USD", close=5))
    provider.set_result_dto("BTC/USD", EMA)
    assert provider.has_dto("BTC/USD", EmaDTO)
    assert not provider.has_dto("ETH/USD", EmaDTO)
    assert provider.get_required_dtos("BTC/USD", [EmaDTO], "test") == {EmaDTO: EMA}
    assert provider.get_base_context("ETH/USD").close == 5


def test_a_new_tick_drops_the_previous_ticks_dtos():
    provider = TradingContextProvider()
    provider.start_new_tick(base())
    provider.set_result_dto("BTC/USD", EMA)
    provider.start_new_tick(base(close=101))
    assert not provider.has_dto("BTC/USD", EmaDTO)
    assert provider.get_base_context("BTC/USD").close == 101


def test_clear_ends_the_tick():
    provider = TradingContextProvider()
    provider.start_new_tick(base())
    provider.set_result_dto("BTC/USD", EMA)
    provider.clear()
    assert not provider.has_dto("BTC/USD", EmaDTO)
    with pytest.raises(RuntimeError, match="no tick is open for BTC/USD"):
        provider.get_base_context("BTC/USD")
    with pytest.raises(RuntimeError, match="no tick is open"):
        provider.set_result_dto("BTC/USD", EMA)


def test_missing_dto_error_names_the_worker_and_the_dto():
    provider = TradingContextProvider()
    provider.start_new_tick(base())
    provider.set_result_dto("BTC/USD", EMA)
    with pytest.raises(MissingDTOError) as error:
        provider.get_required_dtos("BTC/USD", [EmaDTO, MarketRegimeDTO], "fvg_reentry_opportunity")
    message = str(error.value)
    assert "fvg_reentry_opportunity" in message and "MarketRegimeDTO" in message and "BTC/USD" in message


def test_two_providers_share_nothing():
    first, second = TradingContextProvider(), TradingContextProvider()
    first.start_new_tick(base())
    second.start_new_tick(base())
    first.set_result_dto("BTC/USD", MarketRegimeDTO(regime=Regime.RANGING, trend_strength_pct=0, volatility_pct=1))
    assert first.has_dto("BTC/USD", MarketRegimeDTO)
    assert not second.has_dto("BTC/USD", MarketRegimeDTO)
