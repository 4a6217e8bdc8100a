"""Signals emitted by opportunity and threat workers."""

from enum import StrEnum

from backend.dtos.base import DTO
from backend.dtos.execution import OrderSide


class OpportunitySignalDTO(DTO):
    side: OrderSide
    reason: str
    stop_price: float | None = None  # where the idea is proven wrong, if the worker knows


class ThreatAction(StrEnum):
    BLOCK_ENTRIES = "block_entries"
    EXIT_POSITIONS = "exit_positions"


class ThreatSignalDTO(DTO):
    action: ThreatAction
    reason: str
