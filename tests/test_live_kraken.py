"""Live Kraken market data and order routing, through the real ccxt client against a local fake."""

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import ccxt
import pytest

from backend.errors import SettingError, TemporaryExchangeError
from backend.market_data.raw_tick import RawTick, tick_frames
from backend.portfolio import SimulatedGateway
from backend.venues.kraken import exchange_clock
from backend.venues.kraken.client import make_kraken_client, translate_error
from backend.venues.kraken.execution import KrakenOrderGateway
from backend.venues.kraken.market_data import KrakenLiveSource
from services.execution_environments import ExecutionEnvironments
from tests.fake_kraken import (
    TEST_API_KEY,
    TEST_API_SECRET,
    candle,
    refused_url,
    sent_as,
    silent_url,
)
from tests.live_support import KEY_ENV, SECRET_ENV, fast_client, live_env

MINUTE = 60


def minute_rows(start: int, closes: list[float]) -> list[list]:
    return [candle(start + i * MINUTE, close) for i, close in enumerate(closes)]


def ten_minutes_ago() -> int:
    return minutes_ago(10)


def minutes_ago(minutes: int) -> int:
    return int(time.time()) // MINUTE * MINUTE - minutes * MINUTE


class Consumer:
    """Drains a source's ticks on a background thread, the way the environment feed does."""

    def __init__(self, source: KrakenLiveSource) -> None:
        self.stop = threading.Event()
        self.ticks: list[RawTick] = []
        self.frames: list[list[RawTick]] = []  # the ticks of each open time handed on together
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(source,), daemon=True)
        self._thread.start()

    def _run(self, source: KrakenLiveSource) -> None:
        try:
            for block in source.blocks(self.stop):
                frames = [[tick for _, _, tick in frame] for frame in tick_frames(block)]
                self.frames.extend(frames)
                self.ticks.extend(tick for frame in frames for tick in frame)
        except BaseException as error:  # surfaced to the test
            self.error = error

    def wait_for(self, count: int, timeout: float = 20.0) -> list[RawTick]:
        wait_until(lambda: len(self.ticks) >= count or self.error is not None, timeout)
        if self.error:
            raise self.error
        assert len(self.ticks) >= count, f"only {len(self.ticks)} of {count} ticks within {timeout}s"
        return list(self.ticks)

    def close(self, timeout: float = 10.0) -> float:
        """Set stop; return how long the source took to finish."""
        started = time.monotonic()
        self.stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "source did not stop"
        return time.monotonic() - started


@pytest.fixture
def consume() -> Iterator[Callable[[KrakenLiveSource], Consumer]]:
    consumers: list[Consumer] = []

    def start(source: KrakenLiveSource) -> Consumer:
        consumers.append(Consumer(source))
        return consumers[-1]

    yield start
    for consumer in consumers:
        consumer.stop.set()


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- live market data -----------------------------------------------------------------------


def test_first_poll_emits_only_the_latest_closed_candle_then_each_new_one_once(fake, consume):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102, 103, 104]))  # 104: forming
    environment = live_env(fake)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))

    first = consumer.wait_for(1)
    time.sleep(0.3)  # several more polls of unchanged data
    assert consumer.ticks == first == [RawTick(
        symbol="BTC/USD", timestamp=at(start + 3 * MINUTE), open=102, high=105, low=100, close=103, volume=1,
    )]

    # Three more rows: the formerly forming one and the next one closed, a new one forming.
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102, 103, 104, 105, 106]))
    consumer.wait_for(3)
    time.sleep(0.3)
    assert [(t.timestamp, t.close) for t in consumer.ticks] == [
        (at(start + 3 * MINUTE), 103), (at(start + 4 * MINUTE), 104), (at(start + 5 * MINUTE), 105),
    ]
    consumer.close()
    # After the first poll the source only asks for candles after the last one it emitted.
    ohlc = fake.received("public/OHLC")
    assert ohlc[0].params == {"pair": "XXBTZUSD", "interval": "1"}
    assert int(ohlc[-1].params["since"]) >= start + 3 * MINUTE - MINUTE


