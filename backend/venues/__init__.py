"""Exchanges by the name environments give in `exchange:`; a new venue is one folder here plus
one line in VENUES."""

from collections.abc import Callable

from backend.venues.base import Venue
from backend.venues.kraken.factory import KrakenVenue

VENUES: dict[str, Callable[[], Venue]] = {
    "kraken": KrakenVenue,
}

__all__ = ["VENUES", "Venue"]
