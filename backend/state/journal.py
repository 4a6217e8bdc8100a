"""A strategy link's journal in the state store (the link is bound here, never passed by callers)."""

from datetime import UTC, datetime

from backend.dtos import AccountState, FillDTO, OrderSide, OrderStatus
from backend.interfaces.journal import IAccountJournal
from backend.interfaces.order_gateway import OrderOutcome, OrderRequest
from backend.state.store import FillRecord, OrderRecord, OrderState, StateStore

ORDER_STATES = {
    OrderStatus.FILLED: OrderState.FILLED,
    OrderStatus.REJECTED: OrderState.REJECTED,
    OrderStatus.UNKNOWN: OrderState.UNKNOWN,
}


class StoreJournal(IAccountJournal):
    def __init__(self, store: StateStore, link: str) -> None:
        self._store = store
        self._link = link

    def record_intent(self, request: OrderRequest, reason: str) -> None:
        self._store.record_intent(OrderRecord(
            request.client_order_id, self._link, request.asset, request.side.value, request.quantity,
            request.reference_price, reason, OrderState.INTENDED, created_at=request.journaled_at,
        ))

    def record_outcome(self, request: OrderRequest, outcome: OrderOutcome, fill: FillDTO | None,
                       account: AccountState) -> None:
        if fill is None:
            self._store.update_order(request.client_order_id, ORDER_STATES[outcome.status],
                                     outcome.exchange_order_id, outcome.reason)
            return
        self._store.record_fill(self._link, FillRecord(
            request.client_order_id, fill.asset, fill.side.value, fill.quantity, fill.price, fill.fee,
            fill.timestamp, fill.order_id,
        ), account, OrderState.FILLED)

    def fill_booked(self, exchange_order_id: str) -> bool:
        return self._store.has_fill(self._link, exchange_order_id)

    def unsettled(self) -> list[OrderRequest]:
        return [
            OrderRequest(order.client_order_id, order.asset, OrderSide(order.side), order.quantity,
                         order.reference_price, order.created_at or datetime.now(UTC), order.reason)
            for order in self._store.unsettled_orders(self._link)
        ]

    def save(self, account: AccountState, symbol: str, candle_time: datetime) -> None:
        self._store.save_account(self._link, account, cursor=(symbol, candle_time))

    def cursors(self) -> dict[str, datetime]:
        return self._store.cursors(self._link)
