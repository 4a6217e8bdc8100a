from pathlib import Path

import pytest

from backend.config import StrategyBlueprint
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.errors import ConfigError
from backend.interfaces import WorkerServices
from backend.portfolio import Ledger
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from backend.workers.planning.position_sizer import PositionSizer
from services.worker_factory import WorkerFactory
from tests.helpers import blueprint, simulated_account

FILE = Path("config/strategies/x.yaml")


def build(workforce: dict):
    services = WorkerServices(TradingContextProvider(), simulated_account(Ledger(100)), OhlcvProvider(0))
    return WorkerFactory().build(StrategyBlueprint.model_validate(blueprint(workforce)), FILE, services), services


def build_error(workforce: dict) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        build(workforce)
    assert error.value.file == str(FILE)
    return error.value


def test_workforce_is_built_in_category_order_with_the_injected_provider():
    workers, services = build({
        "planning": [{"plugin": "position_sizer", "params": {"risk_per_trade_pct": 2}}],
        "context": [{"plugin": "ema_detector"}, {"plugin": "market_regime_classifier"}],
    })
    assert [type(w) for w in workers] == [EmaDetector, MarketRegimeClassifier, PositionSizer, MarketOrderExecutor]
    assert all(w.services is services and w.context is services.context for w in workers)
    assert workers[2].params.risk_per_trade_pct == 2


def test_unknown_plugin_lists_the_known_ones():
    error = build_error({"context": [{"plugin": "crystal_ball"}]})
    assert error.key == "workforce.context[0].plugin"
    assert "'crystal_ball'" in error.reason and "ema_detector" in error.reason


def test_plugin_under_the_wrong_category():
    error = build_error({"threat": [{"plugin": "ema_detector"}]})
    assert error.key == "workforce.threat[0].plugin" and "is a context worker" in error.reason


def test_bad_params_name_the_param():
    error = build_error({"context": [{"plugin": "ema_detector", "params": {"fast_period": "x"}}]})
    assert error.key == "workforce.context[0].params.fast_period"
    error = build_error({"context": [{"plugin": "ema_detector", "params": {"fast": 3}}]})
    assert error.key == "workforce.context[0].params.fast" and "Extra inputs" in error.reason
    error = build_error({"context": [{"plugin": "ema_detector", "params": {"fast_period": 30, "slow_period": 10}}]})
    assert error.key == "workforce.context[0].params" and "smaller than slow_period" in error.reason


def test_a_requirement_no_earlier_worker_produces():
    error = build_error({"context": [{"plugin": "market_regime_classifier"}, {"plugin": "ema_detector"}]})
    assert error.key == "workforce.context[0]"
    assert "'market_regime_classifier' requires EmaDTO" in error.reason


def test_two_producers_of_one_dto():
    error = build_error({"context": [{"plugin": "ema_detector"}, {"plugin": "ema_detector"}]})
    assert error.key == "workforce.context[1]"
    assert "EmaDTO is already produced by 'ema_detector' (workforce.context[0])" in error.reason
