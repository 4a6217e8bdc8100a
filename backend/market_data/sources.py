from backend.config.schema import BacktestEnvironment, EnvironmentConfig
from backend.errors import ConfigError
from backend.market_data.backtest_source import BacktestSource
from backend.market_data.tick_source import TickSource


def build_tick_source(environment: EnvironmentConfig, environment_file: str) -> TickSource:
    if isinstance(environment, BacktestEnvironment):
        return BacktestSource(environment)
    raise ConfigError(environment_file, "live market data is not available yet", "type")
