"""Shared pieces of the live-path tests: the fake exchange as a fixture, captured logs, test
credentials in the environment, and a live environment pointed at the fake."""

import logging
from collections.abc import Iterator

import pytest
import structlog

from backend.venues.kraken.client import AccountClient, make_kraken_client
from backend.venues.kraken.settings import KrakenSettings
from tests.fake_kraken import TEST_API_KEY, TEST_API_SECRET, FakeKraken, running_fake_kraken

KEY_ENV, SECRET_ENV = "OPDAEMON_TEST_KRAKEN_KEY", "OPDAEMON_TEST_KRAKEN_SECRET"


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeKraken]:
    with running_fake_kraken() as server:
        yield server


@pytest.fixture
def logs() -> Iterator[list[dict]]:
    """Every structlog event (all levels) emitted during the test."""
    capture = structlog.testing.LogCapture()
    previous = structlog.get_config()
    everything = structlog.make_filtering_bound_logger(logging.DEBUG)
    structlog.configure(processors=[capture], wrapper_class=everything)
    yield capture.entries
    structlog.configure(**previous)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, TEST_API_KEY)
    monkeypatch.setenv(SECRET_ENV, TEST_API_SECRET)


def live_env(fake: FakeKraken, **overrides: object) -> KrakenSettings:
    settings: dict = {
        "type": "live", "display_name": "Kraken (fake)", "exchange": "kraken", "symbols": ["BTC/USD"],
        "timeframe": "1m", "market_data": "rest", "poll_interval_seconds": 0.05, "api_url": fake.url,
        "api_key_env": KEY_ENV, "api_secret_env": SECRET_ENV,
        "starting_capital": 10_000, "fee_rate": 0.0026,
    }
    return KrakenSettings(**{**settings, **overrides})


def fast_client(environment: KrakenSettings, with_credentials: bool = False) -> AccountClient:
    client = make_kraken_client(environment, with_credentials=with_credentials)
    client.rateLimit = 1  # ms; Kraken's real pacing would make every test take seconds
    return client


