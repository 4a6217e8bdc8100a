"""The candles of one execution environment, as its feed reads them.

Invariant: a source hands its candles on as blocks of columns (CandleColumns), in time order per
symbol: a backtest's range a few thousand rows at a time, a live candle as a block of one row as
soon as it has closed and passed the candle checks; a backtest of several symbols hands them on
as CandleWindows (every symbol's candles of one span of time).
"""

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime

from backend.interfaces.candle_window import Candles


class TickSource(ABC):
    """The RAW_TICK stream of one execution environment, as blocks of candles."""

    total_ticks: int | None = None  # known up front for backtests (drives progress); None = live
    candles_rejected: int = 0  # candles that failed the checks in candle_checks and were skipped

    def prepare(self) -> None:  # noqa: B027 (most sources have nothing to check)
        """Checks that need the outside world, run once before any thread starts.

        Raises SettingError for what the user must fix in a setting or a credential (the caller
        names the file: a ConfigError, exit 2), and ExchangeUnavailableError (exit 1) when the
        outside world does not answer.
        """

    def resume_after(self, cursors: dict[str, datetime]) -> None:  # noqa: B027 (backtests start over)
        """After a restart: per symbol, the last candle already processed. A live source replays
        the candles closed since then as warm-up (context workers only) and trades from the next."""

    @abstractmethod
    def blocks(self, stop: threading.Event) -> Iterator[Candles]:
        """Yield blocks of candles in time order until the data ends or `stop` is set."""
