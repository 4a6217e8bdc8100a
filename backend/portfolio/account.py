"""A strategy's account: the one place its orders are sized, journaled and booked.

Invariants: an order is journaled before its gateway sees it; a fill changes the ledger only here,
is logged here (`order_filled`, whichever worker or operator placed the order) and is journaled
with the account it produced in one write, once per exchange order id whatever path reports it
(the order's reply, a lookup, a settlement after a restart); an order whose outcome is unknown is
never sent again, only settled by looking it up, and while one is unsettled the account takes no
new buys (sells of what it surely holds stay allowed); an order the venue refused before it
existed (the key) is journaled rejected, so it never blocks the account after a restart; a candle
is traded at most once: it becomes its symbol's durable cursor before any worker trades on it, so
a process that dies in the middle of a tick never trades that candle again after a restart.
"""

import itertools
from collections.abc import Callable
from datetime import datetime

import numpy as np
import structlog

from backend.dtos import FillDTO, OrderDTO, OrderSide, OrderStatus
from backend.errors import OperatorOrderError, OrderNotPlacedError
from backend.interfaces import IBroker
from backend.interfaces.journal import IAccountJournal, InMemoryJournal
from backend.interfaces.order_gateway import IOrderGateway, OrderOutcome, OrderRequest
from backend.portfolio.ledger import AccountSnapshot, Ledger, PortfolioValues
from backend.trade_stats import TradeStatsTracker

log = structlog.get_logger(__name__)

MIN_NOTIONAL = 0.01  # quote currency; smaller remainders (float dust) are not orders


def numbered_order_ids(prefix: str) -> Callable[[], str]:
    """`prefix1`, `prefix2`, ...: ids of orders that never leave the process nor outlive it (a
    backtest's), far cheaper than a UUID each."""
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


