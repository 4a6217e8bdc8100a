from backend.portfolio.ledger import AccountSummary, Ledger
from backend.portfolio.simulated_broker import SimulatedBroker

__all__ = ["AccountSummary", "Ledger", "SimulatedBroker"]
