"""Routes market orders to a real exchange through ccxt and books the confirmed fills."""

import time
from datetime import datetime

import ccxt
import structlog

from backend.dtos import FillDTO, OrderDTO, OrderSide
from backend.interfaces import IBroker
from backend.market_data.kraken_client import describe_error
from backend.portfolio.ledger import Ledger

log = structlog.get_logger(__name__)

DONE_STATUSES = {"closed", "canceled", "expired", "rejected"}


class ExchangeBroker(IBroker):
    """Places spot market orders on the exchange and applies the exchange's fill to the ledger.

    Like the simulator it never lets the strategy's ledger go short or spend more cash than it
    has (sized on the reference price and the market's taker fee), so strategies sharing one
    exchange account cannot touch each other's coins. A create that fails is never retried:
    a duplicate order is worse than a missed one.
    """

    def __init__(
        self,
        ledger: Ledger,
        client: ccxt.Exchange,
        fill_poll_attempts: int = 20,
        fill_poll_seconds: float = 0.5,
    ) -> None:
        self._ledger = ledger
        self._client = client
        self._fill_poll_attempts = fill_poll_attempts
        self._fill_poll_seconds = fill_poll_seconds

    def submit(self, order: OrderDTO, timestamp: datetime) -> FillDTO | None:
        context = {"asset": order.asset, "side": order.side.value}
        try:
            self._client.load_markets()
            fee_rate = self._client.market(order.asset).get("taker") or 0.0
            quantity = self._ledger.capped_quantity(
                order.asset, order.side, order.quantity, order.reference_price, fee_rate
            )
            if quantity <= 0:
                log.warning("order_rejected", **context,
                            reason="no cash" if order.side is OrderSide.BUY else "no position")
                return None
            amount = float(self._client.amount_to_precision(order.asset, quantity))
            # fciq: Kraken charges the fee in the quote currency, which is what the ledger books.
            placed = self._client.create_order(order.asset, "market", order.side.value, amount,
                                               params={"oflags": "fciq"})
        except (ccxt.InsufficientFunds, ccxt.InvalidOrder) as error:
            log.warning("order_rejected", **context, reason=describe_error(error, self._client))
            return None
        except (ccxt.AuthenticationError, ccxt.BadSymbol):
            raise  # configuration problems: stop instead of failing every order
        except ccxt.BaseError as error:
            # The order may or may not exist on the exchange; never re-send it blindly.
            log.error("order_not_placed", **context, error=describe_error(error, self._client))
            return None

        order_id = str(placed["id"])
        final = self._await_fill(order_id, order.asset) or {}
        status = final.get("status")
        filled = float(final.get("filled") or 0)
        if filled <= 0:
            if status in DONE_STATUSES:  # e.g. canceled by the exchange without any fill
                log.warning("order_rejected", **context, order_id=order_id, reason=f"order {status}")
            else:  # placed, but its fill could not be confirmed: needs a look on the exchange
                log.error("order_fill_unconfirmed", **context, order_id=order_id, status=status)
            return None
        if status != "closed":
            log.warning("order_partially_filled", **context, order_id=order_id, status=status,
                        filled=filled, amount=amount)

        price = float(final.get("average") or (final.get("cost") or 0) / filled or order.reference_price)
        fill = FillDTO(
            asset=order.asset,
            side=order.side,
            quantity=filled,
            price=price,
            fee=self._fee_in_quote(final, order.asset, price),
            timestamp=timestamp,
            order_id=order_id,
        )
        self._ledger.apply_fill(fill)
        return fill

    def _await_fill(self, order_id: str, symbol: str) -> dict | None:
        """Poll the order until it is done (bounded); None when it could never be read."""
        latest: dict | None = None
        for attempt in range(self._fill_poll_attempts):
            try:
                latest = self._client.fetch_order(order_id, symbol)
            except ccxt.OperationFailed as error:  # reads are safe to retry
                log.warning("order_status_unavailable", order_id=order_id,
                            error=describe_error(error, self._client))
            else:
                if latest.get("status") in DONE_STATUSES:
                    return latest
            if attempt + 1 < self._fill_poll_attempts:
                time.sleep(self._fill_poll_seconds)
        return latest

    def _fee_in_quote(self, final: dict, symbol: str, price: float) -> float:
        fee = final.get("fee") or {}
        cost = float(fee.get("cost") or 0)
        if fee.get("currency") == self._client.market(symbol)["base"]:
            return cost * price  # charged in base despite fciq: book its quote value
        return cost
