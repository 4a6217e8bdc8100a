"""Exchanges by the name environments give in `exchange:`; a new venue is one folder here plus
one line in VENUES.

Invariant: a venue's modules (and its exchange library: ccxt takes about a second to import) are
imported when the venue is first made, never by a backtest or its validation.
"""

import threading
from collections.abc import Callable

from backend.venues.base import Venue


def _kraken(stop: threading.Event) -> Venue:
    from backend.venues.kraken.factory import KrakenVenue

    return KrakenVenue(stop)


VENUES: dict[str, Callable[[threading.Event], Venue]] = {
    "kraken": _kraken,
}

__all__ = ["VENUES", "Venue"]
