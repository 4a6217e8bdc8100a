"""Signals emitted by opportunity and threat workers."""

from enum import StrEnum

from backend.dtos.base import DTO
from backend.dtos.execution import OrderSide


class OpportunitySignalDTO(DTO):
    side: OrderSide
    reason: str
    stop_price: float | None = None  # where the idea is proven wrong, if the worker knows
    entry_price: float | None = None  # where to buy with a limit order, if the worker knows (None: the close)


class ThreatAction(StrEnum):
    """What a threat asks. A threat only restrains: no worker acts because of one alone, except a
    planner selling a position held on EXIT_POSITIONS (the columnar replay relies on it)."""

    BLOCK_ENTRIES = "block_entries"  # no new entries while raised
    EXIT_POSITIONS = "exit_positions"  # sell what is held (and no new entries)


class ThreatSignalDTO(DTO):
    action: ThreatAction
    reason: str
