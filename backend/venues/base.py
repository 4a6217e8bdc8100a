import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, TypeVar

from backend.config.schema import LiveEnvironment
from backend.interfaces.order_gateway import IOrderGateway
from backend.market_data import TickSource
from backend.market_data.market_rules import MarketRules

SettingsT = TypeVar("SettingsT", bound=LiveEnvironment)


class Venue(ABC, Generic[SettingsT]):
    """One exchange's adapter. One instance per operation, so that everything using one account
    (the market data and every strategy link trading on it) shares one client: one nonce source,
    one rate-limit budget.

    An adapter never knows which config file a setting came from: a wrong setting (here or in
    the source's `prepare()`) is a SettingError naming the key; whoever builds the adapter at load
    time turns it into the ConfigError naming the file.

    SettingsT is the venue's settings model (its settings.py): the environments it is given were
    validated by it, since their `exchange:` names this venue.

    `stop` is the operation's stop: once it is set, waits are cut short (an order's fill, a request
    waiting for its turn on a shared client)."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    @abstractmethod
    def check_credentials(self, environment: SettingsT) -> None:
        """That the credentials mode: live needs are there and well-formed, without using them
        (no request is made); a SettingError naming the key otherwise, never a value."""

    @abstractmethod
    def tick_source(self, environment: SettingsT) -> TickSource:
        """The environment's live market data."""

    @abstractmethod
    def order_gateway(self, environment: SettingsT, link_id: str) -> IOrderGateway:
        """Real orders for one strategy link (mode: live only)."""

    def market_rules(self, environment: SettingsT) -> Callable[[str], MarketRules] | None:
        """The exchange's rules per symbol (tick, lot, minimum order and cost) as it states them
        now, for a paper run's simulated orders (asked once per symbol, after the tick source's
        start-up check); None when the venue states none (orders are then neither rounded nor
        refused for their size)."""
        return None
