"""The synchronous ccxt Kraken client, one per account, and what its errors mean.

Invariants: one client serves every strategy link and the market data of one API key (and URL),
and it sends one request at a time with strictly increasing nonces, whatever thread asks; once the
daemon stops, a request still waiting for its turn is never sent (RequestNotSent); no
text made here (`describe_error`, `root_cause`, `translate_error`) contains the API key or secret,
whatever the exchange echoes back, nor a URL's `user:password@` part; ccxt's errors become the
project's ExchangeError taxonomy here.
"""

import base64
import binascii
import os
import socket
import ssl
import threading
from typing import Any

import ccxt
from requests.exceptions import RequestException

from backend.errors import (
    ExchangeError,
    FatalExchangeError,
    OrderRejectedError,
    RateLimitedError,
    SettingError,
    TemporaryExchangeError,
)
from backend.redaction import without_url_credentials
from backend.venues.kraken.settings import KrakenSettings

REQUEST_TIMEOUT_MS = 10_000
MAX_ERROR_TEXT = 300
MAX_BODY_QUOTED = 80  # of an answer that is not Kraken's JSON envelope, in its error
# Kraken's answers when it refuses the key itself rather than the request. Not all of them map
# to ccxt.AuthenticationError ("EAPI:Invalid signature" is a plain ExchangeError), and an error
# that echoes more text after the code matches none of ccxt's exact codes.
KEY_REJECTIONS = ("EAPI:Invalid key", "EAPI:Invalid signature", "EGeneral:Permission denied")
# Kraken's plain refusals of an order: nothing was placed. ccxt maps only some of them to InvalidOrder
# ("EGeneral:Invalid arguments" is a BadRequest, "EOrder:Cost minimum not met" a plain ExchangeError).
ORDER_REFUSALS = ("EOrder:", "EGeneral:Invalid arguments")
# Refusals an order's owner acts on, said in words before Kraken's text (docs.kraken.com/exchange/
# guides/general/errors, "Order errors"). ccxt raises "EOrder:Post only order" as a plain
# ExchangeError and "EOrder:Rate limit exceeded" as DDoSProtection (a network error): both are plain
# refusals all the same, nothing was placed, and a post-only order is never sent again as a taker.
REFUSAL_WORDS = {
    "EOrder:Post only order": "post only: the order would have executed at once as a taker",
    "EOrder:Insufficient funds": "insufficient funds",
    "EOrder:Rate limit exceeded": "the pair's order rate limit is reached",
}
LOCK_WAIT_SLICE_SECONDS = 0.05  # how often a request waiting for its turn looks at the stop


class RequestNotSent(ccxt.NetworkError):
    """The daemon stopped while the request waited for its turn: it was never sent."""


class AccountClient(ccxt.kraken):
    """ccxt's Kraken client, safe to share between threads: every request (nonce made, request
    signed, sent and answered) happens under one lock, so Kraken receives the nonces of one key
    strictly increasing, and the rate limiter paces the whole account, not one caller."""

    def __init__(self, config: dict[str, Any], stop: threading.Event | None = None) -> None:
        super().__init__(config)
        self._request_lock = threading.RLock()
        self._last_nonce = 0
        self._stop = stop or threading.Event()

    def fetch2(self, *args: Any, **kwargs: Any) -> Any:
        # Waits in slices: a run whose turn comes after a slow request of another thread is not
        # held past a stop (it would be abandoned as stalled with its order's outcome unjournaled).
        while not self._request_lock.acquire(timeout=LOCK_WAIT_SLICE_SECONDS):
            if self._stop.is_set():
                raise RequestNotSent("the daemon is stopping")
        try:
            return super().fetch2(*args, **kwargs)
        finally:
            self._request_lock.release()

    def nonce(self) -> int:
        # Milliseconds, as ccxt does, but never equal to the last one (two orders in one ms).
        self._last_nonce = max(int(super().nonce()), self._last_nonce + 1)
        return self._last_nonce

    def handle_errors(self, code: int, reason: str, url: str, method: str, headers: dict, body: str,
                      response: Any, request_headers: Any, request_body: Any) -> Any:
        # Kraken answers every request with its JSON envelope {"error": [...], "result": ...}. ccxt
        # takes a 2xx answer without one (empty, an HTML page) for an empty result: no new candles,
        # or an order placed with no id. It is a bad answer, and the request's outcome is unknown.
        if 200 <= code < 300 and not (isinstance(response, dict) and ("result" in response or response.get("error"))):
            raise ccxt.BadResponse(f"{self.id} {method} {url}: HTTP {code} answer without Kraken's JSON envelope: "
                                   f"{body[:MAX_BODY_QUOTED]!r}")
        return super().handle_errors(code, reason, url, method, headers, body, response, request_headers,
                                     request_body)


def make_kraken_client(environment: KrakenSettings, with_credentials: bool,
                       stop: threading.Event | None = None) -> AccountClient:
    """A rate-limited Kraken client for an environment; with credentials read from the env vars it
    names (a SettingError on `api_key_env` / `api_secret_env` when one is unset or the secret is
    not base64; never the value itself)."""
    credentials = read_credentials(environment) if with_credentials else None
    return make_client(environment.api_url, credentials, stop)


