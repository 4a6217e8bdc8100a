import functools
import threading
from collections.abc import Callable

from backend.interfaces.order_gateway import IOrderGateway
from backend.market_data import TickSource
from backend.market_data.market_rules import MarketRules
from backend.venues.base import Venue
from backend.venues.kraken.client import AccountClient, make_kraken_client, read_credentials
from backend.venues.kraken.execution import KrakenOrderGateway, link_tag
from backend.venues.kraken.executions import ExecutionFeed
from backend.venues.kraken.market_data import KrakenLiveSource
from backend.venues.kraken.market_rules import market_rules_of
from backend.venues.kraken.settings import KrakenSettings
from backend.venues.kraken.streaming import KrakenStreamSource


class KrakenVenue(Venue[KrakenSettings]):
    """Kraken: one AccountClient per (URL, API key) for everything that trades with that key, and
    one public client per URL for market data that needs no key (paper trading); one executions
    channel per AccountClient (it opens with the first poll of a resting order)."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__(stop)
        self._clients: dict[tuple[str, str | None], AccountClient] = {}
        self._feeds: dict[int, ExecutionFeed] = {}  # by id() of the AccountClient it serves

    def check_credentials(self, environment: KrakenSettings) -> None:
        read_credentials(environment)

    def tick_source(self, environment: KrakenSettings) -> TickSource:
        client = self._client(environment)
        private = client if environment.mode == "live" else None
        source = KrakenStreamSource if environment.market_data == "websocket" else KrakenLiveSource
        return source(environment, client=client, private_client=private)

    def order_gateway(self, environment: KrakenSettings, link_id: str) -> IOrderGateway:
        client = self._client(environment)
        url = environment.order_updates_url
        feed = None
        if url is not None:
            feed = self._feeds.setdefault(id(client), ExecutionFeed(client, url or None, self._stop))
        return KrakenOrderGateway(client, link_tag(link_id), self._stop,
                                  fill_wait_seconds=environment.order_wait_seconds,
                                  executions=feed, check_seconds=environment.order_check_seconds)

    def market_rules(self, environment: KrakenSettings) -> Callable[[str], MarketRules]:
        client = self._client(environment)  # the tick source's: its start-up check loaded the markets
        return functools.partial(market_rules_of, client)

    def _client(self, environment: KrakenSettings) -> AccountClient:
        with_credentials = environment.mode == "live"
        client = make_kraken_client(environment, with_credentials=with_credentials, stop=self._stop)
        key = (str(client.urls["api"]["private"]), client.apiKey or None)
        return self._clients.setdefault(key, client)
