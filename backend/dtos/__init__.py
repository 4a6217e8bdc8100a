"""Data transfer objects exchanged through a strategy's tick cache (all pydantic models)."""

from backend.dtos.account import AccountState, PositionState
from backend.dtos.base import DTO
from backend.dtos.context import (
    BaseContextDTO,
    EmaDTO,
    FairValueGapDTO,
    GapZone,
    MarketRegimeDTO,
    MarketStructure,
    PortfolioSnapshotDTO,
    Regime,
    RiskLevel,
    VolatilityDTO,
)
from backend.dtos.execution import (
    FillDTO,
    OrderDTO,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    TradePlanDTO,
)
from backend.dtos.signals import OpportunitySignalDTO, ThreatAction, ThreatSignalDTO

__all__ = [
    "DTO",
    "AccountState",
    "BaseContextDTO",
    "EmaDTO",
    "FairValueGapDTO",
    "FillDTO",
    "GapZone",
    "MarketRegimeDTO",
    "MarketStructure",
    "OpportunitySignalDTO",
    "OrderDTO",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "PortfolioSnapshotDTO",
    "PositionState",
    "Regime",
    "RiskLevel",
    "ThreatAction",
    "ThreatSignalDTO",
    "TimeInForce",
    "TradePlanDTO",
    "VolatilityDTO",
]
