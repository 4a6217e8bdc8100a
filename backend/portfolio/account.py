"""A strategy's account: the one place its orders are sized, journaled and booked.

Invariants: an order is journaled before its gateway sees it; every change of an order's state
goes through `_apply`, which books only the part of the order's cumulative fill it has not booked
yet (so a report repeated, late or arriving by two paths books nothing twice, and a done order
never changes again), journals the new state with the fill and the account it produced in one
write, and logs it (`order_opened`, `order_filled`, `order_partially_filled`, `order_canceled`,
`order_expired`, `order_rejected`, `order_outcome_unknown`), whichever worker or operator placed
the order; an order whose outcome is unknown is never sent again, only settled by looking it up,
and while one is unsettled the account takes no new buys (sells of what it surely holds stay
allowed); every order is rounded to its market's lot and tick (`IOrderGateway.market_rules`), and
one below the market's minimum order or cost is skipped (`order_skipped`) before any gateway sees
it, in a backtest, paper or live alike; an order the venue refused before it existed (the key) is
journaled rejected; open buys reserve the cash they may spend (at their price, fee included) and
open sells the quantity they may sell, so orders never promise more than the account has; a
position asked to be protected holds one stop (and take-profit) on the venue covering it, placed
when the position is held, resized when it changes, cancelled before the strategy's own sell and
when it is gone, and never placed twice (not while a protective order's outcome is unknown); a
candle is traded at most once: it becomes its symbol's durable cursor before any worker trades on
it, so a process that dies in the middle of a tick never trades that candle again after a restart.
"""

import itertools
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime

import structlog

from backend.dtos import FillDTO, OrderDTO, OrderSide, OrderStatus, OrderType
from backend.dtos.execution import sizing_price
from backend.equity_curve import EquityLine
from backend.errors import OperatorOrderError, OrderNotPlacedError
from backend.interfaces import IBroker
from backend.interfaces.broker import OrderTicket, OrderView
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.journal import IAccountJournal, InMemoryJournal, Protection
from backend.interfaces.ohlcv_provider import Candle
from backend.interfaces.order_gateway import IOrderGateway, OrderOutcome, OrderRequest
from backend.market_data.market_rules import MarketRules
from backend.market_data.raw_tick import RawTick
from backend.portfolio.ledger import AccountSnapshot, Ledger, PortfolioValues
from backend.portfolio.open_orders import UNSETTLED, OpenOrder, OpenOrders
from backend.trade_stats import TradeStatsTracker

log = structlog.get_logger(__name__)

