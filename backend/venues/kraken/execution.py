"""Kraken spot market orders for one strategy link, through its account's shared client.

Invariants: an order is sent once and only once (AddOrder is never retried); every order carries
its own `cl_ord_id` and no `userref` (Kraken refuses an order with both), and that id begins with
the link's tag, so an exchange order can always be attributed to its link and looked up; a refusal
Kraken states plainly (EOrder:*, EGeneral:Invalid arguments) is a rejection; a failure whose outcome
cannot be told (lost reply, timeout, an unreadable answer, an order the exchange does not list yet)
is answered by looking the order up, never by sending it again, and stays UNKNOWN if the lookup
cannot tell either, or if the daemon stops meanwhile; market buys are sent as a quote amount
(`viqc`) that the account has checked it can pay, fee included, so a fill above the close cannot
overspend.

Resting orders (limit, stop-loss, take-profit and their *-limit forms, trailing-stop) keep the same rules: sent once,
a plain refusal is REJECTED, an unanswered AddOrder is looked up by cl_ord_id. Every outcome of one is
cumulative and only moves forward (`_remember`: a done state over a working one, else the larger
fill), whichever path (AddOrder, CancelOrder, AmendOrder, the executions channel, a REST check) saw
it first. `poll` reads fills from REST (QueryOrders: cumulative quantity, average price and fee);
the executions channel (executions.py) only tells which orders moved, and REST checks every working
order at the first poll (orders done while the daemon was down), after each (re)connect of the
channel, while it is down or off, and each `check_seconds` for an order it has not reported on.
"""

import threading
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import ccxt
import structlog

from backend.dtos import OrderSide, OrderStatus, OrderType, TimeInForce
from backend.errors import FatalExchangeError, OrderNotPlacedError, OrderRejectedError
from backend.interfaces.ohlcv_provider import Candle
from backend.interfaces.order_gateway import IOrderGateway, OrderOutcome, OrderRequest, random_uuid_hex
from backend.market_data.market_rules import LOT_NUDGE, MarketRules
from backend.venues.kraken.client import (
    AccountClient,
    RequestNotSent,
    describe_error,
    is_key_rejected,
    root_cause,
    translate_error,
)
from backend.venues.kraken.executions import ExecutionFeed
from backend.venues.kraken.market_rules import market_rules_of

log = structlog.get_logger(__name__)

DONE_STATUSES = {"closed", "canceled", "expired", "rejected"}
# Kraken lists every order it accepted, by cl_ord_id, within seconds. One it still does not know
# this long after it was journaled was never placed (the daemon died before sending it, say).
NEVER_PLACED_AFTER = timedelta(minutes=2)
QUERY_ORDERS_MAX_IDS = 20  # QueryOrders, txid: "Comma delimited list of transaction IDs ... (20 maximum)"
# A resting order as ccxt's Kraken order status says it is (REST: pending, open, closed, canceled, expired).
RESTING_STATUSES = {"closed": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED,
                    "rejected": OrderStatus.REJECTED}
STOPS = (OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT)


def link_tag(link_id: str) -> str:
    """A stable tag per strategy link, 8 hex digits: the first group of its orders' cl_ord_ids."""
    return f"{zlib.crc32(link_id.encode()):08x}"