class StrategyAccount(IBroker):
    def __init__(
        self,
        ledger: Ledger,
        gateway: IOrderGateway,
        journal: IAccountJournal | None = None,
        new_order_id: Callable[[], str] | None = None,
    ) -> None:
        self.ledger = ledger
        self._gateway = gateway
        self._journal = journal or InMemoryJournal()
        self._durable = self._journal.durable
        self._new_order_id = new_order_id or gateway.new_client_order_id  # the venue's form by default
        self._unsettled: list[OrderRequest] = self._journal.unsettled()
        self._cursors = self._journal.cursors()  # symbol -> last candle processed, across restarts
        # Why the account takes no new buys (reconciliation, an operator): set by other threads, and
        # read by them live (StrategyRun.snapshot), not from the snapshot this thread took before.
        self.paused: str | None = None
        # Orders by outcome since start (filled, rejected, unknown, skipped), shown in its snapshot.
        self.order_outcomes: dict[str, int] = dict.fromkeys(("filled", "rejected", "unknown", "skipped"), 0)
        self.on_fill: Callable[[FillDTO], None] | None = None  # told of every fill once booked (a report)
        # Bound once, to the logging configured before any account is built: through the module's
        # lazy proxy every fill would look the configuration up again (a backtest books thousands).
        self._log = log.bind()
        self.trade_stats = TradeStatsTracker()  # of the fills since start

    @property
    def durable(self) -> bool:
        """Journaled candle by candle: a live or paper account (a backtest's keeps nothing)."""
        return self._durable

    @property
    def cursors(self) -> dict[str, datetime]:
        """Per symbol, the last candle processed (across restarts)."""
        return dict(self._cursors)

    @property
    def unsettled_orders(self) -> list[OrderRequest]:
        return list(self._unsettled)

    # --- the tick's frame (TickCacheManager) -------------------------------------------------

    def open_tick(self, symbol: str, close: float, candle_time: datetime, trading: bool) -> PortfolioValues:
        """Mark the candle's close, settle what can be settled and, when it is traded, claim the
        candle (its cursor, durably) before any worker acts on it; the account as workers see it
        this tick (the values of its PortfolioSnapshotDTO: see ledger.portfolio_snapshot)."""
        self.ledger.mark(symbol, close)
        if trading and not self.ledger.has_minimum_quantity(symbol):  # once per symbol
            self.ledger.set_minimum_quantity(symbol, self._gateway.minimum_quantity(symbol))
        if self._unsettled and trading:
            self.settle(candle_time)
        if trading:
            self._advance_cursor(symbol, candle_time)
        return self.ledger.snapshot_values(symbol)

    def is_new(self, symbol: str, candle_time: datetime) -> bool:
        """False for a candle this account has processed already (before a restart, say)."""
        last = self._cursors.get(symbol)
        return last is None or candle_time > last

    def close_tick(self, symbol: str, close: float, candle_time: datetime, trading: bool) -> None:
        """The candle is processed: close it on the equity curve and make it durable (a traded
        candle's cursor was written by open_tick already). A replayed older candle (warm-up after
        a restart) never moves the cursor back."""
        if not trading:
            self._advance_cursor(symbol, candle_time)
            return
        self.ledger.record_closes(symbol, (close,))
        if self._durable:
            self._journal.save(self.ledger.state, symbol, self._cursors[symbol])

    def can_close_quietly(self, symbol: str) -> bool:
        """Whether `close_quiet_candles` may stand for whole ticks now: nothing journaled per
        candle (a backtest), no order to settle, nothing held but symbol."""
        return not self._durable and not self._unsettled and self.ledger.holds_only(symbol)

    def close_quiet_candles(self, symbol: str, closes: np.ndarray, last_time: datetime) -> None:
        """Candles no worker acted on, closes in time order up to the one opened at last_time: the
        account as after `open_tick` and `close_tick` on each (only when `can_close_quietly`)."""
        self.ledger.record_closes(symbol, closes)
        self._advance_cursor(symbol, last_time)

    def _advance_cursor(self, symbol: str, candle_time: datetime) -> None:
        """candle_time becomes the symbol's cursor, saved with the account, unless that would
        move it back."""
        last = self._cursors.get(symbol)
        if last is None or candle_time > last:
            self._cursors[symbol] = candle_time
            if self._durable:
                self._journal.save(self.ledger.state, symbol, candle_time)

    def snapshot(self) -> AccountSnapshot:
        """The account now, frozen, for other threads: taken by the thread that uses the account."""
        return self.ledger.snapshot(self.order_outcomes, len(self._unsettled))

    # --- orders --------------------------------------------------------------------------------

    def submit(self, order: OrderDTO, timestamp: datetime) -> FillDTO | None:
        context = {"asset": order.asset, "side": order.side.value}
        if order.side is OrderSide.BUY and (self._unsettled or self.paused):
            reason = self.paused or "an earlier order's outcome is unknown until reconciled"
            log.warning("order_skipped", **context, reason=reason,
                        unsettled=[request.client_order_id for request in self._unsettled])
            self.order_outcomes["skipped"] += 1
            return None
        price, fee_rate = self._gateway.sizing(order.asset, order.side, order.reference_price)
        quantity = self.ledger.capped_quantity(order.asset, order.side, order.quantity, price, fee_rate)
        if quantity * price < MIN_NOTIONAL:
            log.warning("order_rejected", **context, reason="no cash" if order.side is OrderSide.BUY else "no position")
            return None
        request = OrderRequest(self._new_order_id(), order.asset, order.side, quantity, order.reference_price,
                               reason=order.reason)
        self._journal.record_intent(request, order.reason)
        try:
            outcome = self._gateway.execute(request)
        except OrderNotPlacedError as error:  # e.g. the key was refused: journaled, then the run stops
            self._book(request, OrderOutcome(OrderStatus.REJECTED, reason=str(error)), timestamp)
            raise
        return self._book(request, outcome, timestamp)

    def force_exit(self, asset: str) -> FillDTO | None:
        """Sell all that is held of asset at market now: an operator's order, placed between two
        ticks, on the last candle processed (its close the reference price), journaled as any
        other. None when nothing was filled (the order's own log line says why)."""
        held = self.ledger.position(asset).qty
        price, candle_time = self.ledger.last_price(asset), self._cursors.get(asset)
        if held <= 0 or held < self.ledger.minimum_quantity(asset):
            raise OperatorOrderError(f"nothing of {asset} to sell" + (f" but dust ({held:g})" if held > 0 else ""))
        if price is None or candle_time is None:
            raise OperatorOrderError(f"no candle of {asset} processed yet: no price to place the order at")
        log.warning("force_exit", asset=asset, quantity=held, reference_price=price)
        return self.submit(OrderDTO(asset=asset, side=OrderSide.SELL, quantity=held, reference_price=price,
                                    reason="force_exit by the operator"), candle_time)

    def open_orders(self) -> list[str] | None:
        """The link's orders open on the venue (None when fills are simulated)."""
        return self._gateway.open_orders()

    def holdings(self) -> dict[str, float] | None:
        """What the venue account behind this strategy holds (None when fills are simulated)."""
        return self._gateway.holdings()

    @property
    def venue_account(self) -> object | None:
        return self._gateway.venue_account

    def settle(self, candle_time: datetime | None = None) -> None:
        """Look up every order whose outcome is unknown and book what the venue says of it, on
        candle_time; without one (at start, before any candle), on the last candle its asset
        processed: the one the order was placed on, or a later one."""
        for request in list(self._unsettled):
            outcome = self._gateway.settle(request)
            if outcome.status is OrderStatus.UNKNOWN:  # still: journal why (an intent becomes unknown)
                self._journal.record_outcome(request, outcome, None, self.ledger.state)
            else:
                self._unsettled.remove(request)
                log.info("order_settled", client_order_id=request.client_order_id, status=outcome.status.value)
                self._book(request, outcome, candle_time or self._cursors.get(request.asset, request.journaled_at))

    def _book(self, request: OrderRequest, outcome: OrderOutcome, timestamp: datetime) -> FillDTO | None:
        context = {"asset": request.asset, "side": request.side.value, "client_order_id": request.client_order_id,
                   "order_id": outcome.exchange_order_id}
        if outcome.status is OrderStatus.FILLED and outcome.exchange_order_id \
                and self._journal.fill_booked(outcome.exchange_order_id):
            # Reported twice (a run that outlived its stop, say): the ledger has it already.
            log.warning("fill_already_booked", **context)
            self._journal.record_outcome(request, outcome, None, self.ledger.state)
            return None
        self.order_outcomes[outcome.status.value] = self.order_outcomes.get(outcome.status.value, 0) + 1
        if outcome.status is OrderStatus.FILLED:
            fill = FillDTO(
                asset=request.asset, side=request.side, quantity=outcome.filled_quantity,
                price=outcome.average_price, fee=outcome.fee, timestamp=timestamp, order_id=outcome.exchange_order_id,
            )
            self.ledger.apply_fill(fill)
            self.trade_stats.add(fill)
            self._log.info("order_filled", asset=fill.asset, side=fill.side.value, quantity=round(fill.quantity, 8),
                           price=round(fill.price, 2), fee=round(fill.fee, 4), reason=request.reason,
                           candle_time=timestamp.isoformat(), order_id=fill.order_id)
            self._journal.record_outcome(request, outcome, fill, self.ledger.state)
            if self.on_fill is not None:
                self.on_fill(fill)
            if not outcome.complete:
                log.warning("order_partially_filled", **context, filled=outcome.filled_quantity,
                            amount=request.quantity)
            return fill
        self._journal.record_outcome(request, outcome, None, self.ledger.state)
        if outcome.status is OrderStatus.REJECTED:
            log.warning("order_rejected", **context, reason=outcome.reason)
        elif request not in self._unsettled:
            self._unsettled.append(request)
            log.error("order_outcome_unknown", **context, reason=outcome.reason,
                      action="no new buys until it is settled by looking it up; it is never sent again")
        return None
