"""Start-up checks of the live Kraken feed: the exchange answers, lists the symbols and accepts the
key within `startup_timeout_seconds`, or the daemon stops at once naming the root cause, with no
key or secret in any message. Real ccxt client, real local sockets, and the real CLI."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import ccxt
import pytest

from backend.config import load_operation
from backend.errors import ConfigError, ExchangeUnavailableError, SettingError
from backend.venues.kraken.client import describe_error, is_key_rejected, root_cause
from backend.venues.kraken.market_data import KrakenLiveSource
from services.operation_service import OperationService
from tests.fake_kraken import (
    TEST_API_KEY,
    TEST_API_SECRET,
    FakeKraken,
    refused_url,
    silent_url,
)
from tests.helpers import REPO, blueprint, write_config_tree
from tests.live_support import KEY_ENV, SECRET_ENV, fast_client, live_env

WRONG_KEY = "WRONG-KEY-that-kraken-does-not-know"
STARTUP_TIMEOUT = 1.0  # seconds; every unreachable case must give up about then


def source_for(fake: FakeKraken, **overrides: object) -> KrakenLiveSource:
    environment = live_env(fake, **overrides)
    return KrakenLiveSource(environment, client=fast_client(environment))


def events(logs: list[dict], name: str) -> list[dict]:
    return [e for e in logs if e["event"] == name]


# --- the exchange answers -------------------------------------------------------------------


def test_paper_mode_checks_markets_and_the_clock_only(fake, logs):
    source_for(fake).prepare()

    assert [r.endpoint for r in fake.requests] == ["public/Assets", "public/AssetPairs", "public/Time"]
    (ready,) = events(logs, "exchange_ready")
    assert (ready["url"], ready["symbols"], ready["credentials_checked"]) == (fake.url, ["BTC/USD"], False)


def test_a_short_outage_at_start_is_ridden_out(fake, logs):
    fake.fail_next(2)
    source_for(fake).prepare()

    retries = events(logs, "exchange_startup_retry")
    assert [(r["attempt"], r["cause"]) for r in retries] == [(1, "HTTP 503 Service Unavailable"),
                                                           (2, "HTTP 503 Service Unavailable")]
    assert retries[1]["retry_in_seconds"] > retries[0]["retry_in_seconds"]
    assert events(logs, "exchange_ready")


def test_a_symbol_kraken_does_not_list_is_a_setting_error_at_start(fake):
    # The source knows no file; OperationService names it (below, end to end).
    with pytest.raises(SettingError, match="kraken has no market DOGE/EUR") as raised:
        source_for(fake, symbols=["BTC/USD", "DOGE/EUR"]).prepare()
    assert raised.value.key == "symbols"
    assert not fake.received("public/OHLC")


def test_an_error_retrying_cannot_cure_stops_the_start_at_once(fake, logs):
    fake.fail_next(10_000, status=401)  # e.g. a proxy that wants credentials of its own
    started = time.monotonic()
    with pytest.raises(ExchangeUnavailableError) as raised:
        source_for(fake).prepare()
    assert str(raised.value) == f"kraken at {fake.url} answered the start-up check with an error: HTTP 401 Unauthorized"
    assert len(fake.requests) == 1 and not events(logs, "exchange_startup_retry")
    assert time.monotonic() - started < 10  # not retried until the 30 s start-up deadline


# --- the exchange cannot be reached ---------------------------------------------------------


def dns_fails_fast() -> bool:
    """Resolving a name under .invalid fails quickly here (no network); some resolvers hang or lie."""
    started = time.monotonic()
    try:
        socket.getaddrinfo("nonexistent.invalid", 80)
    except socket.gaierror:
        return time.monotonic() - started < 0.5
    return False


@pytest.mark.slow
@pytest.mark.parametrize(
    ("server", "cause"),
    [
        ("refused", "connection refused"),
        ("tls", "TLS error ([SSL: WRONG_VERSION_NUMBER] wrong version number"),
        ("silent", "timed out"),
        ("http_503", "HTTP 503 Service Unavailable"),
        ("dns", "DNS lookup failed ("),
    ],
)
def test_an_unreachable_exchange_stops_the_start_naming_the_root_cause(fake, logs, server, cause):
    if server == "dns" and not dns_fails_fast():
        pytest.skip("this machine's resolver does not fail fast on nonexistent.invalid")
    fake.fail_next(10_000)  # only reached in the http_503 case
    with silent_url() as silent:
        url = {"refused": refused_url(), "tls": fake.url.replace("http://", "https://"), "silent": silent,
               "http_503": fake.url, "dns": "http://nonexistent.invalid"}[server]
        source = source_for(fake, api_url=url, startup_timeout_seconds=STARTUP_TIMEOUT)
        started = time.monotonic()
        with pytest.raises(ExchangeUnavailableError) as raised:
            source.prepare()
        elapsed = time.monotonic() - started

    message = str(raised.value)
    assert message.startswith(f"kraken at {url} unreachable for ")
    assert "startup_timeout_seconds: 1," in message
    assert f"attempt(s)): {cause}" in message, message
    waited = float(re.search(r"unreachable for ([0-9.]+) s", message).group(1))
    # A 10 s request timeout would overrun the deadline by 9 s; a loaded machine's scheduling, by much less.
    assert waited <= STARTUP_TIMEOUT + 1
    assert elapsed < STARTUP_TIMEOUT + 5
    if server == "silent":
        assert elapsed >= STARTUP_TIMEOUT - 0.1  # it did wait for an answer that never came
    else:  # a fast failure is retried until the deadline is near
        retries = events(logs, "exchange_startup_retry")
        assert len(retries) >= 2 and all(r["cause"].startswith(cause) for r in retries)
        assert elapsed >= STARTUP_TIMEOUT / 2


# --- mode: live checks the key --------------------------------------------------------------


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch):
    def set_credentials(key: str, secret: str = TEST_API_SECRET) -> None:
        monkeypatch.setenv(KEY_ENV, key)
        monkeypatch.setenv(SECRET_ENV, secret)

    return set_credentials


LIVE = {"mode": "live", "allow_live_orders": True}


def test_live_mode_reads_the_balance_once_with_the_accepted_key(fake, key_env, logs):
    key_env(TEST_API_KEY)
    source_for(fake, **LIVE).prepare()

    (balance,) = fake.received("private/BalanceEx")
    assert balance.headers["API-Key"] == TEST_API_KEY  # and the fake checked its signature
    assert len(fake.received("public/AssetPairs")) == 1  # the markets were not loaded twice
    (ready,) = events(logs, "exchange_ready")
    assert ready["credentials_checked"] is True


@pytest.mark.parametrize(
    ("key", "secret", "kraken_says"),
    [
        (WRONG_KEY, TEST_API_SECRET, "EAPI:Invalid key"),
        (TEST_API_KEY, "d3Jvbmcgc2VjcmV0", "EAPI:Invalid signature"),  # base64 of "wrong secret"
    ],
    ids=["unknown_key", "wrong_secret"],
)
def test_a_rejected_key_is_a_setting_error_that_never_shows_the_key(fake, key_env, logs, key, secret, kraken_says):
    fake.echo_key_in_errors = True  # the exchange quotes the key back in its error
    key_env(key, secret)
    with pytest.raises(SettingError) as raised:
        source_for(fake, **LIVE).prepare()

    error = raised.value
    assert error.key == "api_key_env"
    assert error.reason.startswith(f"kraken rejected the API key from {KEY_ENV} / {SECRET_ENV}: ")
    assert kraken_says in error.reason and "API-Key: ***" in error.reason
    text = str(error) + repr(logs)
    assert key not in text and secret not in text
    assert len(fake.received("private/BalanceEx")) == 1  # a refused key is not retried


def test_an_outage_during_the_key_check_is_retried_not_blamed_on_the_key(fake, key_env, logs):
    key_env(TEST_API_KEY)
    environment = live_env(fake, **LIVE)
    client = fast_client(environment)
    client.load_markets()  # so that the next failures hit the private read
    fake.fail_next(2)
    source = KrakenLiveSource(environment, client=client,
                              private_client=fast_client(environment, with_credentials=True))
    source.prepare()

    assert len(fake.received("private/BalanceEx")) == 3
    assert [r["cause"] for r in events(logs, "exchange_startup_retry")] == ["HTTP 503 Service Unavailable"] * 2


# --- what the errors say ----------------------------------------------------------------------


def test_masking_covers_whatever_the_exchange_echoes(fake):
    client = fast_client(live_env(fake), with_credentials=False)
    client.apiKey, client.secret = TEST_API_KEY, TEST_API_SECRET
    echoed = ccxt.ExchangeError(f'kraken {{"error":["EAPI:Invalid key {TEST_API_KEY} {TEST_API_SECRET}"]}}')
    for text in (describe_error(echoed, client), root_cause(echoed, client)):
        assert TEST_API_KEY not in text and TEST_API_SECRET not in text and "*** ***" in text


@pytest.mark.parametrize(
    ("error", "rejected"),
    [
        (ccxt.AuthenticationError('kraken {"error":["EAPI:Invalid key"]}'), True),
        (ccxt.PermissionDenied('kraken {"error":["EGeneral:Permission denied"]}'), True),
        (ccxt.ExchangeError('kraken {"error":["EAPI:Invalid signature"]}'), True),
        (ccxt.ExchangeNotAvailable('kraken {"error":["EService:Unavailable"]}'), False),
        (ccxt.InsufficientFunds('kraken {"error":["EOrder:Insufficient funds"]}'), False),
    ],
)
def test_which_errors_mean_the_key_was_rejected(error, rejected):
    assert is_key_rejected(error) is rejected


# --- end to end: OperationService and the CLI ---------------------------------------------


def live_operation(tmp_path: Path, api_url: str, **overrides: object) -> Path:
    environment = {
        "type": "live", "display_name": "fake kraken", "exchange": "kraken", "symbols": ["BTC/USD"],
        "timeframe": "1h", "market_data": "rest", "poll_interval_seconds": 0.05, "api_url": api_url,
        "startup_timeout_seconds": STARTUP_TIMEOUT, "starting_capital": 10_000, "fee_rate": 0.0026,
        **overrides,
    }
    strategy = {**blueprint({}), "timeframe": environment["timeframe"]}
    return write_config_tree(tmp_path, [("s", "live")], {"s": strategy}, {"live": environment})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "key", "secret", "setting", "reason"),
    [
        ({"timeframe": "2h"}, None, None, "timeframe", "kraken has no 2h candles (use one of: 1m, 5m, "),
        ({"symbols": ["BTC/USD", "DOGE/EUR"]}, None, None, "symbols", "kraken has no market DOGE/EUR"),
        (LIVE, WRONG_KEY, TEST_API_SECRET, "api_key_env",
         f"kraken rejected the API key from {KEY_ENV} / {SECRET_ENV}: "),
        (LIVE, None, TEST_API_SECRET, "api_key_env",
         f"environment variable(s) {KEY_ENV} not set; mode: live needs the Kraken API key and secret there"),
        (LIVE, TEST_API_KEY, None, "api_secret_env",
         f"environment variable(s) {SECRET_ENV} not set; mode: live needs the Kraken API key and secret there"),
        (LIVE, TEST_API_KEY, "not base64 at all!", "api_secret_env",
         f"environment variable {SECRET_ENV} is not a base64 Kraken API secret"),
    ],
    ids=["timeframe", "unknown_symbol", "key_refused", "key_variable_unset", "secret_variable_unset",
         "secret_not_base64"],
)
def test_a_wrong_setting_stops_the_load_naming_the_environment_file(
    tmp_path, fake, monkeypatch, overrides, key, secret, setting, reason
):
    for name, value in ((KEY_ENV, key), (SECRET_ENV, secret)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    operation = load_operation(live_operation(tmp_path, fake.url, api_key_env=KEY_ENV, api_secret_env=SECRET_ENV,
                                              **overrides))
    with pytest.raises(ConfigError) as raised:
        OperationService(operation)

    env_file = tmp_path / "config" / "environments" / "live.yaml"
    error = raised.value
    assert (error.file, error.key) == (str(env_file), setting)
    assert error.reason.startswith(reason)
    assert str(error).startswith(f"{env_file}: {setting}: {reason}")
    for value in (key, secret):
        assert not value or value not in str(error)
    assert not fake.received("public/OHLC") and not fake.received("private/AddOrder")


def run_cli(operation: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    finished = subprocess.run(
        # The state store goes next to the test's config, never into the repository's ./var.
        [sys.executable, "-m", "services.cli", str(operation), "--data-dir", str(operation.parent / "var")],
        cwd=REPO, capture_output=True, text=True,
        timeout=30, env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )
    return finished, time.monotonic() - started


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_exits_1_soon_when_nothing_listens(tmp_path):
    """Soon: within the timeout of starting to load the operation, by the daemon's own log
    timestamps. Starting Python and importing ccxt come before and are not the daemon's to bound
    (on a loaded machine they take seconds): here a sitecustomize makes them 2.5 s slower."""
    url = refused_url()
    slow_start = tmp_path / "slow_start"
    slow_start.mkdir()
    (slow_start / "sitecustomize.py").write_text("import time\ntime.sleep(2.5)\n")
    finished, _ = run_cli(live_operation(tmp_path, url), PYTHONPATH=f"{REPO}{os.pathsep}{slow_start}")

    assert finished.returncode == 1, finished.stderr
    assert f"run-operation: exchange error: kraken at {url} unreachable for" in finished.stderr
    assert "connection refused" in finished.stderr and "Traceback" not in finished.stderr
    logged = [json.loads(line) for line in finished.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in logged if e["level"] == "error"] == ["exchange_unavailable"]
    at = {e["event"]: datetime.fromisoformat(e["timestamp"]) for e in logged}
    assert (at["exchange_unavailable"] - at["operation_loading"]).total_seconds() < STARTUP_TIMEOUT + 1
    assert "ticks processed" not in finished.stdout  # no strategy ever started


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_exits_2_on_a_rejected_key_naming_the_setting_never_the_key(tmp_path, fake):
    fake.echo_key_in_errors = True
    operation = live_operation(tmp_path, fake.url, mode="live", allow_live_orders=True,
                               api_key_env="OPDAEMON_E2E_KEY", api_secret_env="OPDAEMON_E2E_SECRET")
    finished, _ = run_cli(operation, OPDAEMON_E2E_KEY=WRONG_KEY, OPDAEMON_E2E_SECRET=TEST_API_SECRET)

    assert finished.returncode == 2, finished.stderr
    env_file = tmp_path / "config" / "environments" / "live.yaml"
    assert f"run-operation: config error: {env_file}: api_key_env: kraken rejected the API key" in finished.stderr
    assert "EAPI:Invalid key" in finished.stderr and "Traceback" not in finished.stderr
    for output in (finished.stdout, finished.stderr):
        assert WRONG_KEY not in output and TEST_API_SECRET not in output
    assert len(fake.received("private/BalanceEx")) == 1
    assert not fake.received("public/OHLC") and not fake.received("private/AddOrder")