def test_warmup_candles_are_replayed_first_and_flagged(fake, consume, logs):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102, 103, 104]))  # 104: forming
    environment = live_env(fake, warmup_candles=2)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))

    consumer.wait_for(3)
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102, 103, 104, 105]))
    ticks = consumer.wait_for(4)
    assert [(t.close, t.warmup) for t in ticks] == [(101, True), (102, True), (103, False), (104, False)]
    assert [(e["event"], e.get("close")) for e in logs] == [
        ("warmup_replayed", None), ("candle_closed", 103), ("candle_closed", 104),
    ]


def test_a_candle_whose_interval_has_not_ended_is_not_emitted(fake, consume):
    hour = 3600
    this_hour = int(time.time()) // hour * hour
    # The row of the current hour is not Kraken's last row here, yet it is still running.
    fake.set_candles("XXBTZUSD", [candle(this_hour + offset * hour, 100 + offset) for offset in (-2, -1, 0, 1)])
    environment = live_env(fake, timeframe="1h")
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))

    consumer.wait_for(1)
    time.sleep(0.2)
    assert [(t.timestamp, t.close) for t in consumer.ticks] == [(at(this_hour - hour), 99)]


def test_every_symbol_is_polled(fake, consume):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102]))
    fake.set_candles("XETHZUSD", minute_rows(start, [10, 11, 12]))
    environment = live_env(fake, symbols=["BTC/USD", "ETH/USD"])
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))

    consumer.wait_for(2)
    time.sleep(0.2)
    assert sorted((t.symbol, t.close) for t in consumer.ticks) == [("BTC/USD", 101), ("ETH/USD", 11)]


def test_the_candles_of_one_open_time_go_on_together_though_a_symbol_shows_its_own_later(fake, consume):
    """As a backtest of the two symbols hands them on: one frame per open time."""
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102]))
    fake.set_candles("XETHZUSD", minute_rows(start, [10]))  # Kraken has not closed ETH's candle yet
    environment = live_env(fake, symbols=["BTC/USD", "ETH/USD"], frame_wait_seconds=20)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))

    wait_until(lambda: len(fake.received("public/OHLC")) >= 6, timeout=10)  # three polls of each
    assert consumer.ticks == []  # BTC's closed candle waits for ETH's
    fake.set_candles("XETHZUSD", minute_rows(start, [10, 11, 12]))
    consumer.wait_for(2)
    fake.set_candles("XETHZUSD", minute_rows(start, [10, 11, 12, 13]))  # ETH first this time
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102, 103]))
    consumer.wait_for(4)
    assert [[(tick.symbol, tick.close) for tick in frame] for frame in consumer.frames] == [
        [("BTC/USD", 101), ("ETH/USD", 11)], [("BTC/USD", 102), ("ETH/USD", 12)]]


def test_a_candle_waits_frame_wait_seconds_at_most_for_the_other_symbols(fake, consume):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102]))
    fake.set_candles("XETHZUSD", minute_rows(start, [10]))
    environment = live_env(fake, symbols=["BTC/USD", "ETH/USD"], frame_wait_seconds=0.5)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))

    started = time.monotonic()
    consumer.wait_for(1)
    assert time.monotonic() - started >= 0.5
    fake.set_candles("XETHZUSD", minute_rows(start, [10, 11, 12]))  # late: it goes on by itself
    consumer.wait_for(2)
    assert [[(tick.symbol, tick.close) for tick in frame] for frame in consumer.frames] == [
        [("BTC/USD", 101)], [("ETH/USD", 11)]]


def test_a_burst_of_503s_is_logged_and_ridden_out(fake, consume, logs):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102]))
    fake.fail_next(3)  # markets cannot even be loaded at first
    environment = live_env(fake)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))

    assert [t.close for t in consumer.wait_for(1)] == [101]
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102, 103]))
    assert [t.close for t in consumer.wait_for(2)] == [101, 102]

    warnings = [e for e in logs if e["event"] == "market_data_unavailable"]
    assert [(w["log_level"], w["attempt"]) for w in warnings] == [("warning", n) for n in (1, 2, 3)]
    assert all("ExchangeNotAvailable" in w["error"] for w in warnings)
    assert [w["cause"] for w in warnings] == ["HTTP 503 Service Unavailable"] * 3
    assert warnings[1]["retry_in_seconds"] > warnings[0]["retry_in_seconds"]  # backing off


