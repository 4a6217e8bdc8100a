"""Per operation, what each execution environment is made of: its tick source and, per strategy
link, the gateway its orders go to.

Invariants: a data file is checked once per (resolved path, timeframe) however many backtest
environments replay it; one venue instance per exchange, so everything trading with one API key
shares one client; real orders only for `mode: live` environments (which the config schema only
accepts with `allow_live_orders: true`); backtests and paper trading get simulated fills
(`SimulatedGateway`, with a backtest's detail candles, one object per detail file); what
is built here never carries a config file path (a venue's wrong setting is a SettingError, which
the caller, knowing the file, reports as a ConfigError).
"""

import threading
from pathlib import Path
from typing import Any

from backend.config.schema import BacktestEnvironment, EnvironmentConfig, LiveEnvironment
from backend.interfaces.order_gateway import IOrderGateway
from backend.market_data import TickSource
from backend.market_data.backtest_source import BacktestSource
from backend.market_data.candle_file import CandleFile, read_candle_file
from backend.market_data.detail_candles import DetailCandles
from backend.market_data.timeframes import timeframe_seconds
from backend.portfolio import SimulatedGateway
from backend.venues import VENUES
from backend.venues.base import Venue


class ExecutionEnvironments:
    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._candle_files: dict[tuple[Path, str], CandleFile] = {}
        self._venues: dict[str, Venue[Any]] = {}
        self._detail_candles: dict[Path, DetailCandles] = {}

    def tick_source(self, environment: EnvironmentConfig) -> TickSource:
        if isinstance(environment, BacktestEnvironment):
            return BacktestSource(environment, {symbol: self.candle_file(environment.data_file_of(symbol),
                                                                         environment.timeframe)
                                                for symbol in environment.symbols})
        return self._venue(environment).tick_source(environment)

    def order_gateway(self, environment: EnvironmentConfig, link_id: str,
                      timeframe: str | None = None) -> IOrderGateway:
        """timeframe: of the candles the link's account is polled on (its blueprint's; by default
        the environment's), which a backtest's detail candles are looked up inside."""
        if isinstance(environment, LiveEnvironment) and environment.mode == "live":
            return self._venue(environment).order_gateway(environment, link_id)
        detail = self.detail_candles(environment)
        seconds = timeframe_seconds(timeframe or environment.timeframe)
        return SimulatedGateway(environment.fill_rules, None if detail is None else detail.intrabar(seconds))

    def detail_candles(self, environment: EnvironmentConfig) -> DetailCandles | None:
        """A backtest's finer candles (its `detail_data_file`), one object per file however many
        environments name it; read when an order first needs them."""
        if not isinstance(environment, BacktestEnvironment) or environment.detail_data_file is None:
            return None
        path = environment.detail_data_file.resolve()
        if path not in self._detail_candles:
            self._detail_candles[path] = DetailCandles(path)
        return self._detail_candles[path]

    def candle_file(self, data_file: Path, timeframe: str) -> CandleFile:
        """The file, checked on first use (the timeframe decides the checks and the gaps)."""
        key = (data_file.resolve(), timeframe)
        if key not in self._candle_files:
            self._candle_files[key] = read_candle_file(*key)
        return self._candle_files[key]

    def _venue(self, environment: LiveEnvironment) -> Venue[Any]:
        if environment.exchange not in self._venues:
            self._venues[environment.exchange] = VENUES[environment.exchange].make(self._stop)
        return self._venues[environment.exchange]
