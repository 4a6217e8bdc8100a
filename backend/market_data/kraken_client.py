"""Builds the synchronous ccxt Kraken client shared by the live tick source and the exchange broker."""

import base64
import binascii
import os

import ccxt

from backend.config.schema import LiveEnvironment
from backend.errors import ConfigError

REQUEST_TIMEOUT_MS = 10_000
MAX_ERROR_TEXT = 300


def make_kraken_client(
    environment: LiveEnvironment, environment_file: str, with_credentials: bool
) -> ccxt.kraken:
    """A rate-limited Kraken client; with credentials read from the env vars the environment names.

    `api_url` (tests: a local fake exchange) replaces Kraken's host: ccxt appends
    `/0/public/<Method>` and `/0/private/<Method>` to `urls['api']['public'|'private']` itself.
    """
    config: dict = {"enableRateLimit": True, "timeout": REQUEST_TIMEOUT_MS}
    if with_credentials:
        config["apiKey"], config["secret"] = _read_credentials(environment, environment_file)
    client = ccxt.kraken(config)
    if environment.api_url:
        base = environment.api_url.rstrip("/")
        client.urls["api"] = {**client.urls["api"], "public": base, "private": base}
    return client


def _read_credentials(environment: LiveEnvironment, environment_file: str) -> tuple[str, str]:
    names = (environment.api_key_env, environment.api_secret_env)
    missing = [name for name in names if not os.environ.get(name, "").strip()]
    if missing:
        raise ConfigError(
            environment_file,
            f"environment variable(s) {', '.join(missing)} not set; "
            "mode: live needs the Kraken API key and secret there",
            "api_key_env" if environment.api_key_env in missing else "api_secret_env",
        )
    key, secret = (os.environ[name].strip() for name in names)
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        # Only the variable's name goes into the message, never its value.
        raise ConfigError(
            environment_file,
            f"environment variable {environment.api_secret_env} is not a base64 Kraken API secret",
            "api_secret_env",
        ) from None
    return key, secret


def describe_error(error: Exception, client: ccxt.Exchange | None = None) -> str:
    """A short, log-safe description of a ccxt error: credentials are blanked out if present."""
    text = f"{type(error).__name__}: {error}"
    if client is not None:
        for secret in (client.apiKey, client.secret):
            if secret:
                text = text.replace(secret, "***")
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."