@pytest.mark.parametrize("failing", [False, True], ids=["waiting_for_next_poll", "backing_off"])
def test_stop_is_prompt(fake, consume, failing):
    fake.set_candles("XXBTZUSD", minute_rows(ten_minutes_ago(), [100, 101, 102]))
    if failing:
        fake.fail_next(1000)
    environment = live_env(fake, poll_interval_seconds=30)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))
    wait_until(lambda: len(fake.requests) >= (1 if failing else 3), timeout=20)
    time.sleep(0.05)

    assert consumer.close() < 10  # not the 30 s poll interval, nor the 60 s backoff
    assert consumer.error is None


# --- every live candle is checked -------------------------------------------------------------


def events(logs: list[dict], name: str) -> list[dict]:
    return [e for e in logs if e["event"] == name]


def test_bad_candles_are_rejected_once_and_later_good_ones_still_flow(fake, consume, logs):
    start = minutes_ago(20)
    rows = minute_rows(start, [100, 101])  # 101: forming
    fake.set_candles("XXBTZUSD", [["x", "1", "1", "1", "1", "1", "1", 1], *rows])  # a row without a time
    environment = live_env(fake)
    source = KrakenLiveSource(environment, client=fast_client(environment))
    consumer = consume(source)
    assert [t.close for t in consumer.wait_for(1)] == [100]

    def at_minute(index: int, close: float) -> list:
        return candle(start + index * MINUTE, close)

    bad = [
        sent_as(at_minute(2, 102), high="nan"),
        sent_as(at_minute(3, 103), low="inf"),
        sent_as(at_minute(4, 104), low="200.0"),  # above open and close
        sent_as(at_minute(5, 105), volume="-1"),
        sent_as(at_minute(6, 106), open=""),  # ccxt makes this None
        sent_as(at_minute(7, 107), close="0"),
        candle(start + 8 * MINUTE + 30, 108),  # not on the minute grid
    ]
    fake.set_candles("XXBTZUSD", [*rows, *bad, at_minute(9, 109), at_minute(10, 110)])  # 110: forming
    consumer.wait_for(3)
    time.sleep(0.3)  # more polls of the same rows: nothing is rejected twice
    ticks = consumer.ticks
    assert [(t.close, t.missing_before) for t in ticks] == [(100, 0), (101, 0), (109, 7)]

    rejected = events(logs, "candle_rejected")
    assert source.candles_rejected == len(rejected) == 8
    assert rejected[0] == {"event": "candle_rejected", "log_level": "warning", "symbol": "BTC/USD",
                           "candle_time": None, "reason": "the row has no open time"}
    assert [r["candle_time"] for r in rejected[1:]] == [at(row[0]).isoformat() for row in bad]
    assert [r["reason"] for r in rejected[1:]] == [
        "prices and volume must be finite numbers",
        "prices and volume must be finite numbers",
        "low 200.0 / high 106.0 do not contain open 103.0 and close 104.0",
        "volume must not be negative",
        "prices and volume must be numbers",
        "prices must be positive",
        f"timestamp {at(start + 8 * MINUTE + 30).isoformat()} is not aligned to the 1m timeframe",
    ]
    (gap,) = events(logs, "data_gap")
    assert (gap["missing_candles"], gap["gap_from"], gap["gap_to"]) == (
        7, at(start + 2 * MINUTE).isoformat(), at(start + 9 * MINUTE).isoformat())
    assert [e["close"] for e in events(logs, "candle_closed")] == [100, 101, 109]  # none of the bad ones

    fake.set_candles("XXBTZUSD", [*rows, *bad, at_minute(9, 109), at_minute(10, 110), at_minute(11, 111)])
    assert [(t.close, t.missing_before) for t in consumer.wait_for(4)][-1] == (110, 0)


