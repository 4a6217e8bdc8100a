from backend.portfolio.account import StrategyAccount
from backend.portfolio.ledger import AccountSummary, Ledger
from backend.portfolio.simulated_gateway import SimulatedGateway

__all__ = ["AccountSummary", "Ledger", "SimulatedGateway", "StrategyAccount"]
