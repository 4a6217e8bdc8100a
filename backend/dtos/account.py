"""A strategy account's whole state, as the ledger keeps it and the state store persists it.

Plain dataclasses, not tick-cache DTOs: they are mutated in place by the ledger only.
"""

from dataclasses import dataclass, field

DUST_QUANTITY = 1e-12  # a position this small after a sell is float residue: flat


@dataclass
class PositionState:
    qty: float = 0.0
    avg_entry_price: float = 0.0  # volume-weighted buy price, fees excluded


@dataclass
class AccountState:
    """Everything a strategy's spot account is, in one quote currency."""

    starting_capital: float
    cash: float
    fees_paid: float = 0.0
    peak_equity: float = 0.0
    max_drawdown_pct: float = 0.0
    trades: int = 0
    positions: dict[str, PositionState] = field(default_factory=dict)

    @classmethod
    def new(cls, starting_capital: float) -> "AccountState":
        return cls(starting_capital, cash=starting_capital, peak_equity=starting_capital)
