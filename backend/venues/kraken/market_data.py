"""Kraken candles as RAW_TICKs: what every Kraken source shares (start-up checks, restart cursor,
closed-candle rules of the REST answer, candle checks) and the REST polling source.

Invariants:
- `prepare()` returns only when Kraken answered within `startup_timeout_seconds`, lists every
  symbol and, for `mode: live`, accepted the API key; otherwise it raises SettingError (symbols,
  api_key_env) or ExchangeUnavailableError naming the URL, the time waited and the root cause.
- No candle becomes a tick unless it passes `candle_problem` and its symbol's `CandleSequence`;
  a rejected one is logged (`candle_rejected`), counted in `candles_rejected` and skipped.
- A symbol's candles are handed out at most once each, in open-time order: `_last_seen` only grows.
  The candles of one open time go out together (FrameAssembly, backend.market_data.live_frames:
  once every symbol reached it, or after `frame_wait_seconds`), one as a block of one row
  (CandleColumns, warm-up flagged in its `warmup` column), several as a CandleWindow.
- A candle is closed by Kraken's clock (exchange_clock), never the local one alone; while that
  clock is not trusted (skew above `max_clock_skew_seconds`, or in doubt) none is handed out.
"""

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import ccxt
import structlog

from backend.errors import ExchangeUnavailableError, SettingError
from backend.interfaces.candle_window import Candles
from backend.market_data.candle_checks import CandleSequence, candle_problem, log_data_gap
from backend.market_data.live_frames import FrameAssembly
from backend.market_data.raw_tick import RawTick, candles_of
from backend.market_data.tick_source import TickSource
from backend.redaction import without_url_credentials
from backend.venues.kraken.client import (
    describe_error,
    is_key_rejected,
    is_network_failure,
    make_kraken_client,
    root_cause,
    translate_error,
)
from backend.venues.kraken.exchange_clock import ExchangeClock
from backend.venues.kraken.settings import KrakenSettings

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 300.0
STARTUP_FIRST_BACKOFF_SECONDS = 0.25
STARTUP_MAX_BACKOFF_SECONDS = 2.0
MIN_REQUEST_TIMEOUT_MS = 100  # a request needs some time even right before the start-up deadline
Candle = list  # ccxt OHLCV row: [open_time_ms, open, high, low, close, volume]; values may be None
T = TypeVar("T")


