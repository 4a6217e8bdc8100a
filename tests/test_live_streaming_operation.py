"""The whole daemon on Kraken's websocket: the real CLI in real processes, trading live orders on
streamed candles (fake Kraken REST and websocket servers in this process) through a dropped
connection and a restart. Every closed candle must be traded once, in order, none skipped and none
twice, and the books must match the exchange.

Candles here opened hours ago, so the daemon's clock closes each streamed candle as it arrives."""

import signal
from collections.abc import Iterator

import pytest

from tests.fake_kraken import FakeKraken
from tests.fake_kraken_ws import FakeKrakenStream, running_fake_kraken_ws, ws_candle
from tests.test_restart import (
    LINK,
    PRICE,
    Minutes,
    assert_books_match_the_exchange,
    assert_no_traceback,
    daemons,
    live_operation,
    stop,
    wait_for,
)

pytestmark = pytest.mark.e2e

__all__ = ["daemons"]  # the fixture


@pytest.fixture
def stream() -> Iterator[FakeKrakenStream]:
    with running_fake_kraken_ws() as server:
        yield server


def stream_row(minutes: Minutes, index: int) -> dict:
    """Row index of the fake's REST candles as the websocket sends it."""
    return ws_candle("BTC/USD", int(minutes.rows[index][0]), PRICE)


def fill_times(*logs: list[dict]) -> list[str]:
    return [fill["candle_time"] for log in logs for fill in log]


def test_the_daemon_trades_each_streamed_candle_once_across_a_dropped_connection_and_a_restart(
        tmp_path, fake: FakeKraken, stream: FakeKrakenStream, daemons):
    operation = live_operation(tmp_path, fake, market_data="websocket", ws_url=stream.url)
    data_dir = tmp_path / "state"
    minutes = Minutes(fake, 4)  # REST: rows 0-2 closed, row 3 forming
    stream.send(stream_row(minutes, 3))  # the websocket has row 3: its snapshot on subscribing

    first = daemons(operation, data_dir)
    # A fresh start trades the latest closed candle REST knows (row 2), then row 3 from the stream.
    wait_for(first, "order_filled", count=2)
    minutes.add()
    stream.send(stream_row(minutes, 4))
    wait_for(first, "order_filled", count=3)

    stream.drop_connections()
    minutes.add(2)  # rows 5 and 6 while the connection is down; only REST will tell of row 5
    stream.send(stream_row(minutes, 6))  # held by the fake for the next subscription's snapshot
    filled = wait_for(first, "order_filled", count=5)
    (dropped,) = wait_for(first, "market_data_unavailable")
    assert dropped["transport"] == "websocket" and "closing code 1011" in dropped["cause"]
    stop(first)
    assert fill_times(filled) == [minutes.time(i) for i in range(2, 7)]

    minutes.add()
    stream.send(stream_row(minutes, 7))  # closed while no daemon runs
    second = daemons(operation, data_dir)
    (restored,) = wait_for(second, "account_restored")
    assert restored["trades"] == 5
    minutes.add()
    stream.send(stream_row(minutes, 8))
    (fill,) = wait_for(second, "order_filled")
    assert fill["candle_time"] == minutes.time(8)  # row 7 closed while it was down: context only
    second.signal(signal.SIGTERM)
    assert second.finish()[0] == 0, second.stderr

    assert len(first.events("order_filled")) == 5 and len(second.events("order_filled")) == 1
    for daemon in (first, second):
        assert not daemon.events("candle_already_processed")
        assert not daemon.events("order_outcome_unknown")
    assert_no_traceback(first, second)
    assert_books_match_the_exchange(data_dir, fake, (LINK,))
