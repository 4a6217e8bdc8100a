import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator

from backend.market_data.raw_tick import RawTick


class TickSource(ABC):
    """The RAW_TICK stream of one execution environment."""

    total_ticks: int | None = None  # known up front for backtests; drives progress logs

    @abstractmethod
    def ticks(self, stop: threading.Event) -> Iterator[RawTick]:
        """Yield ticks in time order until the data ends or `stop` is set."""
