"""The exchange's client for one account, and the translation of its errors.

Invariants: one client per (URL, API key), shared by the market data and every link trading with
that key (one nonce source, one rate limit); every exchange error is translated here, once, into
backend.errors (temporary: retried by readers; refused: a rejection or a FatalExchangeError; an
order whose fate is unknown stays unknown until looked up); credentials are read from the
environment variables the settings name, and never appear in a message.
"""

import os
import threading

from backend.errors import ExchangeError, SettingError
from backend.venues.template.settings import TemplateSettings


def read_credentials(settings: TemplateSettings) -> tuple[str, str]:
    """(key, secret), or a SettingError naming the key of the variable that is unset."""
    for key in ("api_key_env", "api_secret_env"):
        name = getattr(settings, key)
        if not os.environ.get(name, "").strip():
            raise SettingError(key, f"environment variable {name} not set; mode: live needs it")
    return os.environ[settings.api_key_env].strip(), os.environ[settings.api_secret_env].strip()


class TemplateClient:
    """Wrap the exchange library's client (or plain HTTP) here: rate limit, nonce, timeouts, and a
    wait on `stop` wherever a request waits for its turn."""

    def __init__(self, settings: TemplateSettings, with_credentials: bool, stop: threading.Event) -> None:
        self.url = settings.api_url or "https://api.example.invalid"
        self.credentials = read_credentials(settings) if with_credentials else None
        self._stop = stop


def translate_error(error: Exception) -> ExchangeError:
    """The exchange library's error as one of backend.errors' (see backend/venues/kraken/client.py)."""
    raise NotImplementedError("map the exchange's errors onto backend.errors") from error
