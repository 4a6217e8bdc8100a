from backend.portfolio.ledger import AccountState, AccountSummary, Ledger, PositionState
from backend.portfolio.simulated_broker import SimulatedBroker

__all__ = ["AccountState", "AccountSummary", "Ledger", "PositionState", "SimulatedBroker"]
