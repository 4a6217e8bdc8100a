"""The venue: what an operation asks of this exchange, built from one client per account."""

import threading

from backend.interfaces.order_gateway import IOrderGateway
from backend.market_data import TickSource
from backend.venues.base import Venue
from backend.venues.template.client import TemplateClient, read_credentials
from backend.venues.template.execution import TemplateOrderGateway
from backend.venues.template.market_data import TemplateMarketData
from backend.venues.template.settings import TemplateSettings


class TemplateVenue(Venue[TemplateSettings]):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__(stop)
        self._clients: dict[tuple[str, str | None], TemplateClient] = {}

    def check_credentials(self, environment: TemplateSettings) -> None:
        read_credentials(environment)

    def tick_source(self, environment: TemplateSettings) -> TickSource:
        return TemplateMarketData(environment, self._client(environment))

    def order_gateway(self, environment: TemplateSettings, link_id: str) -> IOrderGateway:
        return TemplateOrderGateway(self._client(environment), link_id, environment.order_wait_seconds)

    def _client(self, environment: TemplateSettings) -> TemplateClient:
        client = TemplateClient(environment, with_credentials=environment.mode == "live", stop=self._stop)
        key = (client.url, client.credentials[0] if client.credentials else None)
        return self._clients.setdefault(key, client)
