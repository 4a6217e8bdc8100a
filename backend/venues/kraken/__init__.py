"""The Kraken venue. Its modules import ccxt, whose packages load Kraken's clients alone from here
on (lazy_ccxt.py): a package's __init__ runs before any of its modules."""

from backend.venues.kraken import lazy_ccxt

lazy_ccxt.install()