class KrakenCandleSource(TickSource):
    """What every Kraken market data source shares: the start-up checks, the restart cursor, the
    closed-candle rules of a REST OHLC answer (first answer: warm-up or resume) and the checks a
    candle passes before it becomes a tick. Subclasses decide when candles arrive (`blocks`): each
    checked candle is handed on as a block of one row (`_announced`).

    A candle from REST is closed once its interval has ended on Kraken's clock (the local one
    corrected by the measured skew: open + timeframe <= now) AND Kraken has already started a
    later row (Kraken's last OHLC row is the still-forming one). While the skew is above
    `max_clock_skew_seconds` no candle is handed out.
    The first answer yields the latest closed candle per symbol, preceded by `warmup_candles`
    earlier ones flagged as warm-up (indicators only, no trading). A row repeating an open time
    counts once. A candle after a hole carries `missing_before` and is logged as `data_gap`.
    """

    def __init__(
        self,
        environment: KrakenSettings,
        client: ccxt.kraken | None = None,
        private_client: ccxt.kraken | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """client: public data; private_client: the key check of mode: live (by default both are
        made from the environment, the private one only when prepare() needs it); clock: the local
        clock (seconds since the epoch), corrected by Kraken's. A timeframe Kraken has no candles
        for is a SettingError on `timeframe`."""
        self._client = client or make_kraken_client(environment, with_credentials=False)
        self._exchange_clock = ExchangeClock(self._client, clock, environment.max_clock_skew_warn_seconds,
                                             environment.max_clock_skew_seconds)
        self._private_client = private_client
        if environment.timeframe not in self._client.timeframes:
            supported = ", ".join(self._client.timeframes)
            raise SettingError("timeframe", f"kraken has no {environment.timeframe} candles (use one of: {supported})")
        self._environment = environment
        self._symbols = list(environment.symbols)
        self._timeframe = environment.timeframe
        self._timeframe_ms = self._client.parse_timeframe(environment.timeframe) * 1000
        self._poll_interval = environment.poll_interval_seconds
        self._warmup_candles = environment.warmup_candles
        # symbol -> open time (ms) of the last candle handled, emitted or rejected: never twice
        self._last_seen: dict[str, int] = {}
        self._sequences = {symbol: CandleSequence(environment.timeframe) for symbol in self._symbols}
        self._resume_after_ms: dict[str, int] = {}  # symbol -> open time (ms) processed before a restart
        self._hole_waited_for: dict[str, int] = {}  # symbol -> open time (ms) of the missing candle last waited for
        self._frames = FrameAssembly(self._symbols, environment.frame_wait_seconds)  # checked candles to hand on
        self.candles_rejected = 0

    # --- start-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Kraken answers, lists every symbol and (mode: live) accepts the key, before the deadline;
        the clock skew is measured."""
        started = time.monotonic()
        deadline = started + self._environment.startup_timeout_seconds
        try:
            markets = self._before_deadline(self._client, self._client.load_markets, deadline)
        except ccxt.BaseError as error:
            raise self._start_failed(error, self._client) from None
        unknown = [symbol for symbol in self._symbols if symbol not in markets]
        if unknown:
            raise SettingError("symbols", f"kraken has no market {', '.join(unknown)}")
        if self._environment.mode == "live":
            self._check_api_key(deadline)
        self._before_deadline(self._client, self._exchange_clock.measure, deadline)
        log.info("exchange_ready", exchange="kraken", url=self._url, symbols=self._symbols,
                 credentials_checked=self._environment.mode == "live",
                 seconds=round(time.monotonic() - started, 3))

    def _check_api_key(self, deadline: float) -> None:
        """One private read with the environment's credentials: a refused key is the user's to fix."""
        private = self._private_client or make_kraken_client(self._environment, with_credentials=True)
        private.set_markets(self._client.markets, self._client.currencies)  # no second market load
        try:
            self._before_deadline(private, private.fetch_balance, deadline)
        except ccxt.BaseError as error:
            if not is_key_rejected(error):
                raise self._start_failed(error, private) from None
            raise SettingError(
                "api_key_env",
                f"kraken rejected the API key from {self._environment.api_key_env} / "
                f"{self._environment.api_secret_env}: {describe_error(error, private)}",
            ) from None

    def _before_deadline(self, client: ccxt.kraken, call: Callable[[], T], deadline: float) -> T:
        """call(), retrying network-type failures with short backoff while the deadline allows.

        Raises ExchangeUnavailableError when Kraken is still unreachable; any other ccxt error
        propagates at once.
        """
        backoff = STARTUP_FIRST_BACKOFF_SECONDS
        attempt = 0
        request_timeout_ms = client.timeout
        while True:
            attempt += 1
            # No request of this attempt may outlast the deadline by much.
            remaining_ms = (deadline - time.monotonic()) * 1000
            client.timeout = int(max(MIN_REQUEST_TIMEOUT_MS, min(request_timeout_ms, remaining_ms)))
            try:
                return call()
            except ccxt.BaseError as error:
                if not is_network_failure(error):
                    raise
                cause = root_cause(error, client)
                if time.monotonic() + backoff >= deadline:
                    timeout = self._environment.startup_timeout_seconds
                    waited = timeout - (deadline - time.monotonic())
                    raise ExchangeUnavailableError(
                        f"kraken at {self._url} unreachable for {waited:.1f} s "
                        f"(startup_timeout_seconds: {timeout:g}, {attempt} attempt(s)): {cause}"
                    ) from None
                log.warning("exchange_startup_retry", exchange="kraken", url=self._url, cause=cause,
                            error=describe_error(error, client), attempt=attempt, retry_in_seconds=backoff)
            finally:
                client.timeout = request_timeout_ms
            time.sleep(backoff)
            backoff = min(backoff * 2, STARTUP_MAX_BACKOFF_SECONDS)

    def _start_failed(self, error: ccxt.BaseError, client: ccxt.kraken) -> ExchangeUnavailableError:
        """Kraken answered the start-up check, but with an error that retrying will not cure."""
        return ExchangeUnavailableError(
            f"kraken at {self._url} answered the start-up check with an error: {root_cause(error, client)}"
        )

    @property
    def _url(self) -> str:
        return without_url_credentials(str(self._client.urls["api"]["public"]))

    def resume_after(self, cursors: dict[str, datetime]) -> None:
        self._resume_after_ms = {symbol: int(moment.timestamp() * 1000) for symbol, moment in cursors.items()}

    # --- candles from a REST answer -----------------------------------------------------------

    def _fetch(self, symbol: str) -> list[Candle]:
        last = self._last_seen.get(symbol)
        since = None if last is None else last + 1  # ccxt asks Kraken for a little more and filters
        return self._client.fetch_ohlcv(symbol, self._timeframe, since=since)

    def _ticks_from_rest(self, symbol: str, candles: list[Candle], wait_for_holes: bool = False) -> list[RawTick]:
        """The checked ticks of the closed candles not handled yet; warm-up flagged on the first answer.
        wait_for_holes: the candles after a hole this answer is the first to show are kept for the
        next answer (Kraken may still publish the missing one); a hole shown twice is a gap."""
        if not self._exchange_clock.trusted():  # no candle is closed by a clock in doubt
            return []
        first_answer = symbol not in self._last_seen
        resuming = first_answer and symbol in self._resume_after_ms
        fresh = self._new_closed_candles(symbol, candles)
        hole = self._first_hole(symbol, fresh)
        if wait_for_holes and hole is not None and self._hole_waited_for.get(symbol) != hole:
            self._hole_waited_for[symbol] = hole
            fresh = [candle for candle in fresh if candle[0] < hole]
        # A fresh start trades the latest closed candle; a restart trades none of the candles that
        # closed while it was down (they only warm the context workers) and resumes with the next.
        replayed = len(fresh) if resuming else len(fresh) - 1
        if first_answer and replayed > 0:
            log.info("warmup_replayed", symbol=symbol, candles=replayed, resumed=resuming)
        if resuming:  # the restart's first answer is over even when no candle has closed since the cursor
            self._last_seen[symbol] = self._resume_after_ms[symbol]
        return self._hand_out(symbol, fresh, warmup_count=max(replayed, 0) if first_answer else 0)

    def _first_hole(self, symbol: str, candles: list[Candle]) -> int | None:
        """Open time (ms) of the first candle missing between the last one handled and the last of
        `candles` (closed candles after it, oldest first), or None: no hole, or nothing handled yet."""
        expected = self._last_seen.get(symbol)
        if expected is None:
            return None
        for candle in candles:
            expected += self._timeframe_ms
            if candle[0] > expected:
                return expected
            expected = candle[0]
        return None

    def _hand_out(self, symbol: str, candles: list[Candle], warmup_count: int = 0) -> list[RawTick]:
        """Closed candles after `_last_seen`, oldest first, as checked ticks (the first
        `warmup_count` flagged warm-up); each is marked handled, even when it is rejected. The
        caller adds them to the frame assembly (`_frames_ready` announces them as they leave)."""
        ticks = []
        for index, candle in enumerate(candles):
            self._last_seen[symbol] = max(candle[0], self._last_seen.get(symbol, candle[0]))
            tick = self._checked_tick(symbol, candle, warmup=index < warmup_count)
            if tick is not None:
                ticks.append(tick)
        return ticks

    def _frames_ready(self, stop: threading.Event) -> Iterator[Candles]:
        """The frames that can go on now (FrameAssembly: the candles of one open time together once
        every symbol reached it, or waited frame_wait_seconds), none once stop is set (also when
        the answer came after the stop: nobody takes it), each candle logged `candle_closed` (a
        candle to trade) as it leaves the source, so one never handed over is not announced."""
        reached = {symbol: datetime.fromtimestamp(ms / 1000, tz=UTC) for symbol, ms in self._last_seen.items()}
        for frame in self._frames.ready(reached):
            if stop.is_set():
                return
            for tick in frame:
                if not tick.warmup:
                    log.info("candle_closed", symbol=tick.symbol, candle_time=tick.timestamp.isoformat(),
                             close=tick.close)
            yield candles_of(frame)

    def _new_closed_candles(self, symbol: str, candles: list[Candle]) -> list[Candle]:
        """Closed candles after the last one handled, one per open time, oldest first; on the first
        answer only the latest `warmup_candles + 1`. A row without an open time is rejected here."""
        by_open_time: dict[int, Candle] = {}
        for candle in candles:
            if isinstance(candle[0], int):
                by_open_time.setdefault(candle[0], candle)  # Kraken sends one row per interval
            else:
                self._reject(symbol, None, "the row has no open time")
        rows = [by_open_time[open_time] for open_time in sorted(by_open_time)]
        now_ms = self._exchange_clock.now() * 1000
        closed = [c for c in rows[:-1] if c[0] + self._timeframe_ms <= now_ms]  # [-1] is forming
        last = self._last_seen.get(symbol)
        if last is not None:
            return [c for c in closed if c[0] > last]
        resume = self._resume_after_ms.get(symbol)
        if resume is None:
            return closed[-(self._warmup_candles + 1):]
        before = [c for c in closed if c[0] <= resume][-self._warmup_candles:] if self._warmup_candles else []
        if not before:  # the sequence starts at the last candle processed, so a gap since is counted
            self._sequences[symbol].last = datetime.fromtimestamp(resume / 1000, tz=UTC)
        return before + [c for c in closed if c[0] > resume]

    def _checked_tick(self, symbol: str, candle: Candle, warmup: bool) -> RawTick | None:
        """The candle as a tick, or None (logged and counted) when it must not be traded on."""
        open_time = datetime.fromtimestamp(candle[0] / 1000, tz=UTC)
        values = candle[1:6]
        # ccxt turns an unparsable number into None, "nan"/"inf" into float nan/inf.
        if not all(isinstance(value, int | float) for value in values):
            self._reject(symbol, open_time, "prices and volume must be numbers")
            return None
        open_, high, low, close, volume = (float(v) for v in values)
        problem = candle_problem(open_, high, low, close, volume)
        if problem is not None:
            self._reject(symbol, open_time, problem)
            return None
        try:
            missing = self._sequences[symbol].missing_before(open_time)
        except ValueError as error:
            self._reject(symbol, open_time, str(error))
            return None
        if missing:
            log_data_gap(symbol, open_time, missing, self._timeframe)
        return RawTick(symbol=symbol, timestamp=open_time, open=open_, high=high, low=low, close=close,
                       volume=volume, warmup=warmup, missing_before=missing)

    def _reject(self, symbol: str, open_time: datetime | None, reason: str) -> None:
        self.candles_rejected += 1
        log.warning("candle_rejected", symbol=symbol,
                    candle_time=open_time.isoformat() if open_time else None, reason=reason)


class KrakenLiveSource(KrakenCandleSource):
    """Polls Kraken's OHLC endpoint every `poll_interval_seconds` (`market_data: rest`).

    Kraken may publish a candle after a later one (seen by a soak): candles after a hole wait one
    poll for the missing candle, which then comes in order; a hole still there is a gap (`data_gap`).

    Network-type failures (ccxt.OperationFailed: NetworkError, ExchangeNotAvailable,
    RequestTimeout, DDoSProtection, BadResponse..., or a socket/TLS error underneath) are logged
    with their root cause and retried with capped exponential backoff; any other ccxt error
    propagates, translated.
    """

    def blocks(self, stop: threading.Event) -> Iterator[Candles]:
        failures = 0
        while not stop.is_set():
            delay = self._poll_interval
            self._exchange_clock.check()
            for symbol in self._symbols:
                try:
                    candles = self._fetch(symbol)
                except ccxt.BaseError as error:
                    if not is_network_failure(error):
                        raise translate_error(error, self._client) from None
                    failures += 1
                    delay = self._backoff(failures)
                    log.warning("market_data_unavailable", exchange="kraken", symbol=symbol,
                                cause=root_cause(error, self._client),
                                error=describe_error(error, self._client), attempt=failures,
                                retry_in_seconds=round(delay, 3))
                    break
                for tick in self._ticks_from_rest(symbol, candles, wait_for_holes=True):
                    self._frames.add(tick)
                yield from self._frames_ready(stop)
                if stop.is_set():
                    return
            else:
                failures = 0
            stop.wait(delay)

    def _backoff(self, failures: int) -> float:
        """Seconds to wait after `failures` failed polls in a row: doubling, capped."""
        return min(self._poll_interval * 2**failures, max(self._poll_interval, MAX_BACKOFF_SECONDS))
