"""One strategy run's account: cash, positions, fees and the equity curve's peak and drawdown.

Invariant: the whole account is one AccountState (what the state store persists and restores);
it is changed only by `apply_fill` and `record_closes` (a candle's close, or many in bulk: the
same floats as one at a time), and its size does not grow with the number
of trades (fills are counted, the journal keeps them). Equity is computed once per change of a
price or of the account, not once per reader. Other threads never read a Ledger: they read an
AccountSnapshot its own thread took (`snapshot`), whose figures are all of one moment.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from backend.dtos import AccountState, FillDTO, OrderSide, PortfolioSnapshotDTO, PositionState
from backend.dtos.account import DUST_QUANTITY
from backend.equity_curve import EquityLine, deepest_drawdown, drawdown_curve, drawdown_pct, equities_holding
from backend.interfaces.broker import OrderView
from backend.interfaces.journal import Protection

SHORT_STRETCH = 48  # closes below which record_closes loops in Python: numpy's calls cost more

# cash, position_qty, avg_entry_price (None when flat), equity, peak_equity: a PortfolioSnapshotDTO's fields
PortfolioValues = tuple[float, float, float | None, float, float]


def portfolio_snapshot(values: PortfolioValues) -> PortfolioSnapshotDTO:
    cash, position_qty, avg_entry_price, equity, peak_equity = values
    return PortfolioSnapshotDTO.trusted(cash=cash, position_qty=position_qty, avg_entry_price=avg_entry_price,
                                        equity=equity, peak_equity=peak_equity)


@dataclass(frozen=True)
class OpenPosition:
    """A position held, valued at the last close marked (its entry price before any)."""

    asset: str
    quantity: float
    average_entry_price: float
    price: float
    unrealised_pnl: float
    unrealised_pnl_pct: float
    dust: bool  # below the venue's minimum order: valued, never traded


@dataclass(frozen=True)
class AssetFigures:
    """One asset's part of an account since its ledger was built (the run's start): its fills
    and their fees and notional, what it holds now at the last close marked, and its PnL (the cash
    its fills brought in, sells - buys - fees, plus the value held now, less the cost of what was
    held at the start). The assets' PnLs add up to the account's equity less its cash and the cost
    of the positions at the start: a backtest's total PnL."""

    asset: str
    trades: int
    fees_paid: float
    volume: float  # notional of its fills, quote currency
    position_qty: float
    position_value: float
    pnl: float


@dataclass
class _AssetFlows:
    """What one asset's fills have brought the account since the ledger was built."""

    cost_at_start: float = 0.0  # quantity x average entry price of the position held at the start
    trades: int = 0
    fees: float = 0.0
    volume: float = 0.0
    cash: float = 0.0  # sells - buys - fees


@dataclass(frozen=True)
class AccountSummary:
    trades: int
    fees_paid: float
    final_equity: float
    pnl: float
    pnl_pct: float
    max_drawdown_pct: float
    open_positions: tuple[OpenPosition, ...] = ()
    per_asset: tuple[AssetFigures, ...] = ()  # by asset name


