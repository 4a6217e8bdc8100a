"""One strategy run's account: cash, positions, fees and the equity curve's drawdown."""

from dataclasses import dataclass

from backend.dtos import FillDTO, OrderSide, PortfolioSnapshotDTO


@dataclass
class Position:
    qty: float = 0.0
    avg_entry_price: float = 0.0  # volume-weighted buy price, fees excluded


@dataclass(frozen=True)
class AccountSummary:
    trades: int
    fees_paid: float
    final_equity: float
    pnl: float
    pnl_pct: float
    max_drawdown_pct: float


class Ledger:
    """Spot account in one quote currency; used by one strategy run's thread only."""

    def __init__(self, starting_capital: float) -> None:
        self.starting_capital = starting_capital
        self.cash = starting_capital
        self.positions: dict[str, Position] = {}
        self.fills: list[FillDTO] = []
        self.fees_paid = 0.0
        self._last_prices: dict[str, float] = {}
        self._peak_equity = starting_capital
        self._max_drawdown_pct = 0.0

    def mark(self, asset: str, price: float) -> None:
        self._last_prices[asset] = price

    def position(self, asset: str) -> Position:
        return self.positions.get(asset, Position())

    def equity(self) -> float:
        held = sum(p.qty * self._last_prices.get(a, p.avg_entry_price) for a, p in self.positions.items())
        return self.cash + held

    def snapshot(self, asset: str) -> PortfolioSnapshotDTO:
        position = self.position(asset)
        return PortfolioSnapshotDTO(
            cash=self.cash,
            position_qty=position.qty,
            avg_entry_price=position.avg_entry_price if position.qty > 0 else None,
            equity=self.equity(),
            peak_equity=self._peak_equity,
        )

    def capped_quantity(self, asset: str, side: OrderSide, quantity: float, price: float, fee_rate: float) -> float:
        """quantity cut to what this spot account can do: buys to the cash (fee included),
        sells to the position held; never short, never below zero cash."""
        if side is OrderSide.BUY:
            return min(quantity, self.cash / (price * (1 + fee_rate)))
        return min(quantity, self.position(asset).qty)

    def apply_fill(self, fill: FillDTO) -> None:
        position = self.positions.setdefault(fill.asset, Position())
        notional = fill.quantity * fill.price
        if fill.side is OrderSide.BUY:
            total_qty = position.qty + fill.quantity
            position.avg_entry_price = (
                position.qty * position.avg_entry_price + notional
            ) / total_qty
            position.qty = total_qty
            self.cash -= notional + fill.fee
        else:
            position.qty -= fill.quantity
            if position.qty <= 1e-12:
                position.qty, position.avg_entry_price = 0.0, 0.0
            self.cash += notional - fill.fee
        self.fees_paid += fill.fee
        self.fills.append(fill)
        self._last_prices.setdefault(fill.asset, fill.price)

    def record_equity(self) -> None:
        """Close the tick on the equity curve: track the peak and the deepest drawdown."""
        equity = self.equity()
        self._peak_equity = max(self._peak_equity, equity)
        drawdown = (1 - equity / self._peak_equity) * 100 if self._peak_equity > 0 else 0.0
        self._max_drawdown_pct = max(self._max_drawdown_pct, drawdown)

    def summary(self) -> AccountSummary:
        equity = self.equity()
        pnl = equity - self.starting_capital
        return AccountSummary(
            trades=len(self.fills),
            fees_paid=self.fees_paid,
            final_equity=equity,
            pnl=pnl,
            pnl_pct=pnl / self.starting_capital * 100,
            max_drawdown_pct=self._max_drawdown_pct,
        )