MIN_NOTIONAL = 0.01  # quote currency; smaller remainders (float dust) are not orders
QUANTITY_TOLERANCE = 1e-12  # relative: a cumulative fill this close to what is booked is the same fill
# A status never goes back: a late report of an earlier state changes nothing.
STATUS_RANK = {OrderStatus.PENDING: 0, OrderStatus.UNKNOWN: 0, OrderStatus.OPEN: 1, OrderStatus.PARTIALLY_FILLED: 2}
DONE = frozenset(status for status in OrderStatus if status.done)
STATUS_EVENTS = {
    OrderStatus.OPEN: "order_opened", OrderStatus.CANCELED: "order_canceled", OrderStatus.EXPIRED: "order_expired",
    OrderStatus.REJECTED: "order_rejected",
}


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
        self._orders = OpenOrders(self._journal.open_orders())  # journaled ones, after a restart
        gateway.resume([(order.request, order.booked) for order in self._orders.of() if order.booked.status.working])
        self._protections = self._journal.protections()
        self._cursors = self._journal.cursors()  # symbol -> last candle processed, across restarts
        # Why the account takes no new buys (reconciliation, an operator): set by other threads, and
        # read by them live (StrategyRun.snapshot), not from the snapshot this thread took before.
        self.paused: str | None = None
        # Orders by outcome since start (filled, rejected, unknown, skipped, ...), shown in its snapshot.
        self.order_outcomes: dict[str, int] = dict.fromkeys(("filled", "rejected", "unknown", "skipped"), 0)
        self.on_fill: Callable[[FillDTO], None] | None = None  # told of every fill once booked (a report)
        # Told of every order state journaled, with the candle it was booked on (a report).
        self.on_order: Callable[[OrderView, datetime], None] | None = None
        # Bound once, to the logging configured before any account is built: through the module's
        # lazy proxy every fill would look the configuration up again (a backtest books thousands).
        self._log = log.bind()
        # Whether a fill's info line is kept at all: a sweep's runs log at warning, and building the
        # line's fields for nothing cost as much as booking the fill's trade statistics.
        enabled = getattr(self._log, "is_enabled_for", None)
        self._log_fills = enabled is None or enabled(logging.INFO)
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
        """Orders whose outcome is unknown until they are looked up."""
        return [order.request for order in self._orders.unsettled()]

    # --- the tick's frame (TickCacheManager) -------------------------------------------------

    def open_tick(self, tick: RawTick, trading: bool) -> PortfolioValues:
        """Mark the candle's close and, when it is traded: settle what can be settled, book what the
        venue did with the open orders of its symbol up to this candle's close, keep its position's
        protection, and claim the candle (its cursor, durably) before any worker acts on it. The
        account as workers see it this tick (the values of its PortfolioSnapshotDTO: see
        ledger.portfolio_snapshot)."""
        symbol = tick.symbol
        self.ledger.mark(symbol, tick.close)
        if trading:
            if not self.ledger.has_minimum_quantity(symbol):  # once per symbol
                self.ledger.set_minimum_quantity(symbol, self._gateway.market_rules(symbol).min_quantity)
            if self._orders:
                self._settle_and_poll(tick)
            if symbol in self._protections:  # a restart, say, left the position without its stop
                self._keep_protection(symbol, tick.timestamp)
            self._advance_cursor(symbol, tick.timestamp)
        return self.ledger.snapshot_values(symbol)

    def _settle_and_poll(self, tick: RawTick) -> None:
        if self.unsettled_orders:
            self.settle(tick.timestamp)
        working = [(order.request, order.booked.exchange_order_id) for order in self._orders.working(tick.symbol)]
        if working:
            candle = Candle(tick.timestamp, tick.open, tick.high, tick.low, tick.close, tick.volume)
            for client_order_id, outcome in self._gateway.poll(working, tick.symbol, candle):
                self._apply(client_order_id, outcome, tick.timestamp)

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

    def can_close_quietly(self, symbols: Collection[str]) -> bool:
        """Whether `close_quiet_candles` of these symbols' candles may stand for whole ticks now:
        nothing journaled per candle (a backtest), no order to settle, no order of another symbol
        (its candles are elsewhere)."""
        return (not self._durable and not self.unsettled_orders
                and all(order.request.asset in symbols for order in self._orders.of()))

    def next_order_row(self, symbol: str, candles: CandleColumns, start: int) -> int:
        """The first row at or after start on which an order of symbol could fill, trigger or
        expire (len(candles): none): an active row of a columnar replay."""
        if not self._orders.of(symbol):
            return len(candles)
        return self._gateway.next_event_row(symbol, candles, start)

    def close_quiet_candles(self, quiet: Sequence[tuple[CandleColumns, range]],
                            equities: bool = False) -> list[EquityLine | list[float]] | None:
        """Rows of candles (each symbol's, of one stretch of time) no worker acted on and no order
        could fill on (`next_order_row`): the account as after `open_tick` and `close_tick` on each
        of their frames (only when `can_close_quietly`). equities: also each row's equity at its
        frame's close, per part of quiet (for a recorder): the line they are on when the
        account holds only its asset, else the equities themselves."""
        ledger = self.ledger
        (first, first_rows), alone = quiet[0], len(quiet) == 1
        if alone and ledger.holds_only(first.symbol):  # its equity depends on its closes alone
            closes = first.closes[first_rows.start:first_rows.stop]
            curves: list[EquityLine | list[float]] | None = [ledger.equity_line(first.symbol)] if equities else None
            ledger.record_closes(first.symbol, closes)
        else:
            arrays = ledger.record_frames([(candles.symbol, candles.open_times[rows.start:rows.stop],
                                            candles.closes[rows.start:rows.stop]) for candles, rows in quiet],
                                          equities)
            curves = None if arrays is None else [curve.tolist() for curve in arrays]
        for candles, rows in quiet:
            if self._orders:
                self._gateway.passed_quietly(candles.symbol, candles, rows)
            self._advance_cursor(candles.symbol, candles.open_time(rows.stop - 1))
        return curves

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
        return self.ledger.snapshot(self.order_outcomes, len(self.unsettled_orders),
                                    tuple(order.view() for order in self._orders.of()),
                                    self._reserved_cash(), dict(self._protections))

    # --- orders --------------------------------------------------------------------------------

    def place(self, order: OrderDTO, timestamp: datetime) -> OrderTicket:
        return self._place(order, timestamp, protective=False)

    def _place(self, order: OrderDTO, timestamp: datetime, protective: bool) -> OrderTicket:
        buy = order.side is OrderSide.BUY
        orders = self._orders  # mostly empty in a backtest of market orders: each check below is then free
        if buy and (self.paused or (orders and self.unsettled_orders)):
            reason = self.paused or "an earlier order's outcome is unknown until reconciled"
            return self._skip(order, reason, unsettled=[request.client_order_id for request in self.unsettled_orders])
        if orders and not buy and not protective and orders.protective(order.asset):
            # The strategy exits by itself: the protection goes first, so nothing is sold twice; a
            # protective order that filled meanwhile is booked, and only what is still held is sold.
            self._cancel_protection(order.asset, timestamp)
            if orders.protective(order.asset):  # a cancel did not take: the stop still covers it all
                return self._skip(order, "the position's protective orders could not be cancelled: selling now "
                                  "could sell it twice")
        rules = self._gateway.market_rules(order.asset)
        if order.order_type is OrderType.MARKET:
            price, fee_rate = self._gateway.sizing(order.asset, order.side, order.reference_price)
        else:
            order = _on_the_tick(order, rules)
            price = sizing_price(order)
            fee_rate = self._gateway.sizing(order.asset, order.side, price)[1]
        reserved = 0.0  # nothing is open: nothing reserved (the common case of a backtest at market)
        if orders:
            reserved = self._reserved_cash() if buy else orders.selling(order.asset)
        quantity = self.ledger.capped_quantity(order.asset, order.side, order.quantity, price, fee_rate, reserved)
        if quantity * price < MIN_NOTIONAL:
            log.warning("order_rejected", **self._context(order), reason="no cash" if buy else "no position")
            return OrderTicket(None, OrderStatus.REJECTED)
        quantity = rules.quantity(quantity)  # to the lot, as the venue takes it
        too_small = rules.below_minimum(quantity, price)
        if too_small is not None:
            return self._skip(order, too_small, quantity=quantity)
        if order.stop_loss_price is not None:
            self._set_protection(order.asset, Protection(order.stop_loss_price, order.take_profit_price))
        request = OrderRequest(
            self._new_order_id(), order.asset, order.side, quantity, order.reference_price, reason=order.reason,
            order_type=order.order_type, limit_price=order.limit_price, trigger_price=order.trigger_price,
            time_in_force=order.time_in_force, expires_at=order.expires_at, post_only=order.post_only,
            placed_at=timestamp, protective=protective, trailing_offset=order.trailing_offset,
            trailing_offset_pct=order.trailing_offset_pct,
        )
        client_order_id = request.client_order_id
        self._journal.record_intent(request)
        orders.add(request)
        try:
            outcome = self._gateway.execute(request)
        except OrderNotPlacedError as error:  # e.g. the key was refused: journaled, then the run stops
            self._apply(client_order_id, OrderOutcome(OrderStatus.REJECTED, reason=str(error)), timestamp)
            raise
        fill = self._apply(client_order_id, outcome, timestamp)
        return OrderTicket(client_order_id, self._status_of(client_order_id, outcome), fill)

    def _skip(self, order: OrderDTO, reason: str, **details: object) -> OrderTicket:
        """The order is not placed, for a reason of the account's (never sent to any gateway)."""
        log.warning("order_skipped", **self._context(order), reason=reason, **details)
        self.order_outcomes["skipped"] += 1
        return OrderTicket(None, OrderStatus.REJECTED)

    @staticmethod
    def _context(order: OrderDTO) -> dict[str, str]:
        return {"asset": order.asset, "side": order.side.value, "order_type": order.order_type.value}

    def _status_of(self, client_order_id: str, outcome: OrderOutcome) -> OrderStatus:
        order = self._orders.get(client_order_id)
        return outcome.status if order is None else order.booked.status

    def cancel(self, client_order_id: str, timestamp: datetime | None = None) -> OrderStatus:
        order = self._orders.get(client_order_id)
        if order is None:
            raise OperatorOrderError(f"no open order {client_order_id} in this account")
        outcome = self._gateway.cancel(order.request, order.booked.exchange_order_id)
        self._apply(client_order_id, outcome, timestamp or self._candle_of(order.request))
        return self._status_of(client_order_id, outcome)

    def amend(self, client_order_id: str, quantity: float | None = None, limit_price: float | None = None,
              trigger_price: float | None = None) -> OrderStatus:
        order = self._orders.get(client_order_id)
        if order is None or not order.booked.status.working:
            raise OperatorOrderError(f"no open order {client_order_id} in this account")
        request = order.request
        if request.order_type is OrderType.TRAILING_STOP and (limit_price is not None or trigger_price is not None):
            raise OperatorOrderError(f"order {client_order_id} is a trailing stop: its trigger follows the market, "
                                     "only its quantity can be amended")
        rules = self._gateway.market_rules(request.asset)
        amended = replace(
            request, quantity=request.quantity if quantity is None else rules.quantity(quantity),
            limit_price=request.limit_price if limit_price is None else rules.limit_price(
                limit_price, request.side is OrderSide.BUY),
            trigger_price=request.trigger_price if trigger_price is None else rules.trigger_price(trigger_price))
        outcome = self._gateway.amend(request, order.booked.exchange_order_id, amended)
        if outcome.status.working:
            order.request = amended
            log.info("order_amended", client_order_id=client_order_id, asset=request.asset,
                     quantity=amended.quantity, limit_price=amended.limit_price, trigger_price=amended.trigger_price)
            self._journal.record_update(amended, replace(order.booked, status=outcome.status), None, self.ledger.state)
        self._apply(client_order_id, outcome, self._candle_of(request))
        return self._status_of(client_order_id, outcome)

    def open_orders(self, asset: str | None = None) -> list[OrderView]:
        return [order.view() for order in self._orders.of(asset)]

    def protect(self, asset: str, stop_price: float | None, take_profit_price: float | None = None) -> None:
        self._set_protection(asset, None if stop_price is None else Protection(stop_price, take_profit_price))
        candle_time = self._cursors.get(asset)
        if candle_time is not None:
            self._keep_protection(asset, candle_time)

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

    def venue_open_orders(self) -> list[str] | None:
        """The link's orders open on the venue (None when fills are simulated), for reconciliation."""
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
        for request in self.unsettled_orders:
            outcome = self._gateway.settle(request)
            if outcome.status is OrderStatus.UNKNOWN:  # still: journal why (an intent becomes unknown)
                order = self._orders.get(request.client_order_id)
                assert order is not None, "an unsettled order is open"
                order.booked = replace(order.booked, status=OrderStatus.UNKNOWN, reason=outcome.reason)
                self._journal.record_update(request, order.booked, None, self.ledger.state)
            else:
                log.info("order_settled", client_order_id=request.client_order_id, status=outcome.status.value)
                self._apply(request.client_order_id, outcome, candle_time or self._candle_of(request))

    def _candle_of(self, request: OrderRequest) -> datetime:
        """The candle to book a change of request on outside a tick: its asset's last one processed."""
        return self._cursors.get(request.asset) or request.placed_at or request.journaled_at

    # --- the one write point ------------------------------------------------------------------------

    def _apply(self, client_order_id: str, outcome: OrderOutcome, timestamp: datetime) -> FillDTO | None:
        """The order's new state as the venue (or simulator) reports it: the part of its fill not yet
        booked goes to the ledger, the state and fill to the journal (one write) and the log."""
        order = self._orders.get(client_order_id)
        if order is None:  # done already: a late or repeated report
            return None
        request, booked = order.request, order.booked
        if self._durable:  # another writer of this account (a run that outlived its stop) may have booked more
            journaled = self._journal.booked(client_order_id)
            if journaled is not None and journaled.filled_quantity > booked.filled_quantity:
                booked = journaled
        status = outcome.status
        if STATUS_RANK.get(status, 3) < STATUS_RANK.get(booked.status, 3) and status is not OrderStatus.UNKNOWN:
            status = booked.status  # a late report of an earlier state
        exchange_order_id = outcome.exchange_order_id or booked.exchange_order_id
        increase = outcome.filled_quantity - booked.filled_quantity
        fill = None
        if increase > outcome.filled_quantity * QUANTITY_TOLERANCE:
            if booked.filled_quantity == 0:
                price, fee = outcome.average_price, outcome.fee
            else:
                price = (outcome.filled_quantity * outcome.average_price
                         - booked.filled_quantity * booked.average_price) / increase
                fee = max(outcome.fee - booked.fee, 0.0)
            # Floats the gateway made of the venue's answer (or the simulator computed): valid as they are.
            fill = FillDTO.trusted(asset=request.asset, side=request.side, quantity=increase, price=price, fee=fee,
                                   timestamp=timestamp, order_id=exchange_order_id)
            self.ledger.apply_fill(fill)
            self.trade_stats.add(fill)
            if status in UNSETTLED or status is OrderStatus.OPEN:
                status = OrderStatus.PARTIALLY_FILLED
            if status is outcome.status and exchange_order_id is outcome.exchange_order_id and not booked.fee:
                booked = outcome  # the common case: the whole order reported at once
            else:
                booked = OrderOutcome(status, outcome.filled_quantity, outcome.average_price,
                                      max(outcome.fee, booked.fee), exchange_order_id, outcome.reason)
        else:
            changed = replace(booked, status=status, exchange_order_id=exchange_order_id,
                              reason=outcome.reason or booked.reason)
            if changed == booked:
                if booked is not order.booked:  # the journal had it: booked by another writer
                    log.warning("fill_already_booked", client_order_id=client_order_id, order_id=exchange_order_id)
                    order.booked = booked
                return None  # nothing new
            booked = changed
        order.booked = booked
        self._journal.record_update(request, booked, fill, self.ledger.state)
        self._log_change(order, fill, timestamp)
        if status in DONE:
            del self._orders[client_order_id]
        if self.on_order is not None:
            self.on_order(order.view(), timestamp)
        if fill is not None:
            if self.on_fill is not None:
                self.on_fill(fill)
            if request.asset in self._protections:
                self._keep_protection(request.asset, timestamp)
        return fill

    def _log_change(self, order: OpenOrder, fill: FillDTO | None, timestamp: datetime) -> None:
        request, booked = order.request, order.booked
        status = booked.status
        if status in DONE or status is OrderStatus.UNKNOWN:
            outcome = status.value
            self.order_outcomes[outcome] = self.order_outcomes.get(outcome, 0) + 1
        if fill is not None and self._log_fills:
            event = "order_filled" if status is OrderStatus.FILLED else "order_partially_filled"
            self._log.info(event, asset=fill.asset, side=fill.side.value, quantity=round(fill.quantity, 8),
                           price=round(fill.price, 2), fee=round(fill.fee, 4), reason=request.reason,
                           candle_time=timestamp.isoformat(), order_id=fill.order_id,
                           **({} if request.order_type is OrderType.MARKET and status is OrderStatus.FILLED else {
                               "order_type": request.order_type.value, "client_order_id": request.client_order_id,
                               "filled": booked.filled_quantity, "amount": request.quantity}))
        if status is OrderStatus.FILLED:
            return
        context = {"asset": request.asset, "side": request.side.value, "client_order_id": request.client_order_id,
                   "order_id": booked.exchange_order_id}
        if status is OrderStatus.UNKNOWN:
            log.error("order_outcome_unknown", **context, reason=booked.reason,
                      action="no new buys until it is settled by looking it up; it is never sent again")
        elif status in STATUS_EVENTS and not (status is OrderStatus.OPEN and fill is not None):
            log_at = log.warning if status is OrderStatus.REJECTED else log.info
            log_at(STATUS_EVENTS[status], **context, order_type=request.order_type.value,
                   reason=booked.reason or request.reason,
                   filled=booked.filled_quantity, amount=request.quantity,
                   limit_price=request.limit_price, trigger_price=request.trigger_price)

    # --- reservations and protection -------------------------------------------------------------

    def _reserved_cash(self) -> float:
        """What open buys may still spend, at their price with the fee."""
        return self._orders.reserved_cash(
            lambda request: self._gateway.sizing(request.asset, OrderSide.BUY, request.price)[1])

    def _set_protection(self, asset: str, protection: Protection | None) -> None:
        if self._protections.get(asset) == protection:
            return
        if protection is None:
            self._protections.pop(asset, None)
        else:
            self._protections[asset] = protection
        self._journal.save_protection(asset, protection)

    def _cancel_protection(self, asset: str, timestamp: datetime) -> None:
        for order in self._orders.protective(asset):
            if order.booked.status.working:
                self.cancel(order.request.client_order_id, timestamp)

    def _keep_protection(self, asset: str, timestamp: datetime) -> None:
        """The position in asset holds exactly the protection asked for it: a stop (and take-profit)
        covering what is held, none once nothing (or dust) is held; nothing is placed while one of
        its orders is unsettled (it may exist already)."""
        protection = self._protections.get(asset)
        mine = self._orders.protective(asset)
        if any(order.booked.status in UNSETTLED for order in mine):
            return
        held = self.ledger.position(asset).qty
        covered = held - self._orders.selling(asset)
        if protection is None or covered <= 0 or held < self.ledger.minimum_quantity(asset):
            for order in mine:
                self.cancel(order.request.client_order_id, timestamp)
            # Dropped once the position is gone, no entry is pending and no protective order is left
            # open (one whose cancel failed is cancelled again on the next candle, never forgotten).
            if held <= 0 and protection is not None and not self._orders.protective(asset) \
                    and not self._orders.entry_pending(asset):
                self._set_protection(asset, None)
            return
        # Compared as the market takes them (on the tick and the lot), as the orders were placed:
        # a protection asked off the tick is not amended on every candle.
        rules = self._gateway.market_rules(asset)
        wanted = {OrderType.STOP_LOSS: rules.trigger_price(protection.stop_price)}
        if protection.take_profit_price is not None:
            wanted[OrderType.TAKE_PROFIT] = rules.trigger_price(protection.take_profit_price)
        for order in mine:
            kind = order.request.order_type
            if kind not in wanted:
                self.cancel(order.request.client_order_id, timestamp)
                continue
            trigger = wanted.pop(kind)
            quantity = rules.quantity(order.booked.filled_quantity + covered)
            if order.request.trigger_price != trigger or abs(order.request.quantity - quantity) > quantity * 1e-9:
                self.amend(order.request.client_order_id, quantity=quantity, trigger_price=trigger)
        price = self.ledger.last_price(asset) or self.ledger.position(asset).avg_entry_price
        for kind, trigger in wanted.items():
            if self.ledger.position(asset).qty != held:
                return  # the order placed before filled at once (a stop already passed): all changed
            reason = f"protective {'stop' if kind is OrderType.STOP_LOSS else 'take-profit'} at {trigger:.2f}"
            self._place(OrderDTO(asset=asset, side=OrderSide.SELL, quantity=covered, reference_price=price,
                                 reason=reason, order_type=kind, trigger_price=trigger), timestamp, protective=True)


def _on_the_tick(order: OrderDTO, rules: MarketRules) -> OrderDTO:
    """A resting order's prices as the market takes them (MarketRules: a limit never worse for the
    order, a trigger and a trailing offset on the nearest tick)."""
    if rules.price_increment is None:
        return order
    buy = order.side is OrderSide.BUY
    return order.model_copy(update={
        "limit_price": None if order.limit_price is None else rules.limit_price(order.limit_price, buy),
        "trigger_price": None if order.trigger_price is None else rules.trigger_price(order.trigger_price),
        "trailing_offset": None if order.trailing_offset is None else rules.trigger_price(order.trailing_offset),
    })