NO_ORDERS: Mapping[str, int] = MappingProxyType({})
NO_PROTECTIONS: Mapping[str, Protection] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The account at one moment, frozen: taken by the thread that changes it, between two changes,
    so its figures agree with one another (equity = cash + each position's quantity at its price)
    and another thread may read it whenever it likes. order_outcomes (orders by outcome since
    start) is a read-only copy."""

    starting_capital: float
    cash: float
    equity: float
    peak_equity: float
    max_drawdown_pct: float
    trades: int
    fees_paid: float
    positions: tuple[OpenPosition, ...]
    order_outcomes: Mapping[str, int]
    unsettled_orders: int  # orders whose outcome is unknown until reconciled
    open_orders: tuple[OrderView, ...] = ()  # orders not done yet, oldest first
    reserved_cash: float = 0.0  # what open buys may still spend
    # Per asset: the stop (and take-profit) asked for its position.
    protections: Mapping[str, Protection] = field(default_factory=lambda: NO_PROTECTIONS)
    assets: tuple[AssetFigures, ...] = ()  # every asset traded, held or priced since the start, by name

    @property
    def pnl(self) -> float:
        return self.equity - self.starting_capital

    @property
    def drawdown_pct(self) -> float:
        """Below the equity peak now (%); the peak counts this equity, not yet closed on the curve."""
        return drawdown_pct(self.equity, self.peak_equity)

    def summary(self) -> AccountSummary:
        return AccountSummary(
            trades=self.trades,
            fees_paid=self.fees_paid,
            final_equity=self.equity,
            pnl=self.pnl,
            pnl_pct=self.pnl / self.starting_capital * 100,
            max_drawdown_pct=self.max_drawdown_pct,
            open_positions=self.positions,
            per_asset=self.assets,
        )


class Ledger:
    """Spot account in one quote currency; used by one strategy run's thread only."""

    def __init__(self, starting_capital: float, state: AccountState | None = None) -> None:
        self.state = state or AccountState.new(starting_capital)
        self._last_prices: dict[str, float] = {}
        self._equity: float | None = None  # cached until a price or the account changes
        self._minimum_quantities: dict[str, float] = {}  # per asset: less than this held is dust
        self._flows = {asset: _AssetFlows(cost_at_start=position.qty * position.avg_entry_price)
                       for asset, position in self.state.positions.items()}

    def set_minimum_quantity(self, asset: str, quantity: float) -> None:
        """The venue's smallest order of asset: a position below it cannot be sold, so it is dust."""
        self._minimum_quantities[asset] = quantity

    def has_minimum_quantity(self, asset: str) -> bool:
        return asset in self._minimum_quantities

    def minimum_quantity(self, asset: str) -> float:
        return self._minimum_quantities.get(asset, 0.0)

    def open_positions(self) -> list[OpenPosition]:
        """What is held, asset by asset, with its unrealised PnL; dust (too small to sell) flagged."""
        positions = []
        for asset, position in self.state.positions.items():
            entry, quantity = position.avg_entry_price, position.qty
            price = self._last_prices.get(asset, entry)
            pnl_pct = (price / entry - 1) * 100 if entry else 0.0
            dust = quantity < self._minimum_quantities.get(asset, 0.0)
            positions.append(OpenPosition(asset, quantity, entry, price, quantity * (price - entry), pnl_pct, dust))
        return positions

    @property
    def starting_capital(self) -> float:
        return self.state.starting_capital

    @property
    def cash(self) -> float:
        return self.state.cash

    @property
    def fees_paid(self) -> float:
        return self.state.fees_paid

    @property
    def positions(self) -> dict[str, PositionState]:
        return self.state.positions

    def mark(self, asset: str, price: float) -> None:
        self._last_prices[asset] = price
        self._equity = None

    def last_price(self, asset: str) -> float | None:
        """The last close marked for asset (None before its first candle)."""
        return self._last_prices.get(asset)

    def position(self, asset: str) -> PositionState:
        return self.state.positions.get(asset, PositionState())

    def equity(self) -> float:
        equity = self._equity
        if equity is None:
            held, prices = 0.0, self._last_prices
            for asset, position in self.state.positions.items():
                held += position.qty * prices.get(asset, position.avg_entry_price)
            equity = self._equity = self.state.cash + held
        return equity

    def snapshot_values(self, asset: str) -> PortfolioValues:
        """The account as workers see it, as the fields of a PortfolioSnapshotDTO in a plain
        tuple (cheap to take on every tick; `portfolio_snapshot` builds the DTO when asked). Dust
        is not shown to workers as a position: they could only plan sells the venue refuses."""
        state = self.state
        position = state.positions.get(asset)
        if position is None or position.qty <= 0 or position.qty < self._minimum_quantities.get(asset, 0.0):
            return state.cash, 0.0, None, self.equity(), state.peak_equity
        return state.cash, position.qty, position.avg_entry_price, self.equity(), state.peak_equity

    def capped_quantity(self, asset: str, side: OrderSide, quantity: float, price: float, fee_rate: float,
                        reserved: float = 0.0) -> float:
        """quantity cut to what this spot account can do: buys to the cash (fee included), sells to
        the position held, less what open orders reserve of either; never short, never below zero cash."""
        if side is OrderSide.BUY:
            cash = max(self.state.cash - reserved, 0.0)
            affordable = cash / (price * (1 + fee_rate))
            # The division rounds: step down until the cost, as apply_fill will book it, fits.
            while affordable > 0 and affordable * price + affordable * price * fee_rate > cash:
                affordable = math.nextafter(affordable, 0.0)
            return min(quantity, affordable)
        return min(quantity, max(self.position(asset).qty - reserved, 0.0))

    def apply_fill(self, fill: FillDTO) -> None:
        state = self.state
        self._equity = None
        position = state.positions.get(fill.asset)
        if position is None:  # not setdefault, which would make a PositionState per fill to throw away
            position = state.positions[fill.asset] = PositionState()
        notional = fill.quantity * fill.price
        if fill.side is OrderSide.BUY:
            total_qty = position.qty + fill.quantity
            position.avg_entry_price = (position.qty * position.avg_entry_price + notional) / total_qty
            position.qty = total_qty
            state.cash -= notional + fill.fee
        else:
            position.qty -= fill.quantity
            if position.qty <= DUST_QUANTITY:
                del state.positions[fill.asset]
            state.cash += notional - fill.fee
        state.fees_paid += fill.fee
        state.trades += 1
        flows = self._flows.get(fill.asset)
        if flows is None:
            flows = self._flows[fill.asset] = _AssetFlows()
        flows.trades += 1
        flows.fees += fill.fee
        flows.volume += notional
        flows.cash += (notional if fill.side is OrderSide.SELL else -notional) - fill.fee

    def asset_figures(self) -> tuple[AssetFigures, ...]:
        """Each asset's part of the account (AssetFigures), by asset name."""
        figures = []
        for asset in sorted(self._flows.keys() | self._last_prices.keys()):
            flows = self._flows.get(asset) or _AssetFlows()
            position = self.state.positions.get(asset)
            quantity = position.qty if position is not None else 0.0
            value = quantity * self._last_prices.get(asset, position.avg_entry_price if position else 0.0)
            figures.append(AssetFigures(asset, flows.trades, flows.fees, flows.volume, quantity, value,
                                        flows.cash + value - flows.cost_at_start))
        return tuple(figures)


    def holds_only(self, asset: str) -> bool:
        """No position in another asset (its equity then depends on asset's price alone)."""
        return all(held == asset for held in self.state.positions)

    def equity_line(self, asset: str) -> EquityLine:
        """The equity `equity()` gives after `mark(asset, close)`, at any close, as long as the
        holding stays: for an account that holds nothing but asset (`holds_only`)."""
        position = self.state.positions.get(asset)
        return EquityLine(self.state.cash, position.qty if position is not None else 0.0)

    def record_closes(self, asset: str, closes: Sequence[float] | np.ndarray) -> None:
        """For each close of asset, in order: `mark(asset, close)`, then close the candle on the
        equity curve (track the peak and the deepest drawdown). One close: a tick, whatever the
        account holds; more: candles no one traded on, for an account that holds nothing but
        asset (`holds_only`), with the same floats as one at a time."""
        state = self.state
        if len(closes) == 1:
            close = closes[0]
            if self._last_prices.get(asset) != close:  # marked at the candle's open already, as a rule
                self.mark(asset, float(close))
            equity = self.equity()
            state.peak_equity = max(state.peak_equity, equity)
            state.max_drawdown_pct = max(state.max_drawdown_pct, drawdown_pct(equity, state.peak_equity))
            return
        closes = np.asarray(closes, dtype=np.float64)
        position = state.positions.get(asset)
        qty = position.qty if position is not None else 0.0
        if position is None or len(closes) <= SHORT_STRETCH:
            # In Python: a short stretch, or a flat account, whose equity is the same at every close
            # (so one is enough).
            peak, deepest = deepest_drawdown(state.cash, qty, (closes if position is not None else closes[:1]).tolist(),
                                             state.peak_equity, state.max_drawdown_pct)
        else:
            drawdowns, peak = drawdown_curve(equities_holding(state.cash, qty, closes), state.peak_equity)
            deepest = max(state.max_drawdown_pct, float(drawdowns.max()))
        state.peak_equity, state.max_drawdown_pct = peak, deepest
        self.mark(asset, float(closes[-1]))

    def record_frames(self, stretches: Sequence[tuple[str, np.ndarray, np.ndarray]],
                      equities: bool = False) -> list[np.ndarray] | None:
        """Frames of candles no one traded on, given per symbol as (symbol, open times, closes) of
        one stretch of time: for each frame (an open time of any of them), in time order, mark the
        closes of that time, then close the frame on the equity curve; the same floats as one
        frame at a time (`equity()` adds the positions up in the same order), whatever is held.
        equities: also return each stretch's equity at each of its rows (its frame's)."""
        state, prices = self.state, self._last_prices
        times = np.unique(np.concatenate([open_times for _, open_times, _ in stretches]))
        held: np.ndarray | None = None
        for asset, position in state.positions.items():
            mark = prices.get(asset, position.avg_entry_price)
            price = np.full(len(times), mark)
            for symbol, open_times, closes in stretches:
                if symbol == asset:  # its last close at each frame, the mark before its first
                    at = np.searchsorted(open_times, times, side="right") - 1
                    price = np.where(at >= 0, closes[np.maximum(at, 0)], mark)
                    break
            part = position.qty * price
            held = 0.0 + part if held is None else held + part
        curve = np.full(len(times), state.cash) if held is None else state.cash + held
        drawdowns, state.peak_equity = drawdown_curve(curve, state.peak_equity)
        state.max_drawdown_pct = max(state.max_drawdown_pct, float(drawdowns.max()))
        for symbol, _, closes in stretches:
            self.mark(symbol, float(closes[-1]))
        if not equities:
            return None
        return [curve[np.searchsorted(times, open_times)] for _, open_times, _ in stretches]

    def snapshot(self, order_outcomes: Mapping[str, int] = NO_ORDERS, unsettled_orders: int = 0,
                 open_orders: tuple[OrderView, ...] = (), reserved_cash: float = 0.0,
                 protections: Mapping[str, Protection] = NO_PROTECTIONS) -> AccountSnapshot:
        """The account now, frozen (with what the account keeps beside the ledger): for other threads."""
        state = self.state
        equity = self.equity()
        return AccountSnapshot(
            starting_capital=state.starting_capital,
            cash=state.cash,
            equity=equity,
            peak_equity=state.peak_equity,
            # The deepest so far counts now too: an operator's order between two candles may take
            # the account below what the curve has recorded yet.
            max_drawdown_pct=max(state.max_drawdown_pct, drawdown_pct(equity, state.peak_equity)),
            trades=state.trades,
            fees_paid=state.fees_paid,
            positions=tuple(self.open_positions()),
            order_outcomes=MappingProxyType(dict(order_outcomes)),
            unsettled_orders=unsettled_orders,
            open_orders=open_orders,
            reserved_cash=reserved_cash,
            protections=MappingProxyType(dict(protections)),
            assets=self.asset_figures(),
        )

    def summary(self) -> AccountSummary:
        return self.snapshot().summary()
