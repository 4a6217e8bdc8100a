"""Per operation, what each execution environment is made of: its tick source and, per strategy
link, the gateway its orders go to.

Invariants: a data file is checked once per (resolved path, timeframe) however many backtest
environments replay it; one venue instance per exchange, so everything trading with one API key
shares one client; real orders only for `mode: live` environments (which the config schema only
accepts with `allow_live_orders: true`); backtests and paper trading get simulated fills
(`SimulatedGateway`, with a backtest's detail candles, one object per detail file), by the
market rules of the backtest's markets file (read once per file, `market_rules_loaded`) or of the
paper run's venue, a backtest without a markets file saying so once per data file
(`market_rules_defaulted`); what is built here never carries a config file path (a venue's wrong
setting is a SettingError, which the caller, knowing the file, reports as a ConfigError).
"""

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from backend.config.schema import BacktestEnvironment, EnvironmentConfig, LiveEnvironment
from backend.interfaces.order_gateway import IOrderGateway
from backend.market_data import TickSource
from backend.market_data.backtest_source import BacktestSource
from backend.market_data.candle_file import CandleFile, read_candle_file
from backend.market_data.detail_candles import DetailCandles
from backend.market_data.market_rules import MarketRules, load_market_rules
from backend.market_data.timeframes import timeframe_seconds
from backend.portfolio import SimulatedGateway
from backend.venues import VENUES
from backend.venues.base import Venue

log = structlog.get_logger(__name__)


class ExecutionEnvironments:
    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._candle_files: dict[tuple[Path, str], CandleFile] = {}
        self._venues: dict[str, Venue[Any]] = {}
        self._detail_candles: dict[Path, DetailCandles] = {}
        self._market_rules: dict[Path, dict[str, MarketRules]] = {}  # per markets file
        self._defaulted: set[Path] = set()  # data files whose backtests run without market rules

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
        return SimulatedGateway(environment.fill_rules, None if detail is None else detail.intrabar(seconds),
                                self.market_rules(environment))

    def market_rules(self, environment: EnvironmentConfig) -> Callable[[str], MarketRules] | None:
        """The rules simulated orders are rounded and checked by: a paper run's venue's, a backtest's
        markets file's (checked by the loader: it lists every symbol); None: a backtest without one."""
        if isinstance(environment, LiveEnvironment):
            return self._venue(environment).market_rules(environment)
        path = environment.markets_file
        if path is None:
            data_file = environment.data_file_of(environment.symbols[0])
            if data_file not in self._defaulted:
                self._defaulted.add(data_file)
                log.warning("market_rules_defaulted", data_file=str(data_file), symbols=environment.symbols,
                            rules="none: orders are neither rounded to a lot or tick nor refused for their size",
                            fix="set markets_file, or put the exchange's markets.json beside the data file")
            return None
        if path not in self._market_rules:
            cached = load_market_rules(path)
            log.info("market_rules_loaded", markets_file=str(path), exchange=cached.exchange,
                     fetched_at=cached.fetched_at.isoformat(), symbols=sorted(cached.markets))
            self._market_rules[path] = cached.markets
        return self._market_rules[path].__getitem__

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
