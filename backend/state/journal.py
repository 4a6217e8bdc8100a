"""A strategy link's journal in the state store (the link is bound here, never passed by callers)."""

from datetime import UTC, datetime

from backend.dtos import AccountState, FillDTO, OrderSide, OrderStatus, OrderType, TimeInForce
from backend.interfaces.journal import IAccountJournal, JournaledOrder, Protection
from backend.interfaces.order_gateway import OrderOutcome, OrderRequest
from backend.state.store import FillRecord, OrderRecord, StateStore


class StoreJournal(IAccountJournal):
    def __init__(self, store: StateStore, link: str) -> None:
        self._store = store
        self._link = link

    def record_intent(self, request: OrderRequest) -> None:
        self._store.record_intent(OrderRecord(
            request.client_order_id, self._link, request.asset, request.side.value, request.quantity,
            request.reference_price, request.reason, OrderStatus.PENDING, created_at=request.journaled_at,
            order_type=request.order_type.value, limit_price=request.limit_price,
            trigger_price=request.trigger_price, time_in_force=request.time_in_force.value,
            expires_at=request.expires_at, post_only=request.post_only, protective=request.protective,
            placed_at=request.placed_at, trailing_offset=request.trailing_offset,
            trailing_offset_pct=request.trailing_offset_pct,
        ))

    def record_update(self, request: OrderRequest, booked: OrderOutcome, fill: FillDTO | None,
                      account: AccountState) -> None:
        cumulative = (booked.filled_quantity, booked.average_price, booked.fee)
        if fill is None:
            self._store.update_order(request.client_order_id, booked.status, booked.exchange_order_id, booked.reason,
                                     cumulative, (request.quantity, request.limit_price, request.trigger_price))
            return
        self._store.record_fill(self._link, FillRecord(
            request.client_order_id, fill.asset, fill.side.value, fill.quantity, fill.price, fill.fee,
            fill.timestamp, fill.order_id,
        ), account, booked.status, cumulative)

    def booked(self, client_order_id: str) -> OrderOutcome | None:
        order = self._store.order(client_order_id)
        return None if order is None else _booked(order)

    def open_orders(self) -> list[JournaledOrder]:
        return [JournaledOrder(_request(order), _booked(order)) for order in self._store.open_orders(self._link)]

    def save(self, account: AccountState, symbol: str, candle_time: datetime) -> None:
        self._store.save_account(self._link, account, cursor=(symbol, candle_time))

    def cursors(self) -> dict[str, datetime]:
        return self._store.cursors(self._link)

    def protections(self) -> dict[str, Protection]:
        return {asset: Protection(stop, take_profit)
                for asset, (stop, take_profit) in self._store.protections(self._link).items()}

    def save_protection(self, asset: str, protection: Protection | None) -> None:
        self._store.save_protection(self._link, asset, None if protection is None else
                                    (protection.stop_price, protection.take_profit_price))


def _request(order: OrderRecord) -> OrderRequest:
    return OrderRequest(
        order.client_order_id, order.asset, OrderSide(order.side), order.quantity, order.reference_price,
        order.created_at or datetime.now(UTC), order.reason, OrderType(order.order_type), order.limit_price,
        order.trigger_price, TimeInForce(order.time_in_force), order.expires_at, order.post_only, order.placed_at,
        order.protective, order.trailing_offset, order.trailing_offset_pct,
    )


def _booked(order: OrderRecord) -> OrderOutcome:
    return OrderOutcome(order.state, order.filled_quantity, order.average_price, order.fee, order.exchange_order_id,
                        order.detail)