def test_a_repeated_row_is_one_candle(fake, consume, logs):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101]))
    environment = live_env(fake)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))
    consumer.wait_for(1)

    a, b, c, d = minute_rows(start + MINUTE, [101, 102, 103, 104])
    fake.set_candles("XXBTZUSD", [*minute_rows(start, [100]), a, a, b, c, b, d, d])  # d, twice, still forms
    consumer.wait_for(3)
    time.sleep(0.3)
    assert [(t.close, t.missing_before) for t in consumer.ticks] == [(100, 0), (101, 0), (102, 0), (103, 0)]
    assert not events(logs, "candle_rejected") and not events(logs, "data_gap")


def test_a_hole_between_delivered_candles_is_marked_on_the_next_tick(fake, consume, logs):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101]))
    environment = live_env(fake)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))
    consumer.wait_for(1)

    rows = minute_rows(start, [100, 101, 102, 103, 104, 105])
    fake.set_candles("XXBTZUSD", [rows[0], rows[1], rows[4], rows[5]])  # 102 and 103 never came
    ticks = consumer.wait_for(3)
    assert [(t.close, t.missing_before) for t in ticks] == [(100, 0), (101, 0), (104, 2)]
    (gap,) = events(logs, "data_gap")
    assert (gap["symbol"], gap["missing_candles"], gap["gap_from"], gap["gap_to"]) == (
        "BTC/USD", 2, at(start + 2 * MINUTE).isoformat(), at(start + 4 * MINUTE).isoformat())


def test_warmup_candles_are_checked_too(fake, consume, logs):
    start = ten_minutes_ago()
    rows = minute_rows(start, [100, 101, 102, 103, 104])  # 104: forming
    rows[1] = sent_as(rows[1], high="nan")
    fake.set_candles("XXBTZUSD", rows)
    environment = live_env(fake, warmup_candles=3)
    source = KrakenLiveSource(environment, client=fast_client(environment))
    consumer = consume(source)

    consumer.wait_for(3)
    time.sleep(0.2)
    assert [(t.close, t.warmup, t.missing_before) for t in consumer.ticks] == [
        (100, True, 0), (102, True, 1), (103, False, 0)]
    assert source.candles_rejected == 1


# --- outages once running -------------------------------------------------------------------


@pytest.mark.parametrize("server", ["refused", "tls", "silent"])
def test_every_outage_warning_names_its_root_cause(fake, consume, logs, server):
    with silent_url() as silent:
        url = {"refused": refused_url(), "tls": fake.url.replace("http://", "https://"), "silent": silent}[server]
        environment = live_env(fake, api_url=url, poll_interval_seconds=0.01)
        client = fast_client(environment)
        client.timeout = 200  # ms, so the silent server times out quickly
        consumer = consume(KrakenLiveSource(environment, client=client))
        wait_until(lambda: len(events(logs, "market_data_unavailable")) >= 2, timeout=20)
        consumer.close()

    warnings = events(logs, "market_data_unavailable")
    assert len(warnings) >= 2 and consumer.error is None  # retried, not given up
    expected = {"refused": "connection refused", "tls": "TLS error", "silent": "timed out"}[server]
    assert all(w["cause"].startswith(expected) for w in warnings), warnings[0]
    if server == "tls":
        assert "wrong version number" in warnings[0]["cause"].lower()


def test_an_unsupported_timeframe_is_a_setting_error(fake):
    # The source knows no file; OperationService names it (test_live_startup, end to end).
    with pytest.raises(SettingError) as raised:
        KrakenLiveSource(live_env(fake, timeframe="2h"))
    assert raised.value.key == "timeframe"
    assert str(raised.value).startswith("timeframe: kraken has no 2h candles (use one of: 1m, ")


def test_a_live_environment_gets_the_kraken_source_and_the_api_url_override(fake):
    source = ExecutionEnvironments(threading.Event()).tick_source(live_env(fake))
    assert isinstance(source, KrakenLiveSource)
    assert source.total_ticks is None
    client = make_kraken_client(live_env(fake), with_credentials=False)
    assert (client.urls["api"]["public"], client.urls["api"]["private"]) == (fake.url, fake.url)
    assert client.enableRateLimit and not client.apiKey
    client.rateLimit = 1
    assert client.load_markets()["BTC/USD"]["id"] == "XXBTZUSD"  # really talks to the fake


