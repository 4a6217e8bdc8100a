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
"""

import threading
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import ccxt
import structlog

from backend.dtos import OrderSide, OrderStatus
from backend.errors import FatalExchangeError, OrderNotPlacedError, OrderRejectedError
from backend.interfaces.order_gateway import IOrderGateway, OrderOutcome, OrderRequest
from backend.venues.kraken.client import (
    AccountClient,
    RequestNotSent,
    describe_error,
    is_key_rejected,
    root_cause,
    translate_error,
)

log = structlog.get_logger(__name__)

DONE_STATUSES = {"closed", "canceled", "expired", "rejected"}
# Kraken lists every order it accepted, by cl_ord_id, within seconds. One it still does not know
# this long after it was journaled was never placed (the daemon died before sending it, say).
NEVER_PLACED_AFTER = timedelta(minutes=2)


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
    ) -> None:
        self._client = client
        self.venue_account = client
        self._tag = tag
        self._stop = stop
        self._fill_wait_seconds = fill_wait_seconds
        self._poll_seconds = poll_seconds
        self._lookup_attempts = lookup_attempts

    def sizing(self, asset: str, side: OrderSide, reference_price: float) -> tuple[float, float]:
        self._client.load_markets()  # loaded by the start-up check; cached by ccxt after that
        return reference_price, float(self._client.market(asset).get("taker") or 0.0)

    def minimum_quantity(self, asset: str) -> float:
        self._client.load_markets()
        return float(self._client.market(asset)["limits"]["amount"]["min"] or 0.0)

    def new_client_order_id(self) -> str:
        """A long UUID whose first group is the link's tag (Kraken's cl_ord_id takes "32 hex characters
        separated with 4 dashes"): unique, and attributable to the link among the account's orders."""
        random = uuid.uuid4().hex
        return f"{self._tag}-{random[8:12]}-{random[12:16]}-{random[16:20]}-{random[20:]}"

    def execute(self, request: OrderRequest) -> OrderOutcome:
        params = {"oflags": "fciq", "cl_ord_id": request.client_order_id}
        try:
            if request.side is OrderSide.BUY:
                cost = float(self._client.cost_to_precision(request.asset, request.quantity * request.reference_price))
                placed = self._client.create_market_buy_order_with_cost(request.asset, cost, params=params)
            else:
                # A position is a sum of fills in whole lots, held as a float a hair below or above
                # it (0.7 + 0.1 == 0.7999999999999999): nudged up before truncating to the lot, so
                # selling all of it sells all of it instead of leaving one lot behind as dust.
                amount = float(self._client.amount_to_precision(request.asset, request.quantity * (1 + 1e-12)))
                placed = self._client.create_order(request.asset, "market", "sell", amount, params=params)
        except RequestNotSent as error:  # the daemon stopped before the request went out
            return OrderOutcome(OrderStatus.REJECTED, reason=f"never sent: {error}")
        except ccxt.BaseError as error:
            if is_key_rejected(error):  # refused before the order existed: nothing executed
                raise OrderNotPlacedError(root_cause(error, self._client)) from None
            if isinstance(translate_error(error, self._client), OrderRejectedError):
                return OrderOutcome(OrderStatus.REJECTED, reason=describe_error(error, self._client))
            # The order may or may not exist: find out, never send it again.
            log.warning("order_reply_lost", client_order_id=request.client_order_id,
                        error=describe_error(error, self._client))
            return self._look_up(request, why=f"AddOrder failed: {describe_error(error, self._client)}")[0]
        if not placed.get("id"):  # an answer without the order's id tells nothing: find out
            log.warning("order_reply_unreadable", client_order_id=request.client_order_id)
            return self._look_up(request, why="AddOrder answered without an order id")[0]
        return self._await_fill(request, str(placed["id"]))

    def settle(self, request: OrderRequest) -> OrderOutcome:
        outcome, kraken_answered = self._look_up(request, why="settling an order whose outcome was unknown")
        age = datetime.now(UTC) - request.journaled_at
        not_listed = outcome.status is OrderStatus.UNKNOWN and outcome.exchange_order_id is None
        if not_listed and kraken_answered and age > NEVER_PLACED_AFTER:
            return OrderOutcome(OrderStatus.REJECTED, reason=f"never placed: Kraken does not know its cl_ord_id "
                                f"{age.total_seconds():.0f} s after it was journaled")
        return outcome

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
                            fee=self._fee_in_quote(order, request.asset, price), exchange_order_id=order_id)

    def _fee_in_quote(self, order: dict, symbol: str, price: float) -> float:
        fee = order.get("fee") or {}
        cost = float(fee.get("cost") or 0)
        if fee.get("currency") == self._client.market(symbol)["base"]:
            return cost * price  # charged in base despite fciq: book its quote value
        return cost

    def _raise_if_fatal(self, error: ccxt.BaseError) -> None:
        translated = translate_error(error, self._client)
        if isinstance(translated, FatalExchangeError):
            raise translated from None
