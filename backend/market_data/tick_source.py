import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime

from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.raw_tick import RawTick


class TickSource(ABC):
    """The RAW_TICK stream of one execution environment."""

    total_ticks: int | None = None  # known up front for backtests (drives progress); None = live
    candles_rejected: int = 0  # candles that failed the checks in candle_checks and were skipped
    has_candle_blocks: bool = False  # also yields its ticks as blocks of columns (`candle_blocks`)

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
    def ticks(self, stop: threading.Event) -> Iterator[RawTick]:
        """Yield ticks in time order until the data ends or `stop` is set."""

    def candle_blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        """The ticks `ticks` yields, as consecutive blocks of columns (only if `has_candle_blocks`)."""
        raise NotImplementedError(f"{type(self).__name__} yields ticks one by one")