# --- credentials ----------------------------------------------------------------------------


def test_missing_api_key_is_a_setting_error_naming_the_variable(fake, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(SECRET_ENV, TEST_API_SECRET)
    with pytest.raises(SettingError) as raised:
        make_kraken_client(live_env(fake), with_credentials=True)
    message = str(raised.value)
    assert KEY_ENV in message and SECRET_ENV not in message
    assert TEST_API_SECRET not in message
    assert raised.value.key == "api_key_env"

    # The same error surfaces when the daemon builds a live order gateway.
    live = live_env(fake, mode="live", allow_live_orders=True)
    with pytest.raises(SettingError, match=KEY_ENV):
        ExecutionEnvironments(threading.Event()).order_gateway(live, "s@live")


def test_a_secret_that_is_not_base64_is_rejected_without_showing_it(fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, TEST_API_KEY)
    monkeypatch.setenv(SECRET_ENV, "not base64 at all!")
    with pytest.raises(SettingError, match=SECRET_ENV) as raised:
        make_kraken_client(live_env(fake), with_credentials=True)
    assert raised.value.key == "api_secret_env"
    assert "not base64 at all" not in str(raised.value) and TEST_API_KEY not in str(raised.value)


def test_order_gateways_by_mode(fake, credentials):
    environments = ExecutionEnvironments(threading.Event())
    paper = environments.order_gateway(live_env(fake), "a@live")
    live = environments.order_gateway(live_env(fake, mode="live", allow_live_orders=True), "a@live")
    assert isinstance(paper, SimulatedGateway)
    assert isinstance(live, KrakenOrderGateway)


def test_after_a_restart_candles_closed_meanwhile_only_warm_up_and_the_next_one_trades(fake, consume, logs):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102, 103, 104, 105]))  # 105: forming
    environment = live_env(fake, warmup_candles=1)
    source = KrakenLiveSource(environment, client=fast_client(environment))
    source.resume_after({"BTC/USD": at(start + 2 * MINUTE)})  # 102 was the last candle processed
    consumer = consume(source)

    replayed = consumer.wait_for(3)
    time.sleep(0.2)
    # 102 again (warm-up for the indicators), then 103 and 104 that closed while down: none trades.
    assert [(t.close, t.warmup) for t in consumer.ticks] == [(102, True), (103, True), (104, True)]
    assert replayed[-1].missing_before == 0
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102, 103, 104, 105, 106]))
    assert [(t.close, t.warmup) for t in consumer.wait_for(4)][-1] == (105, False)
    (replay,) = events(logs, "warmup_replayed")
    assert (replay["candles"], replay["resumed"]) == (3, True)


def test_a_restart_after_longer_than_the_history_logs_the_gap(fake, consume, logs):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102]))  # 102: forming
    environment = live_env(fake)
    source = KrakenLiveSource(environment, client=fast_client(environment))
    source.resume_after({"BTC/USD": at(start - 4 * MINUTE)})  # 3 candles older than Kraken still has
    consumer = consume(source)

    ticks = consumer.wait_for(2)
    assert [(t.close, t.warmup, t.missing_before) for t in ticks] == [(100, True, 3), (101, True, 0)]
    (gap,) = events(logs, "data_gap")
    assert (gap["missing_candles"], gap["gap_from"], gap["gap_to"]) == (
        3, at(start - 3 * MINUTE).isoformat(), at(start).isoformat())


# --- answers that are not Kraken's JSON envelope ---------------------------------------------


@pytest.mark.parametrize("body", [b"", b"<html>maintenance</html>"], ids=["empty", "not_json"])
def test_a_200_answer_without_json_is_an_outage_not_an_empty_answer(fake, consume, logs, body):
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102]))
    environment = live_env(fake)
    client = fast_client(environment)
    client.load_markets()
    fake.garble_next(2, body)
    consumer = consume(KrakenLiveSource(environment, client=client))

    assert [t.close for t in consumer.wait_for(1)] == [101]
    warnings = events(logs, "market_data_unavailable")
    assert [w["attempt"] for w in warnings] == [1, 2]
    assert all("BadResponse" in w["error"] and "HTTP 200" in w["cause"] for w in warnings), warnings


