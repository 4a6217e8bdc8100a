"""Live Kraken candles over the websocket (ccxt.pro), against local fakes of Kraken's websocket
and REST APIs: each candle once and in order, backfill after a reconnect, the silence watchdog,
revised candles, staleness, and a prompt stop."""

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from backend.venues.kraken import exchange_clock, streaming
from backend.venues.kraken.factory import KrakenVenue
from backend.venues.kraken.market_data import KrakenLiveSource
from backend.venues.kraken.settings import KrakenSettings
from backend.venues.kraken.streaming import KrakenStreamSource
from tests.fake_kraken import FakeKraken
from tests.fake_kraken_ws import FakeKrakenStream, running_fake_kraken_ws, ws_candle
from tests.live_support import fast_client, live_env
from tests.test_live_kraken import MINUTE, Consumer, at, consume, minute_rows, ten_minutes_ago, wait_until

__all__ = ["consume"]  # the fixture


@pytest.fixture
def stream() -> Iterator[FakeKrakenStream]:
    with running_fake_kraken_ws() as server:
        yield server


@pytest.fixture(autouse=True)
def quick_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "RECONNECT_FIRST_BACKOFF_SECONDS", 0.05)


@pytest.fixture(autouse=True)
def quick_clock_rechecks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' clocks jump (a minute at once): a stream message stamped before a jump and read
    after it puts the clock in doubt until the next measurement, which here comes at once."""
    monkeypatch.setattr(exchange_clock, "CLOCK_SKEW_RECHECK_SECONDS", 0.1)


UNKNOWN_SKEW = 0.6  # seconds: Kraken's `Time` has whole seconds, a measured skew is within half a second


def stream_env(fake: FakeKraken, stream: FakeKrakenStream, **overrides: object) -> KrakenSettings:
    return live_env(fake, market_data="websocket", ws_url=stream.url, **overrides)


def newest_candle_clock(fake: FakeKraken, stream: FakeKrakenStream) -> Callable[[], float]:
    """A clock 30 s into the newest candle the fakes hold, running (a test lasts less than the
    other 30): no candle is closed by the clock, only by the stream starting a later one, and the
    candles of a test opened minutes ago are not 'from the future'."""
    started = time.monotonic()

    def now() -> float:
        rest = [row[0] for rows in list(fake.candles.values()) for row in rows if isinstance(row[0], int)]
        streamed = stream.newest_candle_time()
        newest = max([*rest, *([streamed] if streamed is not None else [])])
        return newest + 30.0 + (time.monotonic() - started)
    return now


def started(fake: FakeKraken, stream: FakeKrakenStream, consume, clock: Callable[[], float] | None = None,
            **overrides: object) -> tuple[KrakenStreamSource, Consumer]:
    """A prepared source consumed; `clock` is the local clock and Kraken's (the fakes') alike."""
    clock = clock or newest_candle_clock(fake, stream)
    fake.clock = stream.clock = clock
    environment = stream_env(fake, stream, **overrides)
    source = KrakenStreamSource(environment, client=fast_client(environment), clock=clock)
    source.prepare()
    return source, consume(source)


def btc(open_time: int, close: float) -> dict:
    return ws_candle("BTC/USD", open_time, close)


def delivered(consumer: Consumer) -> list[tuple[object, float]]:
    return [(tick.timestamp, tick.close) for tick in consumer.ticks]


@pytest.mark.slow
def test_candles_arrive_once_and_in_order_across_a_forced_disconnect_with_a_rest_backfill(fake, stream, consume,
                                                                                            logs):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101, 102]))  # REST: t+1 latest closed, t+2 forming
    stream.send(btc(t + 1 * MINUTE, 101), btc(t + 2 * MINUTE, 102))  # the snapshot a subscription gets
    _, consumer = started(fake, stream, consume)

    consumer.wait_for(1)  # the start-up backfill: the latest closed candle
    stream.wait_for_subscriptions(1)
    stream.send(btc(t + 2 * MINUTE, 102.5), btc(t + 3 * MINUTE, 103))  # t+3 begins: t+2 has closed
    consumer.wait_for(2)

    stream.drop_connections()
    # While it is away: t+3..t+5 close and t+6 forms; only REST will ever tell of t+4 and t+5.
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101, 102.5, 103, 104, 105, 106]))
    stream.send(btc(t + 6 * MINUTE, 106))
    consumer.wait_for(5)
    stream.wait_for_subscriptions(2)
    stream.send(btc(t + 6 * MINUTE, 106.5), btc(t + 7 * MINUTE, 107))
    consumer.wait_for(6)
    time.sleep(0.2)

    assert delivered(consumer) == [(at(t + 1 * MINUTE), 101), (at(t + 2 * MINUTE), 102.5), (at(t + 3 * MINUTE), 103),
                                   (at(t + 4 * MINUTE), 104), (at(t + 5 * MINUTE), 105), (at(t + 6 * MINUTE), 106.5)]
    assert not any(tick.warmup or tick.missing_before for tick in consumer.ticks)
    assert fake.received("public/OHLC")[-1].params["since"]  # the backfill asked for what follows the last
    assert [e["cause"] for e in logs if e["event"] == "market_data_unavailable"] == [
        "NetworkError: Connection closed by remote server, closing code 1011"]
    assert consumer.close() < 0.6


def test_streamed_candles_of_one_open_time_go_on_together_whichever_symbol_closes_first(fake, stream, consume):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    fake.set_candles("XETHZUSD", minute_rows(t, [10, 11]))
    _, consumer = started(fake, stream, consume, symbols=["BTC/USD", "ETH/USD"], frame_wait_seconds=20)
    consumer.wait_for(2)  # the start-up backfill: t of each, one frame
    stream.wait_for_subscriptions(2)
    stream.send(ws_candle("ETH/USD", t + MINUTE, 11), ws_candle("ETH/USD", t + 2 * MINUTE, 12))  # ETH's t+1 closes
    time.sleep(0.3)
    assert len(consumer.ticks) == 2  # it waits for BTC's
    stream.send(btc(t + MINUTE, 101), btc(t + 2 * MINUTE, 102))
    consumer.wait_for(4)

    assert [[(tick.symbol, tick.close) for tick in frame] for frame in consumer.frames] == [
        [("BTC/USD", 100), ("ETH/USD", 10)], [("BTC/USD", 101), ("ETH/USD", 11)]]


@pytest.mark.slow
def test_a_revised_repeated_or_reordered_candle_is_not_handed_out_again(fake, stream, consume):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    source, consumer = started(fake, stream, consume)
    consumer.wait_for(1)  # t
    stream.wait_for_subscriptions(1)
    stream.send(btc(t + 1 * MINUTE, 101), btc(t + 2 * MINUTE, 102))
    consumer.wait_for(2)  # t+1

    stream.send(btc(t + 1 * MINUTE, 999))  # t+1 revised after it was handed out
    stream.send(btc(t + 2 * MINUTE, 102.5), btc(t, 100), btc(t + 1 * MINUTE, 101))  # repeated, out of order
    stream.send(btc(t + 3 * MINUTE, 103), btc(t + 1 * MINUTE, 998))  # t+2 closes; t+1 revised again
    consumer.wait_for(3)
    stream.send(btc(t + 4 * MINUTE, 104))
    consumer.wait_for(4)
    time.sleep(0.2)

    assert delivered(consumer) == [(at(t), 100), (at(t + MINUTE), 101), (at(t + 2 * MINUTE), 102.5),
                                   (at(t + 3 * MINUTE), 103)]
    assert source.candles_rejected == 0


@pytest.mark.slow
def test_the_watchdog_reconnects_a_silent_stream_and_reports_the_environment_stale_until_it_speaks(
        fake, stream, consume, logs):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    stream.send(btc(t + MINUTE, 101))
    stream.silent = True  # the socket stays open and answers pings, but no candle comes
    source, consumer = started(fake, stream, consume, stream_silence_seconds=0.2, stale_after_seconds=0.5)
    consumer.wait_for(1)

    stream.wait_for_subscriptions(3)  # the watchdog resubscribed on fresh connections
    wait_until(lambda: source.stale_since is not None, 2)
    assert source.stale_since is not None
    silent = [e for e in logs if e["event"] == "market_data_unavailable"]
    assert silent[0]["cause"] == "stream silent" and silent[0]["transport"] == "websocket"
    assert [e["symbols"] for e in logs if e["event"] == "market_data_stale"] == [["BTC/USD"]]

    stream.silent = False
    wait_until(lambda: source.stale_since is None, 3)
    assert source.stale_since is None
    assert [e["event"] for e in logs if e["event"].startswith("market_data_")][-1] == "market_data_restored"
    stream.send(btc(t + 2 * MINUTE, 102))
    consumer.wait_for(2)
    assert delivered(consumer) == [(at(t), 100), (at(t + MINUTE), 101)]
    consumer.close()


@pytest.mark.slow
def test_a_refused_subscription_is_retried_by_the_watchdog(fake, stream, consume, logs):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    stream.refuse = True
    _, consumer = started(fake, stream, consume, stream_silence_seconds=0.2)
    stream.wait_for_subscriptions(2)
    stream.refuse = False
    stream.wait_for_subscriptions(3)
    stream.send(btc(t + MINUTE, 101), btc(t + 2 * MINUTE, 102))
    consumer.wait_for(2)
    assert delivered(consumer) == [(at(t), 100), (at(t + MINUTE), 101)]
    assert consumer.close() < 0.6


def test_stop_ends_the_stream_promptly_even_while_it_waits(fake, stream, consume):
    fake.set_candles("XXBTZUSD", minute_rows(ten_minutes_ago(), [100, 101]))
    _, consumer = started(fake, stream, consume)
    consumer.wait_for(1)
    stream.wait_for_subscriptions(1)
    assert consumer.close() < 0.6


def test_market_data_chooses_the_source_websocket_by_default(fake, stream):
    venue = KrakenVenue(threading.Event())
    assert isinstance(venue.tick_source(stream_env(fake, stream)), KrakenStreamSource)
    assert isinstance(venue.tick_source(live_env(fake)), KrakenLiveSource)  # the tests' default: rest
    assert KrakenSettings(type="live", display_name="k", exchange="kraken", symbols=["BTC/USD"], timeframe="1h",
                          starting_capital=1, fee_rate=0).market_data == "websocket"
    with pytest.raises(ValueError, match="api_url and ws_url are overridden together"):
        live_env(fake, market_data="websocket")


@pytest.mark.slow
def test_a_stream_that_only_repeats_old_candles_turns_the_environment_stale(fake, stream, consume, logs):
    """A frozen feed: every resubscription gets a snapshot, but of the same old candle."""
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    stream.send(btc(t + MINUTE, 101))  # held by the fake, sent in every subscription's snapshot
    source, consumer = started(fake, stream, consume, stream_silence_seconds=0.2, stale_after_seconds=0.6)
    consumer.wait_for(1)

    stream.wait_for_subscriptions(5)  # the watchdog resubscribed, each time to the same snapshot
    wait_until(lambda: source.stale_since is not None, 2)
    assert source.stale_since is not None
    assert [e["event"] for e in logs if e["event"] == "market_data_stale"] == ["market_data_stale"]

    stream.send(btc(t + 2 * MINUTE, 102))  # news: the market moves again
    wait_until(lambda: source.stale_since is None, 3)
    assert source.stale_since is None
    consumer.close()


@pytest.mark.slow
def test_a_quiet_minute_is_closed_by_the_local_clock_and_a_late_trade_is_not_handed_out_again(fake, stream, consume):
    """Kraken sends candles on trades only: without a trade in the next minute, the clock closes
    the candle CLOSE_GRACE_SECONDS after its end, not the next trade whenever it comes."""
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))  # REST: t closed, t+1 forming
    # The local clock (and Kraken's), in the middle of t+1; Kraken's `Time` has whole seconds, so
    # the skew measured at start is 0 (not the half second an integer time would make it).
    now = [t + MINUTE + 30.5]
    _, consumer = started(fake, stream, consume, clock=lambda: now[0])
    consumer.wait_for(1)
    stream.wait_for_subscriptions(1)
    stream.send(btc(t + MINUTE, 101.5))  # a trade in t+1
    time.sleep(2 * streaming.CLOCK_CHECK_SECONDS)  # read before the clock moves (see quick_clock_rechecks)

    # The skew is measured again after each jump, to within the half second Kraken's whole-second
    # `Time` leaves unknown: the boundaries below are that far from the grace's end.
    now[0] = t + 2 * MINUTE + streaming.CLOSE_GRACE_SECONDS - UNKNOWN_SKEW  # t+1 is over, its grace is not
    time.sleep(4 * streaming.CLOCK_CHECK_SECONDS)
    assert delivered(consumer) == [(at(t), 100)]

    now[0] = t + 2 * MINUTE + streaming.CLOSE_GRACE_SECONDS + UNKNOWN_SKEW  # no message: the clock closes t+1
    consumer.wait_for(2)
    stream.send(btc(t + MINUTE, 999))  # a trade of t+1 reported late: t+1 was handed out already
    stream.send(btc(t + 2 * MINUTE, 102))
    now[0] = t + 3 * MINUTE + streaming.CLOSE_GRACE_SECONDS + UNKNOWN_SKEW
    consumer.wait_for(3)
    time.sleep(4 * streaming.CLOCK_CHECK_SECONDS)

    assert delivered(consumer) == [(at(t), 100), (at(t + MINUTE), 101.5), (at(t + 2 * MINUTE), 102)]
    consumer.close()


def test_a_malformed_frame_is_one_log_event_not_a_traceback_on_stderr(fake, stream, consume, logs, caplog):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    _, consumer = started(fake, stream, consume, stream_silence_seconds=0.3)
    consumer.wait_for(1)
    stream.wait_for_subscriptions(1)

    # ccxt stops reading the connection after it (its receive loop died): the watchdog replaces it.
    stream.send_raw('{"channel": "ohlc", "type": "update", "data": [')  # cut short
    stream.send(btc(t + MINUTE, 101), btc(t + 2 * MINUTE, 102))
    consumer.wait_for(2)
    wait_until(lambda: any(e["event"] == "event_loop_error" for e in logs), 2)

    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []  # asyncio's own handler
    (error,) = [e for e in logs if e["event"] == "event_loop_error"]
    assert error["log_level"] == "error" and "JSONDecodeError" in error["error"]
    stream.wait_for_subscriptions(2)
    assert delivered(consumer) == [(at(t), 100), (at(t + MINUTE), 101)]
    consumer.close()


@pytest.mark.slow
def test_a_candle_the_stream_skips_on_the_same_connection_is_backfilled_over_rest(fake, stream, consume, logs):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    _, consumer = started(fake, stream, consume)
    consumer.wait_for(1)  # t
    stream.wait_for_subscriptions(1)
    stream.send(btc(t + MINUTE, 101), btc(t + 2 * MINUTE, 102))
    consumer.wait_for(2)  # t+1

    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101, 102, 103, 104, 105]))  # Kraken has t+3
    stream.send(btc(t + 4 * MINUTE, 104))  # the stream never tells of t+3
    stream.send(btc(t + 5 * MINUTE, 105))  # t+4 closes: t+3 is missing before it
    consumer.wait_for(5)
    time.sleep(0.2)

    assert delivered(consumer) == [(at(t + i * MINUTE), 100 + i) for i in range(5)]
    assert not [e for e in logs if e["event"] == "data_gap"]
    assert len(fake.received("public/OHLC")) == 2  # at connect, and once for the hole
    consumer.close()


# --- Kraken's clock ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_row_from_the_future_is_rejected_and_closes_no_candle(fake, stream, consume, logs):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    now = [t + MINUTE + 30.5]  # the local clock and Kraken's, in the middle of t+1
    source, consumer = started(fake, stream, consume, clock=lambda: now[0])
    consumer.wait_for(1)
    stream.wait_for_subscriptions(1)

    stream.send(btc(t + MINUTE, 101), btc(t + 11 * MINUTE, 999))  # one row ten minutes ahead
    time.sleep(4 * streaming.CLOCK_CHECK_SECONDS)
    assert delivered(consumer) == [(at(t), 100)]  # t+1 is still forming on Kraken's clock
    (rejected,) = [e for e in logs if e["event"] == "candle_rejected"]
    assert rejected["candle_time"] == at(t + 11 * MINUTE).isoformat()
    assert rejected["reason"] == "opens 570 s after kraken's time now (a candle from the future)"

    now[0] = t + 2 * MINUTE + 10.5
    stream.send(btc(t + MINUTE, 101.5), btc(t + 2 * MINUTE, 102))  # t+2 began: t+1 has closed
    consumer.wait_for(2)
    time.sleep(4 * streaming.CLOCK_CHECK_SECONDS)
    assert delivered(consumer) == [(at(t), 100), (at(t + MINUTE), 101.5)]

    now[0] = t + 12 * MINUTE + 30.5  # the rejected row's minute is over: it still does not count
    consumer.wait_for(3)  # t+2, closed by the clock
    time.sleep(4 * streaming.CLOCK_CHECK_SECONDS)
    assert delivered(consumer) == [(at(t), 100), (at(t + MINUTE), 101.5), (at(t + 2 * MINUTE), 102)]
    assert source.candles_rejected == 1
    consumer.close()


@pytest.mark.slow
def test_no_candle_is_handed_out_while_the_local_clock_is_too_far_from_krakens(fake, stream, consume, logs):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    local = newest_candle_clock(fake, stream)
    offset = [30.0]  # Kraken's clock is 30 s ahead; max_clock_skew_seconds is 10
    environment = stream_env(fake, stream)
    fake.clock = stream.clock = lambda: local() + offset[0]
    source = KrakenStreamSource(environment, client=fast_client(environment), clock=local)
    source.prepare()
    consumer = consume(source)
    stream.wait_for_subscriptions(1)
    stream.send(btc(t + MINUTE, 101), btc(t + 2 * MINUTE, 102))
    time.sleep(0.4)
    assert consumer.ticks == []
    (too_large,) = [e for e in logs if e["event"] == "clock_skew_too_large"]
    assert too_large["log_level"] == "error" and too_large["skew_seconds"] == pytest.approx(30, abs=UNKNOWN_SKEW)

    offset[0] = 3.0  # above max_clock_skew_warn_seconds (2) only: a warning, and candles flow
    consumer.wait_for(2)
    assert delivered(consumer) == [(at(t), 100), (at(t + MINUTE), 101)]
    (high,) = [e for e in logs if e["event"] == "clock_skew_high"]
    assert high["log_level"] == "warning" and high["skew_seconds"] == pytest.approx(3, abs=UNKNOWN_SKEW)
    assert [e["event"] for e in logs if e["event"].startswith("clock_skew_")] == [
        "clock_skew_measured", "clock_skew_too_large", "clock_skew_high", "clock_skew_restored"]
    consumer.close()


@pytest.mark.slow
def test_a_local_clock_stepped_forward_closes_no_candle_early(fake, stream, consume, logs):
    """Seen at once (the local clock moved against the monotonic one), then measured."""
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    kraken = newest_candle_clock(fake, stream)
    step = [0.0]
    _, consumer = started(fake, stream, consume, clock=lambda: kraken() + step[0])
    fake.clock = stream.clock = kraken
    consumer.wait_for(1)
    stream.wait_for_subscriptions(1)
    stream.send(btc(t + MINUTE, 101.5))  # t+1 forming on Kraken's clock
    time.sleep(2 * streaming.CLOCK_CHECK_SECONDS)

    step[0] = 600.0  # the local clock jumps ten minutes ahead, in a quiet market (no message)
    wait_until(lambda: any(e["event"] == "clock_skew_too_large" for e in logs), 2)
    time.sleep(4 * streaming.CLOCK_CHECK_SECONDS)
    assert delivered(consumer) == [(at(t), 100)]

    step[0] = 0.0  # put right (NTP)
    wait_until(lambda: any(e["event"] == "clock_skew_restored" for e in logs), 2)
    stream.send(btc(t + 2 * MINUTE, 102))
    consumer.wait_for(2)
    assert delivered(consumer) == [(at(t), 100), (at(t + MINUTE), 101.5)]
    consumer.close()


def test_a_stream_message_stamped_far_from_krakens_clock_as_measured_has_it_measured_again(
        fake, stream, consume, logs):
    t = ten_minutes_ago()
    fake.set_candles("XXBTZUSD", minute_rows(t, [100, 101]))
    local = newest_candle_clock(fake, stream)
    kraken_ahead = [0.0]
    _, consumer = started(fake, stream, consume, clock=local)
    fake.clock = stream.clock = lambda: local() + kraken_ahead[0]
    consumer.wait_for(1)
    stream.wait_for_subscriptions(1)
    time.sleep(2 * streaming.CLOCK_CHECK_SECONDS)
    assert len(fake.received("public/Time")) == 1  # at start; the next is a minute away

    kraken_ahead[0] = 600.0  # the local clock now lags ten minutes (as if it had drifted)
    stream.send(btc(t + MINUTE, 101.5))  # stamped by Kraken's clock
    wait_until(lambda: any(e["event"] == "clock_skew_too_large" for e in logs), 2)
    (too_large,) = [e for e in logs if e["event"] == "clock_skew_too_large"]
    assert too_large["skew_seconds"] == pytest.approx(600, abs=UNKNOWN_SKEW)
    consumer.close()
