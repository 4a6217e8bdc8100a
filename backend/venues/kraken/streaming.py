"""Streams Kraken candles over its websocket (ccxt.pro, API v2) and emits each closed, sound one
once, as a block of one row, within a second of its close (`market_data: websocket`).

Invariants:
- Per symbol, candles are handed out once each and in open-time order, whether they came from the
  stream or from the REST backfill, whatever the stream repeats, reorders or revises: only candles
  after the last one handed out (`_last_seen`) are ever considered.
- Every connection backfills over REST before any of its streamed candles is handed out, so a
  reconnect leaves no hole the exchange can still fill; so does every hole in the stream (a
  candle it skipped), once per hole, before the candles after it are handed out.
- A streamed candle is closed once the stream has started a later interval, or once Kraken's
  clock (the local one corrected by the measured skew, see exchange_clock) is CLOSE_GRACE_SECONDS
  past its end (Kraken sends candles on trades only: in a quiet minute nothing else would say
  so). A row opening after Kraken's now is rejected and starts nothing. While that clock is not
  trusted (skew too large, or in doubt) nothing is handed out. A trade reported after the close
  revises a candle already handed out, and is not handed out again.
- `blocks(stop)` runs its asyncio loop in the calling thread and returns within
  STOP_CHECK_SECONDS (+ closing the sockets) of `stop` being set.
- ccxt's errors stop here: network trouble is logged and retried, anything else is translated.
"""

import asyncio
import contextlib
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ccxt
import structlog

from backend.core.event_loops import new_event_loop
from backend.interfaces.candle_window import Candles
from backend.market_data.raw_tick import RawTick
from backend.venues.kraken.client import describe_error, is_network_failure, root_cause, translate_error
from backend.venues.kraken.market_data import Candle, KrakenCandleSource
from backend.venues.kraken.settings import KrakenSettings

if TYPE_CHECKING:
    from backend.venues.kraken.websocket_clients import StreamClient

log = structlog.get_logger(__name__)

STOP_CHECK_SECONDS = 0.05  # how often a wait for the next candle looks at `stop`
RECONNECT_FIRST_BACKOFF_SECONDS = 0.5
RECONNECT_MAX_BACKOFF_SECONDS = 60.0
STREAM_CACHE_CANDLES = 1000  # ccxt keeps this many candles per connection
# After a candle's end, how long its last trades may still take to arrive before the local clock
# closes it; with CLOCK_CHECK_SECONDS, a candle is handed out within a second of its close.
CLOSE_GRACE_SECONDS = 0.5
CLOCK_CHECK_SECONDS = 0.25


def reconnect_backoff(failures: int) -> float:
    """Seconds before the next connection after `failures` in a row: doubling, capped, and
    jittered (half to all of it) so that several symbols or daemons do not reconnect in step."""
    ceiling = min(RECONNECT_FIRST_BACKOFF_SECONDS * 2 ** (failures - 1), RECONNECT_MAX_BACKOFF_SECONDS)
    return ceiling * random.uniform(0.5, 1.0)


class StreamSilentError(Exception):
    """A subscription delivered nothing for `stream_silence_seconds` (ccxt never notices: the
    socket may still answer its pings, or the subscription was refused)."""