class KrakenOrderGateway(IOrderGateway):
    def __init__(
        self,
        client: AccountClient,
        tag: str,
        stop: threading.Event,
        fill_wait_seconds: float = 5.0,
        poll_seconds: float = 0.5,
        lookup_attempts: int = 3,
        executions: ExecutionFeed | None = None,
        check_seconds: float = 60.0,
    ) -> None:
        self._client = client
        self.venue_account = client
        self._tag = tag
        self._stop = stop
        self._fill_wait_seconds = fill_wait_seconds
        self._poll_seconds = poll_seconds
        self._lookup_attempts = lookup_attempts
        self._executions = executions  # None: order updates over REST only
        self._check_seconds = check_seconds
        # Per resting order (client order id): the furthest outcome seen, and when it was last
        # checked over REST and last polled (time.monotonic()).
        self._known: dict[str, OrderOutcome] = {}
        self._checked_at: dict[str, float] = {}
        self._polled_at: dict[str, float] = {}
        self._checked_in_epoch: dict[str, int | None] = {}  # the channel's subscription at its last REST check
        self._last_seen: dict[str, dict] = {}  # the order as REST last showed it (ccxt's parse)
        self._rules: dict[str, MarketRules] = {}  # per asset, from the markets the client loaded

    def sizing(self, asset: str, side: OrderSide, reference_price: float) -> tuple[float, float]:
        self._client.load_markets()  # loaded by the start-up check; cached by ccxt after that
        return reference_price, float(self._client.market(asset).get("taker") or 0.0)

    def market_rules(self, asset: str) -> MarketRules:
        if asset not in self._rules:
            self._rules[asset] = market_rules_of(self._client, asset)
        return self._rules[asset]

    def new_client_order_id(self) -> str:
        """A long UUID whose first group is the link's tag (Kraken's cl_ord_id takes "32 hex characters
        separated with 4 dashes"): unique, and attributable to the link among the account's orders."""
        digits = random_uuid_hex()
        return f"{self._tag}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"

    def execute(self, request: OrderRequest) -> OrderOutcome:
        params: dict[str, object] = {"oflags": "fciq", "cl_ord_id": request.client_order_id}
        try:
            if request.resting:
                placed = self._add_resting(request, params)
            elif request.side is OrderSide.BUY:
                cost = float(self._client.cost_to_precision(request.asset, request.quantity * request.reference_price))
                placed = self._client.create_market_buy_order_with_cost(request.asset, cost, params=params)
            else:
                amount = float(self._client.amount_to_precision(request.asset, request.quantity * LOT_NUDGE))
                placed = self._client.create_order(request.asset, "market", "sell", amount, params=params)
        except RequestNotSent as error:  # the daemon stopped before the request went out
            return OrderOutcome(OrderStatus.REJECTED, reason=f"never sent: {error}")
        except ccxt.BaseError as error:
            if is_key_rejected(error):  # refused before the order existed: nothing executed
                raise OrderNotPlacedError(root_cause(error, self._client)) from None
            translated = translate_error(error, self._client)
            if isinstance(translated, OrderRejectedError):
                return OrderOutcome(OrderStatus.REJECTED, reason=str(translated))
            # The order may or may not exist: find out, never send it again.
            log.warning("order_reply_lost", client_order_id=request.client_order_id,
                        error=describe_error(error, self._client))
            return self._look_up(request, why=f"AddOrder failed: {describe_error(error, self._client)}")[0]
        if not placed.get("id"):  # an answer without the order's id tells nothing: find out
            log.warning("order_reply_unreadable", client_order_id=request.client_order_id)
            return self._look_up(request, why="AddOrder answered without an order id")[0]
        if request.resting:
            # Placed: one look says whether it executed at once (a marketable limit, an IOC, a
            # trigger already passed); if that look fails, it rests, as far as anyone can tell yet.
            order_id = str(placed["id"])
            return self._state(request, order_id) or self._remember(
                request, OrderOutcome(OrderStatus.OPEN, exchange_order_id=order_id))
        return self._await_fill(request, str(placed["id"]))

    def _add_resting(self, request: OrderRequest, params: dict[str, object]) -> dict:
        """AddOrder for a resting order (docs.kraken.com/api-reference/trading/add-order), through
        ccxt's create_order, which rounds price and triggers with price_to_precision: ordertype
        limit / stop-loss / take-profit / *-limit, "price: Limit price for limit orders; trigger price
        for stop-loss, stop-loss-limit, take-profit, take-profit-limit", "price2: Limit price for
        stop-loss-limit and take-profit-limit orders" (ccxt: type "limit" with stopLossPrice /
        takeProfitPrice); a trailing-stop's price is its offset, "Trailing Stops: Must use a relative
        price for this field, namely the `+` prefix ... The `%` suffix also works for these order
        types" (ccxt: trailingAmount / trailingPercent send "+N" / "+N%" and trigger "last", the
        reference price the simulator and the fake trail too); timeinforce GTC / IOC / GTD with
        "expiretm: <n> = unix timestamp of expiration time"; oflags "post = post-only order
        (available when ordertype = limit)". The account checked the amount against the pair's
        minimum (`market_rules`) before it came here."""
        asset, kind = request.asset, request.order_type
        amount = float(self._client.amount_to_precision(asset, request.quantity * LOT_NUDGE))
        if kind.has_trigger:
            params["stopLossPrice" if kind in STOPS else "takeProfitPrice"] = request.trigger_price
        elif request.trailing_offset is not None:
            params["trailingAmount"] = self._client.price_to_precision(asset, request.trailing_offset)
        elif request.trailing_offset_pct is not None:
            params["trailingPercent"] = f"{request.trailing_offset_pct:.10g}"
        if request.post_only:
            params["postOnly"] = True
        if request.time_in_force is TimeInForce.IOC:
            params["timeInForce"] = "IOC"
        elif request.time_in_force is TimeInForce.GTD and request.expires_at is not None:
            params.update(timeInForce="GTD", expiretm=str(int(request.expires_at.timestamp())))
        order_type = "limit" if kind.has_limit else "market"  # the trigger / trailing params name the type
        return self._client.create_order(asset, order_type, request.side.value, amount,
                                         request.limit_price, params=params)

    def settle(self, request: OrderRequest) -> OrderOutcome:
        outcome, kraken_answered = self._look_up(request, why="settling an order whose outcome was unknown")
        age = datetime.now(UTC) - request.journaled_at
        not_listed = outcome.status is OrderStatus.UNKNOWN and outcome.exchange_order_id is None
        if not_listed and kraken_answered and age > NEVER_PLACED_AFTER:
            return OrderOutcome(OrderStatus.REJECTED, reason=f"never placed: Kraken does not know its cl_ord_id "
                                f"{age.total_seconds():.0f} s after it was journaled")
        return outcome

    def cancel(self, request: OrderRequest, exchange_order_id: str | None) -> OrderOutcome:
        """CancelOrder (docs.kraken.com/api-reference/trading/cancel-order: "Cancel a particular open
        order (or set of open orders) by txid, userref or cl_ord_id"), then the order's state as
        QueryOrders tells it: CANCELED with what filled before, or FILLED when it filled first (Kraken
        answers "EOrder:Unknown order" to a cancel of an order no longer open: a lookup, not an
        error), or, when the cancel did not happen (refused, rate limited), the order still working;
        UNKNOWN when that cannot be told."""
        try:
            if exchange_order_id:
                self._client.cancel_order(exchange_order_id, request.asset)
            else:
                self._client.cancel_order("", request.asset, {"clientOrderId": request.client_order_id})
        except ccxt.OrderNotFound:
            pass  # not open any more: filled, expired or cancelled already; the lookup says which
        except RequestNotSent:
            return self._current(request, exchange_order_id)
        except ccxt.BaseError as error:
            self._raise_if_fatal(error)
            log.warning("order_cancel_failed", client_order_id=request.client_order_id, order_id=exchange_order_id,
                        error=describe_error(error, self._client), action="looking the order up")
        return self._current(request, exchange_order_id)

    def amend(self, request: OrderRequest, exchange_order_id: str | None, amended: OrderRequest) -> OrderOutcome:
        """AmendOrder in place through ccxt's edit_order (docs.kraken.com/api-reference/trading/amend-order:
        order_qty, limit_price, trigger_price of an open order; "The order identifiers assigned by
        Kraken and/or client will stay the same"), then the order's state as QueryOrders tells it.
        An amend refused or unanswered whose change the order does not show comes back UNKNOWN: the
        account keeps the order as it was and reads it again by lookup (never as amended)."""
        kind = request.order_type
        params: dict[str, object] = {}
        if amended.trigger_price != request.trigger_price:
            params["stopLossPrice" if kind in STOPS else "takeProfitPrice"] = amended.trigger_price
        quantity = amended.quantity * LOT_NUDGE if amended.quantity != request.quantity else None
        limit = amended.limit_price if amended.limit_price != request.limit_price else None
        order_id = exchange_order_id or self._order_id_of(request)
        try:
            if order_id is None:
                raise ccxt.OrderNotFound(f"no order with cl_ord_id {request.client_order_id} found")
            self._client.edit_order(order_id, request.asset, "limit" if kind.has_limit else "market",
                                    request.side.value, quantity, limit, params)
        except RequestNotSent:
            failure = "never sent: the daemon is stopping"
        except ccxt.BaseError as error:
            self._raise_if_fatal(error)
            failure = describe_error(error, self._client)
            log.warning("order_amend_failed", client_order_id=request.client_order_id, order_id=order_id,
                        error=failure, action="looking the order up")
        else:
            return self._current(request, order_id)
        now = self._current(request, order_id)
        if now.status.working and not self._shows(amended, self._last_seen.get(request.client_order_id)):
            return OrderOutcome(OrderStatus.UNKNOWN, exchange_order_id=order_id, reason=f"amend not applied: {failure}")
        return now

    def poll(self, orders: Sequence[tuple[OrderRequest, str | None]], symbol: str,
             candle: Candle) -> list[tuple[str, OrderOutcome]]:
        """The furthest known state of each working order (the account books what it has not): REST
        (QueryOrders) for every one at the first poll, after the executions channel (re)connected,
        while it is down or off; else for those it reported as moved, and those it has not reported
        on since the last poll once `check_seconds` passed since their last REST check."""
        feed = self._executions
        if feed is not None:
            feed.start()
        now = time.monotonic()
        # The channel's subscription now: an order checked over REST since it began is covered by it.
        epoch = feed.epoch if feed is not None and feed.connected else None
        due: list[tuple[OrderRequest, str | None]] = []
        for request, order_id in orders:
            cid = request.client_order_id
            known = self._known.get(cid)
            heard = feed.latest(order_id, cid) if feed is not None else None
            moved = heard is not None and (known is None or (heard.done and not known.status.done)
                                           or heard.cumulative_quantity > known.filled_quantity * (1 + 1e-9))
            quiet = heard is None or heard.heard_at <= self._polled_at.get(cid, float("-inf"))
            stale = now - self._checked_at.get(cid, float("-inf")) >= self._check_seconds
            covered = epoch is not None and self._checked_in_epoch.get(cid) == epoch
            if not covered or known is None or moved or (quiet and stale):
                due.append((request, order_id))
            self._polled_at[cid] = now
        self._check(due, epoch)
        changes = [(request.client_order_id, self._known[request.client_order_id]) for request, _ in orders
                   if request.client_order_id in self._known]
        for cid in [cid for cid, outcome in self._known.items() if outcome.status.done]:
            self._forget(cid)  # reported: the account keeps a done order no more (nor polls it)
        return changes

    def open_orders(self) -> list[str] | None:
        """The account's open orders whose cl_ord_id carries this link's tag."""
        try:
            orders = self._client.fetch_open_orders()
        except ccxt.BaseError as error:
            raise translate_error(error, self._client) from None
        mine = f"{self._tag}-"
        return [str(order["clientOrderId"]) for order in orders if str(order.get("clientOrderId")).startswith(mine)]

    def holdings(self) -> dict[str, float] | None:
        try:
            totals = self._client.fetch_balance().get("total") or {}
        except ccxt.BaseError as error:
            raise translate_error(error, self._client) from None
        return {currency: float(amount or 0) for currency, amount in totals.items()}

    # --- internals -------------------------------------------------------------------------------

    def _await_fill(self, request: OrderRequest, order_id: str) -> OrderOutcome:
        """Poll the placed order until it is done, the wait is over or a stop is requested."""
        deadline = time.monotonic() + self._fill_wait_seconds
        latest: dict | None = None
        while True:
            try:
                latest = self._client.fetch_order(order_id, request.asset)
            except ccxt.OrderNotFound:
                pass  # exchanges lag: an order just placed may not be listed yet
            except ccxt.BaseError as error:
                self._raise_if_fatal(error)
                log.warning("order_status_unavailable", order_id=order_id, error=describe_error(error, self._client))
            if latest is not None and latest.get("status") in DONE_STATUSES:
                return self._outcome(request, latest)
            if time.monotonic() >= deadline or self._stop.wait(self._poll_seconds):
                status = latest.get("status") if latest else "not listed yet"
                return OrderOutcome(OrderStatus.UNKNOWN, exchange_order_id=order_id,
                                    reason=f"placed, not done after waiting (status: {status})")

    def _look_up(self, request: OrderRequest, why: str) -> tuple[OrderOutcome, bool]:
        """Find the order by its cl_ord_id among open, then closed orders (a few tries); with
        whether Kraken answered a lookup at all (not finding the order means something then)."""
        params = {"clientOrderId": request.client_order_id}
        answered = False
        for attempt in range(self._lookup_attempts):
            if attempt and self._stop.wait(self._poll_seconds):
                break  # stopping: the order stays unknown, settled after the restart
            try:
                found = self._client.fetch_open_orders(request.asset, params=params) or \
                    self._client.fetch_closed_orders(request.asset, params=params)
            except RequestNotSent:
                break
            except ccxt.BaseError as error:
                self._raise_if_fatal(error)
                log.warning("order_lookup_failed", client_order_id=request.client_order_id,
                            error=describe_error(error, self._client), attempt=attempt + 1)
                continue
            answered = True
            matching = [o for o in found if o.get("clientOrderId") == request.client_order_id]
            if matching:
                order = matching[0]
                if request.resting:
                    return self._remember(request, self._resting_outcome(request, order)), answered
                if order.get("status") in DONE_STATUSES:
                    return self._outcome(request, order), answered
                return self._await_fill(request, str(order["id"])), answered
        return OrderOutcome(OrderStatus.UNKNOWN, reason=f"{why}; not found by its cl_ord_id yet"), answered

    def _outcome(self, request: OrderRequest, order: dict) -> OrderOutcome:
        filled = float(order.get("filled") or 0)
        order_id = str(order["id"])
        if filled <= 0:
            return OrderOutcome(OrderStatus.REJECTED, exchange_order_id=order_id,
                                reason=f"order {order.get('status')} without a fill")
        price = float(order.get("average") or (order.get("cost") or 0) / filled or request.reference_price)
        # A sell's volume is in base, so a closed one that executed less was cut short (e.g. market
        # price protection); a buy's is a quote amount (viqc), which only its status can tell.
        cut_short = request.side is OrderSide.SELL and filled < float(order.get("amount") or 0) * (1 - 1e-9)
        status = OrderStatus.FILLED if order.get("status") == "closed" and not cut_short else (
            OrderStatus.EXPIRED if order.get("status") == "expired" else OrderStatus.CANCELED)
        return OrderOutcome(status, filled_quantity=filled, average_price=price,
                            fee=self._fee_in_quote(order), exchange_order_id=order_id)

    def _resting_outcome(self, request: OrderRequest, order: dict) -> OrderOutcome:
        """A resting order's cumulative state from ccxt's parse of QueryOrders / OpenOrders /
        ClosedOrders (vol_exec, cost, fee; status pending / open / closed / canceled / expired)."""
        filled = float(order.get("filled") or 0)
        price = float(order.get("average") or 0) or (float(order.get("cost") or 0) / filled if filled else 0.0)
        status = RESTING_STATUSES.get(str(order.get("status")))
        if status is None:  # pending or open: working
            status = OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN
        reason = (order.get("info") or {}).get("reason") if status.done and status is not OrderStatus.FILLED else None
        self._last_seen[request.client_order_id] = order
        return OrderOutcome(status, filled_quantity=filled, average_price=price,
                            fee=self._fee_in_quote(order) if filled else 0.0,
                            exchange_order_id=str(order["id"]), reason=reason)

    def _state(self, request: OrderRequest, order_id: str) -> OrderOutcome | None:
        """The order's state by QueryOrders (remembered), or None when Kraken does not answer it."""
        try:
            order = self._client.fetch_order(order_id, request.asset)
        except RequestNotSent:
            return None
        except ccxt.BaseError as error:
            self._raise_if_fatal(error)
            log.warning("order_status_unavailable", order_id=order_id, error=describe_error(error, self._client))
            return None
        return self._remember(request, self._resting_outcome(request, order))

    def _current(self, request: OrderRequest, order_id: str | None) -> OrderOutcome:
        """The order's state now (by its id, else by its cl_ord_id); UNKNOWN when it cannot be told."""
        if order_id:
            state = self._state(request, order_id)
            if state is not None:
                return state
            return OrderOutcome(OrderStatus.UNKNOWN, exchange_order_id=order_id,
                                reason="its state could not be looked up")
        return self._look_up(request, why="looking up an order without its exchange id")[0]

    def _order_id_of(self, request: OrderRequest) -> str | None:
        known = self._known.get(request.client_order_id)
        return known.exchange_order_id if known is not None else None

    def _check(self, orders: Sequence[tuple[OrderRequest, str | None]], epoch: int | None) -> None:
        """REST checks of the orders (QueryOrders, 20 ids a request; by cl_ord_id the ones without an
        id), remembered with when and in which subscription of the channel (epoch) they were made;
        one that could not be checked is checked again on the next poll."""
        by_id = {order_id: request for request, order_id in orders if order_id}
        ids = list(by_id)
        for start in range(0, len(ids), QUERY_ORDERS_MAX_IDS):
            chunk = ids[start:start + QUERY_ORDERS_MAX_IDS]
            try:
                found = self._client.fetch_orders_by_ids(chunk, by_id[chunk[0]].asset)
            except RequestNotSent:
                return
            except ccxt.BaseError as error:
                self._raise_if_fatal(error)
                log.warning("order_status_unavailable", order_ids=chunk, error=describe_error(error, self._client),
                            action="checked again on the next candle")
                continue
            for order in found:
                request = by_id.get(str(order.get("id")))
                if request is not None:
                    self._remember(request, self._resting_outcome(request, order))
                    self._checked(request, epoch)
        for request, order_id in orders:
            if not order_id and self._look_up(request, why="checking an order without its exchange id")[0].status \
                    is not OrderStatus.UNKNOWN:
                self._checked(request, epoch)

    def _checked(self, request: OrderRequest, epoch: int | None) -> None:
        self._checked_at[request.client_order_id] = time.monotonic()
        self._checked_in_epoch[request.client_order_id] = epoch

    def _remember(self, request: OrderRequest, outcome: OrderOutcome) -> OrderOutcome:
        """The order's furthest outcome so far: a done state over a working one, else the larger
        cumulative fill (a late or repeated answer never moves an order back)."""
        cid = request.client_order_id
        known = self._known.get(cid)
        if outcome.status is OrderStatus.UNKNOWN:
            return known or outcome
        if known is None or _further(outcome, known):
            self._known[cid] = outcome
        return self._known[cid]

    def _forget(self, client_order_id: str) -> None:
        for memory in (self._known, self._checked_at, self._checked_in_epoch, self._polled_at, self._last_seen):
            memory.pop(client_order_id, None)

    @staticmethod
    def _shows(amended: OrderRequest, order: dict | None) -> bool:
        """The order as last looked up carries the amended quantity and prices."""
        if order is None:
            return False
        def same(wanted: float | None, seen: object) -> bool:
            return wanted is None or (seen is not None and abs(float(seen) - wanted) <= abs(wanted) * 1e-6)  # type: ignore[arg-type]
        trigger = order.get("triggerPrice") or order.get("stopLossPrice") or order.get("takeProfitPrice")
        limit = order.get("price") if amended.order_type.has_limit else None
        return (same(amended.quantity, order.get("amount")) and same(amended.trigger_price, trigger)
                and (not amended.order_type.has_limit or same(amended.limit_price, limit)))

    @staticmethod
    def _fee_in_quote(order: dict) -> float:
        """The order's fee in quote as Kraken reports it (QueryOrders, fee: "total fee (quote
        currency)"), even when it was charged in base (oflags fcib), which ccxt then labels base."""
        return float((order.get("fee") or {}).get("cost") or 0)

    def _raise_if_fatal(self, error: ccxt.BaseError) -> None:
        translated = translate_error(error, self._client)
        if isinstance(translated, FatalExchangeError):
            raise translated from None


def _further(new: OrderOutcome, old: OrderOutcome) -> bool:
    """new is further along than old: done where old works, else more filled."""
    if new.status.done != old.status.done:
        return new.status.done
    return not new.status.done and new.filled_quantity > old.filled_quantity * (1 + 1e-12)  # a done one never changes
