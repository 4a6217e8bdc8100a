"""Real orders for one strategy link, through its account's shared client.

Invariants (see backend/venues/kraken/execution.py): an order is sent once and only once; it
carries a client order id that names its link, so it can be attributed and looked up; a refusal
the exchange states plainly is REJECTED; an outcome that cannot be told is UNKNOWN and is settled
by looking the order up, never by sending it again.
"""

from backend.dtos import OrderSide
from backend.interfaces.order_gateway import IOrderGateway, OrderOutcome, OrderRequest
from backend.venues.template.client import TemplateClient


class TemplateOrderGateway(IOrderGateway):
    def __init__(self, client: TemplateClient, link_id: str, fill_wait_seconds: float) -> None:
        self.venue_account = client  # gateways on one account share it (reconciliation adds them up)
        self._link_id = link_id
        self._fill_wait_seconds = fill_wait_seconds

    def sizing(self, asset: str, side: OrderSide, reference_price: float) -> tuple[float, float]:
        raise NotImplementedError("the worst price a market order may fill at, and the fee rate")

    def execute(self, request: OrderRequest) -> OrderOutcome:
        raise NotImplementedError("send once; FILLED, REJECTED or UNKNOWN")

    def settle(self, request: OrderRequest) -> OrderOutcome:
        raise NotImplementedError("look the order up by its client order id; never re-send it")