class KrakenStreamSource(KrakenCandleSource):
    """Live RAW_TICKs from Kraken's websocket, one connection per symbol.

    A streamed candle is closed once the stream has started a later interval or, in a quiet market,
    once Kraken's clock (`clock`, seconds since the epoch, corrected by the measured skew) is
    CLOSE_GRACE_SECONDS past its end. Each connection: subscribe, backfill over REST the candles closed since the last
    one handed out (on the first connection: warm-up or resume, as the REST source does), then
    hand out streamed candles as they close. A connection that fails, or is silent for
    `stream_silence_seconds`, is replaced after an exponential backoff with jitter. A symbol whose
    stream has been silent for `stale_after_seconds` makes the environment stale: `stale_since`
    (UTC) is set and `market_data_stale` logged, until every stream speaks again
    (`market_data_restored`).
    """

    def __init__(
        self,
        environment: KrakenSettings,
        client: ccxt.kraken | None = None,
        private_client: ccxt.kraken | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(environment, client, private_client, clock)
        # symbol -> open time (ms) -> the version of a row rejected as opening in the future
        self._future_rows: dict[str, dict[int, tuple]] = {symbol: {} for symbol in self._symbols}
        self._silence_seconds = environment.stream_silence_seconds
        self._stale_after_seconds = environment.stale_after_seconds
        # symbol -> monotonic time the stream last brought something new (a resubscription's snapshot
        # of unchanged candles is no news: a quiet or frozen market still turns the environment stale)
        self._last_heard: dict[str, float] = {}
        self._latest_row: dict[str, tuple] = {}  # symbol -> the newest streamed row, as last seen
        self.stale_since: datetime | None = None  # set while some symbol's stream is silent too long
        self.reconnects = 0  # connections replaced (all symbols), for the status server

    # --- the feed thread's side -----------------------------------------------------------------

    def blocks(self, stop: threading.Event) -> Iterator[Candles]:
        loop = new_event_loop()
        ready: deque[RawTick] = deque()
        arrived = asyncio.Event()

        def hand_out(new: list[RawTick]) -> None:
            ready.extend(new)
            arrived.set()

        started = time.monotonic()
        self._last_heard = dict.fromkeys(self._symbols, started)
        followers = [loop.create_task(self._follow(symbol, hand_out)) for symbol in self._symbols]
        followers.append(loop.create_task(self._watch_clock()))
        try:
            while True:
                candle = loop.run_until_complete(self._next_candle(ready, arrived, followers, stop))
                if candle is None:
                    return
                yield candle
        finally:
            for follower in followers:
                follower.cancel()
            loop.run_until_complete(asyncio.gather(*followers, return_exceptions=True))
            # A REST backfill still running in the default executor finishes on its own.
            loop.close()

    async def _next_candle(self, ready: deque[RawTick], arrived: asyncio.Event,
                           followers: list[asyncio.Task], stop: threading.Event) -> Candles | None:
        """The next candle to hand out, or None once `stop` is set; a follower's fatal error is raised."""
        while not stop.is_set():
            while ready:
                self._frames.add(ready.popleft())
            frame = next(self._frames_ready(stop), None)  # the frames not taken now stay assembled
            if frame is not None:
                return frame
            for follower in followers:
                if follower.done():
                    follower.result()  # only a translated, non-network error ends a follower
            self._watch_staleness()
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), STOP_CHECK_SECONDS)
        return None

    async def _watch_clock(self) -> None:
        """Kraken's clock measured whenever due, off the loop (a slow request delays no candle or stop)."""
        while True:
            if self._exchange_clock.due():
                await asyncio.to_thread(self._exchange_clock.check)
            await asyncio.sleep(STOP_CHECK_SECONDS)

    def _watch_staleness(self) -> None:
        now = time.monotonic()
        silent = {symbol: now - heard for symbol, heard in self._last_heard.items()
                  if now - heard >= self._stale_after_seconds}
        if silent and self.stale_since is None:
            self.stale_since = datetime.now(UTC)
            log.warning("market_data_stale", exchange="kraken", symbols=sorted(silent),
                        silent_seconds=round(max(silent.values()), 3),
                        stale_after_seconds=self._stale_after_seconds)
        elif not silent and self.stale_since is not None:
            stale_seconds = (datetime.now(UTC) - self.stale_since).total_seconds()
            self.stale_since = None
            log.info("market_data_restored", exchange="kraken", stale_seconds=round(stale_seconds, 3))

    # --- one symbol -----------------------------------------------------------------------------

    async def _follow(self, symbol: str, hand_out: Callable[[list[RawTick]], None]) -> None:
        """Connections for `symbol`, one after the other, for as long as the feed runs."""
        failures = 0
        while True:
            heard_before = self._last_heard[symbol]
            try:
                await self._connection(symbol, hand_out)
            except StreamSilentError:
                reason: dict[str, object] = {"cause": "stream silent", "silent_seconds": self._silence_seconds}
            except (ccxt.BaseError, OSError) as error:  # ccxt passes a failed send's OSError on as is
                if not is_network_failure(error):
                    raise translate_error(error, self._client) from None
                reason = {"cause": root_cause(error, self._client), "error": describe_error(error, self._client)}
            # A connection that streamed something starts the backoff over.
            failures = 1 if self._last_heard[symbol] != heard_before else failures + 1
            delay = reconnect_backoff(failures)
            self.reconnects += 1
            log.warning("market_data_unavailable", exchange="kraken", symbol=symbol, transport="websocket",
                        attempt=failures, retry_in_seconds=round(delay, 3), **reason)
            await asyncio.sleep(delay)

    async def _connection(self, symbol: str, hand_out: Callable[[list[RawTick]], None]) -> None:
        """Subscribe, backfill, then hand out streamed candles as they close; only an error or
        silence (StreamSilentError) ends it."""
        exchange = self._stream_client()
        # A watch is kept pending: ccxt fails it when the connection is lost, and only then.
        watch = asyncio.ensure_future(exchange.watch_ohlcv(symbol, self._timeframe))
        changed: asyncio.Future = asyncio.ensure_future(exchange.candles_changed.wait())
        try:
            backfilled = False  # its streamed candles may be handed out once it is
            backfilled_hole: int | None = None  # the missing candle last asked of REST
            last_message = time.monotonic()
            while True:
                # Subscribed first, backfilled second: a candle closing in between is in ccxt's cache.
                # While the clock skew is too large nothing is handed out, so the backfill waits too.
                if not backfilled and self._exchange_clock.trusted():
                    ticks = self._ticks_from_rest(symbol, await asyncio.to_thread(self._fetch, symbol))
                    backfilled = self._exchange_clock.trusted()
                    if ticks:
                        self._last_heard[symbol] = time.monotonic()
                    hand_out(ticks)
                    last_message = time.monotonic()
                silence_left = last_message + self._silence_seconds - time.monotonic()
                if silence_left <= 0:
                    raise StreamSilentError()
                # Woken by a message, or by the clock: a quiet market's candle closes on time too.
                done, _ = await asyncio.wait({watch, changed}, timeout=min(silence_left, CLOCK_CHECK_SECONDS),
                                             return_when=asyncio.FIRST_COMPLETED)
                if done:
                    last_message = time.monotonic()
                if watch.done():
                    watch.result()  # raises the connection's error
                    watch = asyncio.ensure_future(exchange.watch_ohlcv(symbol, self._timeframe))
                if exchange.connections > 1:  # ccxt redialled by itself: this connection was not backfilled
                    raise ccxt.NetworkError("connection replaced by the client")
                streamed = exchange.cached_candles(symbol, self._timeframe)
                if changed.done():
                    exchange.candles_changed.clear()
                    changed = asyncio.ensure_future(exchange.candles_changed.wait())
                    if exchange.message_sent is not None:
                        self._exchange_clock.note_message_time(exchange.message_sent)
                    newest = max((tuple(row) for row in streamed if isinstance(row[0], int)), default=None)
                    if newest is not None and newest != self._latest_row.get(symbol):
                        self._latest_row[symbol] = newest
                        self._last_heard[symbol] = time.monotonic()
                if not backfilled:
                    continue
                closed = self._closed_after_last(symbol, streamed)
                hole = self._first_hole(symbol, closed)
                if hole is not None and hole != backfilled_hole:  # Kraken may have what the stream skipped
                    backfilled_hole = hole
                    hand_out(self._ticks_from_rest(symbol, await asyncio.to_thread(self._fetch, symbol)))
                    closed = self._closed_after_last(symbol, streamed)
                hand_out(self._hand_out(symbol, closed))
        finally:
            for pending in (watch, changed):
                pending.cancel()
            await asyncio.gather(watch, changed, return_exceptions=True)
            await exchange.close()

    def _closed_after_last(self, symbol: str, streamed: list[Candle]) -> list[Candle]:
        """Streamed candles after the last one handed out that are closed (a later interval began,
        or Kraken's clock is past their end and grace), one per open time, oldest first; none while
        the clock skew is too large. A row opening after Kraken's now (beyond the tolerated skew) is
        rejected, once per version, and closes nothing. ccxt keeps one row per open time (the latest
        version), in arrival order, which after a revision or a resent candle is not time order."""
        if not self._exchange_clock.trusted():
            return []
        now_ms = self._exchange_clock.now() * 1000
        by_open_time = {row[0]: row for row in streamed
                        if isinstance(row[0], int) and not self._from_the_future(symbol, row, now_ms)}
        if not by_open_time:
            return []
        forming = max(by_open_time)
        if forming + self._timeframe_ms <= now_ms - CLOSE_GRACE_SECONDS * 1000:
            forming += 1  # its interval is over by Kraken's clock: closed too
        closed = [by_open_time[t] for t in sorted(by_open_time) if t < forming]
        if symbol not in self._last_seen:  # REST had no closed candle yet: start as it would, with the latest
            return closed[-1:]
        return [candle for candle in closed if candle[0] > self._last_seen[symbol]]

    def _from_the_future(self, symbol: str, row: Candle, now_ms: float) -> bool:
        """The row opens after Kraken's now, beyond the skew tolerated, or is a version of a row
        rejected so (it stays rejected when the time comes: only a new version may count)."""
        version = tuple(row)
        if self._future_rows[symbol].get(row[0]) == version:
            return True
        ahead_seconds = (row[0] - now_ms) / 1000
        if ahead_seconds <= self._exchange_clock.warn_seconds:
            return False
        self._future_rows[symbol][row[0]] = version
        self._reject(symbol, datetime.fromtimestamp(row[0] / 1000, tz=UTC),
                     f"opens {ahead_seconds:.0f} s after kraken's time now (a candle from the future)")
        return True

    def _stream_client(self) -> "StreamClient":
        """A fresh websocket client (one connection, an empty candle cache) sharing the markets the
        start-up check loaded, so it makes no REST request of its own."""
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "options": {"OHLCVLimit": STREAM_CACHE_CANDLES},
        }
        if self._environment.ws_url:
            config["urls"] = {"api": {"ws": {"publicV2": self._environment.ws_url},
                                      "public": self._client.urls["api"]["public"]}}
        from backend.venues.kraken.websocket_clients import StreamClient  # ccxt.pro: only once a stream connects

        exchange = StreamClient(config)
        if self._client.markets:
            exchange.set_markets(self._client.markets, self._client.currencies)
        return exchange
