from abc import ABC, abstractmethod
from datetime import datetime

from backend.dtos import FillDTO, OrderDTO


class IBroker(ABC):
    """Where a strategy's orders go: a simulator (backtest, paper) or a live exchange."""

    @abstractmethod
    def submit(self, order: OrderDTO, timestamp: datetime) -> FillDTO | None:
        """Execute the order; None when it was rejected (the reason is logged)."""