def make_client(api_url: str | None, credentials: tuple[str, str] | None = None,
                stop: threading.Event | None = None) -> AccountClient:
    """A rate-limited Kraken client (ccxt's limiter paces its requests), public unless given an
    API key and secret.

    `api_url` (tests: a local fake exchange) replaces Kraken's host: ccxt appends
    `/0/public/<Method>` and `/0/private/<Method>` to `urls['api']['public'|'private']` itself.
    """
    config: dict = {"enableRateLimit": True, "timeout": REQUEST_TIMEOUT_MS}
    if credentials is not None:
        config["apiKey"], config["secret"] = credentials
    client = AccountClient(config, stop)
    if api_url:
        base = api_url.rstrip("/")
        client.urls["api"] = {**client.urls["api"], "public": base, "private": base}
    return client


def read_credentials(environment: KrakenSettings) -> tuple[str, str]:
    names = (environment.api_key_env, environment.api_secret_env)
    missing = [name for name in names if not os.environ.get(name, "").strip()]
    if missing:
        raise SettingError(
            "api_key_env" if environment.api_key_env in missing else "api_secret_env",
            f"environment variable(s) {', '.join(missing)} not set; "
            "mode: live needs the Kraken API key and secret there",
        )
    key, secret = (os.environ[name].strip() for name in names)
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        # Only the variable's name goes into the message, never its value.
        raise SettingError(
            "api_secret_env",
            f"environment variable {environment.api_secret_env} is not a base64 Kraken API secret",
        ) from None
    return key, secret


def describe_error(error: BaseException, client: ccxt.Exchange | None = None) -> str:
    """A short, log-safe description of a ccxt error: credentials are blanked out if present."""
    return _safe(f"{type(error).__name__}: {error}", client)


def root_cause(error: BaseException, client: ccxt.Exchange | None = None) -> str:
    """Why a request failed, in words, from the deepest error of its chain (__cause__/__context__):
    'DNS lookup failed (...)', 'connection refused', 'TLS error (...)', 'timed out',
    'HTTP 503 Service Unavailable'...; the error's own description when nothing lower explains it
    (e.g. Kraken's JSON error envelope)."""
    for link in reversed(_chain(error)):
        words = _socket_failure(link) or _http_status(link)
        if words:
            return _safe(words, client)
    if isinstance(error, ccxt.RequestTimeout):
        return "timed out"
    return describe_error(error, client)


def translate_error(error: BaseException, client: ccxt.Exchange | None = None) -> ExchangeError:
    """The one place ccxt's errors become the project's: temporary (rate limited or not), order
    rejected or fatal."""
    cause = root_cause(error, client)
    if is_key_rejected(error) or isinstance(error, ccxt.PermissionDenied | ccxt.BadSymbol):
        return FatalExchangeError(cause)
    if isinstance(error, ccxt.InsufficientFunds | ccxt.InvalidOrder) or is_order_refused(error):
        words = next((words for code, words in REFUSAL_WORDS.items() if code in str(error)), None)
        return OrderRejectedError(f"{words} ({cause})" if words else cause)
    if isinstance(error, ccxt.DDoSProtection):  # "EAPI:Rate limit exceeded", "EGeneral:Too many requests"
        return RateLimitedError(cause)
    if is_network_failure(error):
        return TemporaryExchangeError(cause)
    return ExchangeError(cause)


def is_network_failure(error: BaseException) -> bool:
    """Worth retrying: ccxt's network-type errors, or any error caused by a socket or TLS failure."""
    return isinstance(error, ccxt.OperationFailed) or any(_socket_failure(link) for link in _chain(error))


def is_order_refused(error: BaseException) -> bool:
    """Kraken's error envelope refuses the order plainly (EOrder:*, EGeneral:Invalid arguments):
    it was not placed. ccxt quotes the envelope's JSON in its error, so the quoted code is what
    Kraken answered: a network failure never reads so (ccxt raises some refusals, e.g. rate limits,
    as network errors)."""
    if not isinstance(error, ccxt.BaseError) or isinstance(error, ccxt.BadResponse):  # no envelope: it told nothing
        return False
    text = str(error)
    return any(f'"{code}' in text for code in ORDER_REFUSALS)


def is_key_rejected(error: BaseException) -> bool:
    """Kraken refused the API key (unknown key, wrong secret, missing permission)."""
    return isinstance(error, ccxt.AuthenticationError) or (
        isinstance(error, ccxt.ExchangeError) and any(code in str(error) for code in KEY_REJECTIONS)
    )


def _chain(error: BaseException) -> list[BaseException]:
    """The error and the ones it was raised from or while handling, outermost first."""
    links: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in links:
        links.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return links


def _socket_failure(error: BaseException) -> str | None:
    # requests' exceptions subclass OSError too, but only wrap the socket's; they are skipped so
    # the socket error underneath them speaks.
    if not isinstance(error, OSError) or isinstance(error, RequestException):
        return None
    detail = error.strerror or str(error) or type(error).__name__
    if isinstance(error, socket.gaierror):
        return f"DNS lookup failed ({detail})"
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({detail})"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):  # also http.client.RemoteDisconnected
        return "connection reset or closed by the server"
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"network error ({detail})"


def _http_status(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        return None
    return f"HTTP {status} {getattr(response, 'reason', '') or ''}".rstrip()


def _safe(text: str, client: ccxt.Exchange | None) -> str:
    text = without_url_credentials(text)
    if client is not None:
        for credential in (client.apiKey, client.secret):
            if credential:
                text = text.replace(credential, "***")
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."
