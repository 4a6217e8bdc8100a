from backend.config.schema import BacktestEnvironment, EnvironmentConfig
from backend.market_data.backtest_source import BacktestSource
from backend.market_data.kraken_live_source import KrakenLiveSource
from backend.market_data.tick_source import TickSource


def build_tick_source(environment: EnvironmentConfig, environment_file: str) -> TickSource:
    if isinstance(environment, BacktestEnvironment):
        return BacktestSource(environment)
    return KrakenLiveSource(environment, environment_file)
