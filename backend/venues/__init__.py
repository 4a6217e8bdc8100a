"""Exchanges by the name environments give in `exchange:`; a new venue is one folder here plus
one line in VENUES."""

import threading
from collections.abc import Callable

from backend.venues.base import Venue
from backend.venues.kraken.factory import KrakenVenue

VENUES: dict[str, Callable[[threading.Event], Venue]] = {
    "kraken": KrakenVenue,
}

__all__ = ["VENUES", "Venue"]
