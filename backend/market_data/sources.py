"""Builds each execution environment's TickSource.

Invariant: within one TickSourceFactory, a data file is parsed once per (resolved path,
timeframe), however many backtest environments replay it; each BacktestSource then serves its
own [start, end) slice of the shared, read-only CandleFile.
"""

from pathlib import Path

from backend.config.schema import BacktestEnvironment, EnvironmentConfig
from backend.market_data.backtest_source import BacktestSource
from backend.market_data.candle_file import CandleFile, read_candle_file
from backend.market_data.kraken_live_source import KrakenLiveSource
from backend.market_data.tick_source import TickSource


class TickSourceFactory:
    """`factory(environment, environment_file)` -> that environment's TickSource.

    One factory per operation: it keeps every parsed data file for its own lifetime (the
    sources hold them anyway). Called while the operation is built, from one thread.
    """

    def __init__(self) -> None:
        self._candle_files: dict[tuple[Path, str], CandleFile] = {}

    def __call__(self, environment: EnvironmentConfig, environment_file: str) -> TickSource:
        if isinstance(environment, BacktestEnvironment):
            return BacktestSource(environment, self.candle_file(environment.data_file, environment.timeframe))
        return KrakenLiveSource(environment, environment_file)

    def candle_file(self, data_file: Path, timeframe: str) -> CandleFile:
        """The parsed file, read on first use (the timeframe decides the checks and the gaps)."""
        key = (data_file.resolve(), timeframe)
        if key not in self._candle_files:
            self._candle_files[key] = read_candle_file(*key)
        return self._candle_files[key]

