"""Exchanges by the name environments give in `exchange:`; a new venue is one folder here (see
backend/venues/template/) plus one entry in VENUES.

Invariants: a venue's modules (and its exchange library: ccxt takes about a second to import) are
imported when the venue is first made, never by a backtest or its validation: an entry only names
them, and its settings model (pydantic alone) is imported when a live environment on that exchange
is loaded. This module imports nothing of the project at the top, so the config loader can read
the registry without an import cycle (the venues build on the config schema).
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.config.schema import LiveEnvironment
    from backend.market_data.trade_history import TradeHistory
    from backend.venues.base import Venue


@dataclass(frozen=True)
class VenueEntry:
    settings: "Callable[[], type[LiveEnvironment]]"  # the model of the exchange's environment files
    make: "Callable[[threading.Event], Venue[Any]]"  # the adapter, given the operation's stop
    # Its public trade history (`run-operation download-data`), given the REST URL to use (None:
    # the exchange's own) and the command's stop; None: the venue has none.
    trade_history: "Callable[[str | None, threading.Event], TradeHistory] | None" = None


def _kraken_settings() -> "type[LiveEnvironment]":
    from backend.venues.kraken.settings import KrakenSettings

    return KrakenSettings


def _kraken(stop: threading.Event) -> "Venue[Any]":
    from backend.venues.kraken.factory import KrakenVenue

    return KrakenVenue(stop)


def _kraken_trade_history(api_url: str | None, stop: threading.Event) -> "TradeHistory":
    from backend.venues.kraken.client import make_client
    from backend.venues.kraken.trade_history import KrakenTradeHistory

    return KrakenTradeHistory(make_client(api_url, stop=stop))


VENUES: dict[str, VenueEntry] = {
    "kraken": VenueEntry(_kraken_settings, _kraken, _kraken_trade_history),
}


def unknown_exchange(name: object) -> str | None:
    """Why `exchange: name` names no venue; None when it names one."""
    if isinstance(name, str) and name in VENUES:
        return None
    return f"unknown exchange {name!r} (known: {', '.join(sorted(VENUES))})"


__all__ = ["VENUES", "VenueEntry", "unknown_exchange"]
