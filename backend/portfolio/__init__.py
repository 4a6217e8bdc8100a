from backend.portfolio.account import StrategyAccount
from backend.portfolio.ledger import AccountSnapshot, AccountSummary, Ledger
from backend.portfolio.simulated_gateway import SimulatedGateway

__all__ = ["AccountSnapshot", "AccountSummary", "Ledger", "SimulatedGateway", "StrategyAccount"]
