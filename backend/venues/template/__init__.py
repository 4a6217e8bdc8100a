"""A skeleton venue adapter to copy when adding an exchange; it is NOT registered in VENUES.

To add an exchange `acme`:
1. copy this folder to backend/venues/acme/ and rename the classes (Template* -> Acme*);
2. settings.py: the keys an `exchange: acme` environment file may have besides the ones every
   live environment has (backend.config.schema.LiveEnvironment); pydantic only, no exchange library;
3. client.py: one client per account (one nonce source, one rate limit) and `translate_error`, the
   one place the exchange's errors become backend.errors' taxonomy;
4. market_data.py: the environment's closed candles as RawTicks (a TickSource);
5. execution.py: real orders for one strategy link (an IOrderGateway): sent once, never retried,
   an ambiguous outcome UNKNOWN until looked up;
6. factory.py: the Venue building them, sharing one client per (URL, API key);
7. register it in backend/venues/__init__.py, importing its modules inside the two functions only
   (a backtest must never import an exchange library):

       def _acme_settings() -> "type[LiveEnvironment]":
           from backend.venues.acme.settings import AcmeSettings
           return AcmeSettings

       def _acme(stop: threading.Event) -> "Venue[Any]":
           from backend.venues.acme.factory import AcmeVenue
           return AcmeVenue(stop)

       VENUES = {..., "acme": VenueEntry(_acme_settings, _acme)}

8. tests against a local fake of the exchange (see tests/fake_kraken.py), never the real one.
"""
