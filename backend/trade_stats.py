"""Trade statistics of one strategy run, from its fills: the numbers the printed summary,
summary.json and report.html show about its round trips.

Invariant: computed as the fills come, in memory that grows with the assets and the months traded,
never with the fills, and the same whether fed fill by fill (`TradeStatsTracker`) or all at once
(`trade_stats_of`).

Definitions. A round trip is one asset's fills from the one that opens a position while flat to
the one after which it is flat again (below the ledger's dust quantity), partial entries and
exits included; a position still open at the end is no round trip (`open_round_trips`
counts them). Its PnL is the cash it brought back: sells' notional - buys' notional - every fee
paid on its fills (quote currency). A win has PnL > 0, a loss PnL < 0 (a trip at exactly 0 is
neither). Win rate = wins / round trips; average win and loss are the mean PnL of each (the loss
negative); profit factor = gross profit / |gross loss| (None without a loss); expectancy = the
mean PnL of a round trip; holding time runs from its first fill to its last. The per-asset and
per-month tables count round trips by asset and by the UTC month of their last fill.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from backend.dtos import FillDTO, OrderSide
from backend.dtos.account import DUST_QUANTITY


@dataclass(frozen=True)
class TradeGroup:
    """Round trips of one asset or one month."""

    round_trips: int
    wins: int
    losses: int
    win_rate_pct: float | None
    pnl: float


@dataclass(frozen=True)
class TradeStats:
    round_trips: int = 0
    wins: int = 0
    losses: int = 0
    win_rate_pct: float | None = None
    average_win: float | None = None
    average_loss: float | None = None
    profit_factor: float | None = None
    expectancy: float | None = None
    best_trade: float | None = None
    worst_trade: float | None = None
    average_holding_hours: float | None = None
    open_round_trips: int = 0
    per_asset: dict[str, TradeGroup] = field(default_factory=dict)
    per_month: dict[str, TradeGroup] = field(default_factory=dict)  # "2023-01": by the last fill's month


@dataclass
class _OpenTrip:
    started: datetime
    quantity: float = 0.0
    cash: float = 0.0  # what the trip's fills brought in (negative while buying)


@dataclass
class _Tally:
    round_trips: int = 0
    wins: int = 0
    losses: int = 0
    pnl: float = 0.0

    def add(self, pnl: float) -> None:
        self.round_trips += 1
        self.wins += pnl > 0
        self.losses += pnl < 0
        self.pnl += pnl

    def group(self) -> TradeGroup:
        return TradeGroup(self.round_trips, self.wins, self.losses, _rate(self.wins, self.round_trips), self.pnl)


class TradeStatsTracker:
    """Feed it every fill of a run, in time order, with `add`; read `result()` at any time."""

    def __init__(self) -> None:
        self._open: dict[str, _OpenTrip] = {}
        self._all = _Tally()
        self._by_asset: dict[str, _Tally] = {}
        self._by_month: dict[str, _Tally] = {}
        self._gross_profit = 0.0
        self._gross_loss = 0.0
        self._best: float | None = None
        self._worst: float | None = None
        self._held_seconds = 0.0

    def add(self, fill: FillDTO) -> None:
        trip = self._open.get(fill.asset)
        if trip is None:
            trip = self._open[fill.asset] = _OpenTrip(fill.timestamp)
        notional = fill.quantity * fill.price
        if fill.side is OrderSide.BUY:
            trip.quantity += fill.quantity
            trip.cash -= notional + fill.fee
        else:
            trip.quantity -= fill.quantity
            trip.cash += notional - fill.fee
        if trip.quantity <= DUST_QUANTITY:  # flat again, as the ledger has it
            del self._open[fill.asset]
            self._close(fill.asset, trip, fill.timestamp)

    def _close(self, asset: str, trip: _OpenTrip, ended: datetime) -> None:
        pnl = trip.cash
        self._all.add(pnl)
        by_asset = self._by_asset.get(asset)
        if by_asset is None:  # not setdefault, which would make a _Tally per trip to throw away
            by_asset = self._by_asset[asset] = _Tally()
        by_asset.add(pnl)
        month = f"{ended.year:04d}-{ended.month:02d}"
        by_month = self._by_month.get(month)
        if by_month is None:
            by_month = self._by_month[month] = _Tally()
        by_month.add(pnl)
        if pnl > 0:
            self._gross_profit += pnl
        elif pnl < 0:
            self._gross_loss -= pnl
        self._best = pnl if self._best is None else max(self._best, pnl)
        self._worst = pnl if self._worst is None else min(self._worst, pnl)
        self._held_seconds += (ended - trip.started).total_seconds()

    def result(self) -> TradeStats:
        tally = self._all
        trips = tally.round_trips
        return TradeStats(
            round_trips=trips,
            wins=tally.wins,
            losses=tally.losses,
            win_rate_pct=_rate(tally.wins, trips),
            average_win=self._gross_profit / tally.wins if tally.wins else None,
            average_loss=-self._gross_loss / tally.losses if tally.losses else None,
            profit_factor=self._gross_profit / self._gross_loss if self._gross_loss > 0 else None,
            expectancy=tally.pnl / trips if trips else None,
            best_trade=self._best,
            worst_trade=self._worst,
            average_holding_hours=self._held_seconds / trips / 3600 if trips else None,
            open_round_trips=len(self._open),
            per_asset={asset: part.group() for asset, part in sorted(self._by_asset.items())},
            per_month={month: part.group() for month, part in sorted(self._by_month.items())},
        )


def trade_stats_of(fills: Iterable[FillDTO]) -> TradeStats:
    """The statistics of a whole run's fills, in time order."""
    tracker = TradeStatsTracker()
    for fill in fills:
        tracker.add(fill)
    return tracker.result()


def _rate(part: int, whole: int) -> float | None:
    return part / whole * 100 if whole else None