def test_an_add_order_answered_200_without_json_raises_rather_than_returning_an_order(fake, credentials):
    client = fast_client(live_env(fake), with_credentials=True)
    client.load_markets()
    fake.garble_next(1, b"")
    with pytest.raises(ccxt.BadResponse) as raised:
        client.create_order("BTC/USD", "market", "buy", 0.001)
    assert isinstance(translate_error(raised.value, client), TemporaryExchangeError)  # outcome unknown
    assert fake.received("private/AddOrder")


def test_a_fetch_answered_after_stop_hands_out_and_announces_nothing(fake, consume, logs):
    """A poll in flight when the daemon is told to stop returns after it: its candles would be
    announced (`candle_closed`) for no run, and announced again after the restart."""
    start = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102]))
    environment = live_env(fake, poll_interval_seconds=0.3)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))
    consumer.wait_for(1)  # the source now waits 0.3 s for its next poll

    fake.delay_replies("public/OHLC", 0.4)
    fake.set_candles("XXBTZUSD", minute_rows(start, [100, 101, 102, 103]))  # 102 closes
    time.sleep(0.4)  # the next poll is under way
    consumer.close()  # returns once the poll has been answered

    assert [t.close for t in consumer.ticks] == [101]
    assert [e["close"] for e in events(logs, "candle_closed")] == [101]


@pytest.mark.slow
def test_a_candle_published_late_is_still_traded_in_order(fake, consume, logs):
    """Kraken's answer may show a candle before an earlier one is published: the later one waits
    one poll for it rather than being handed out after a hole that then fills."""
    start = ten_minutes_ago()
    rows = minute_rows(start, [100, 101, 102, 103, 104, 105])
    fake.set_candles("XXBTZUSD", rows[:2])
    environment = live_env(fake, poll_interval_seconds=0.3)
    consumer = consume(KrakenLiveSource(environment, client=fast_client(environment)))
    consumer.wait_for(1)  # 100

    fake.set_candles("XXBTZUSD", [*rows[:2], *rows[3:5]])  # 102 not published yet; 104 forming
    consumer.wait_for(2)  # 101
    fake.set_candles("XXBTZUSD", rows)  # 102 published, before the next poll
    consumer.wait_for(4)
    time.sleep(0.4)

    assert [(t.close, t.missing_before) for t in consumer.ticks] == [(100, 0), (101, 0), (102, 0), (103, 0), (104, 0)]
    assert not events(logs, "data_gap")


def test_the_rest_source_hands_out_nothing_while_krakens_clock_is_too_far_off(fake, consume, logs, monkeypatch):
    monkeypatch.setattr(exchange_clock, "CLOCK_SKEW_RECHECK_SECONDS", 0.1)
    fake.set_candles("XXBTZUSD", minute_rows(ten_minutes_ago(), [100, 101, 102]))
    fake.clock = lambda: time.time() - 60  # Kraken's clock a minute behind the local one
    environment = live_env(fake, max_clock_skew_warn_seconds=1, max_clock_skew_seconds=5)
    source = KrakenLiveSource(environment, client=fast_client(environment))
    source.prepare()
    consumer = consume(source)
    time.sleep(0.3)
    assert consumer.ticks == []
    (too_large,) = events(logs, "clock_skew_too_large")
    assert too_large["skew_seconds"] == pytest.approx(-60, abs=0.6)  # Time has whole seconds

    fake.clock = time.time
    assert [t.close for t in consumer.wait_for(1)] == [101]
    assert [e["event"] for e in logs if e["event"].startswith("clock_skew_")] == [
        "clock_skew_measured", "clock_skew_too_large", "clock_skew_restored"]


def test_the_skew_warning_limit_may_not_exceed_the_trading_limit(fake):
    with pytest.raises(ValueError, match="max_clock_skew_warn_seconds must not exceed max_clock_skew_seconds"):
        live_env(fake, max_clock_skew_warn_seconds=20, max_clock_skew_seconds=10)
