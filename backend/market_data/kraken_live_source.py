"""Polls Kraken's OHLC endpoint and emits each closed, sound candle once, as a RAW_TICK.

Invariant:
- No candle becomes a tick unless it passes `candle_problem` and its symbol's `CandleSequence`;
  a rejected one is logged (`candle_rejected`), counted in `candles_rejected` and skipped.
"""

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import ccxt
import structlog

from backend.config.schema import LiveEnvironment
from backend.errors import ConfigError
from backend.market_data.candle_checks import CandleSequence, candle_problem, log_data_gap
from backend.market_data.kraken_client import (
    describe_error,
    is_network_failure,
    make_kraken_client,
    root_cause,
)
from backend.market_data.raw_tick import RawTick
from backend.market_data.tick_source import TickSource

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 300.0
Candle = list  # ccxt OHLCV row: [open_time_ms, open, high, low, close, volume]; values may be None


class KrakenLiveSource(TickSource):
    """Live RAW_TICKs for every symbol of a live environment (public data, no credentials).

    A candle is emitted once it is closed: its interval has ended on the local UTC clock
    (open + timeframe <= now) AND Kraken has already started a later row (Kraken's last OHLC
    row is the still-forming one). The second rule protects against clock skew and late trades.
    The first poll emits the latest closed candle per symbol, preceded by `warmup_candles`
    earlier ones flagged as warm-up (indicators only, no trading). A row repeating an open time
    counts once. A candle after a hole carries `missing_before` and is logged as `data_gap`.

    Network-type failures (ccxt.OperationFailed: NetworkError, ExchangeNotAvailable,
    RequestTimeout, DDoSProtection, BadResponse..., or a socket/TLS error underneath) are logged
    with their root cause and retried with capped exponential backoff; any other ccxt error
    propagates.
    """

    def __init__(
        self,
        environment: LiveEnvironment,
        environment_file: str,
        client: ccxt.kraken | None = None,
    ) -> None:
        self._client = client or make_kraken_client(environment, environment_file, with_credentials=False)
        if environment.timeframe not in self._client.timeframes:
            supported = ", ".join(self._client.timeframes)
            raise ConfigError(
                environment_file, f"kraken has no {environment.timeframe} candles (use one of: {supported})",
                "timeframe",
            )
        self._file = environment_file
        self._symbols = list(environment.symbols)
        self._timeframe = environment.timeframe
        self._timeframe_ms = self._client.parse_timeframe(environment.timeframe) * 1000
        self._poll_interval = environment.poll_interval_seconds
        self._warmup_candles = environment.warmup_candles
        # symbol -> open time (ms) of the last candle handled, emitted or rejected: never twice
        self._last_seen: dict[str, int] = {}
        self._sequences = {symbol: CandleSequence(environment.timeframe) for symbol in self._symbols}
        self.candles_rejected = 0
        self._markets_checked = False

    # --- polling -------------------------------------------------------------------------------

    def ticks(self, stop: threading.Event) -> Iterator[RawTick]:
        failures = 0
        while not stop.is_set():
            delay = self._poll_interval
            for symbol in self._symbols:
                try:
                    self._check_markets()
                    candles = self._fetch(symbol)
                except ccxt.BaseError as error:
                    if not is_network_failure(error):
                        raise
                    failures += 1
                    delay = self._backoff(failures)
                    log.warning("market_data_unavailable", exchange="kraken", symbol=symbol,
                                cause=root_cause(error, self._client),
                                error=describe_error(error, self._client), attempt=failures,
                                retry_in_seconds=round(delay, 3))
                    break
                for tick in self._new_ticks(symbol, candles):
                    if stop.is_set():
                        return
                    yield tick
            else:
                failures = 0
            stop.wait(delay)

    def _backoff(self, failures: int) -> float:
        """Seconds to wait after `failures` failed polls in a row: doubling, capped."""
        return min(self._poll_interval * 2**failures, max(self._poll_interval, MAX_BACKOFF_SECONDS))

    def _check_markets(self) -> None:
        """Load Kraken's markets once and fail clearly on a symbol Kraken does not list."""
        if self._markets_checked:
            return
        markets = self._client.load_markets()
        unknown = [symbol for symbol in self._symbols if symbol not in markets]
        if unknown:
            raise ConfigError(self._file, f"kraken has no market {', '.join(unknown)}", "symbols")
        self._markets_checked = True

    def _fetch(self, symbol: str) -> list[Candle]:
        last = self._last_seen.get(symbol)
        since = None if last is None else last + 1  # ccxt asks Kraken for a little more and filters
        return self._client.fetch_ohlcv(symbol, self._timeframe, since=since)

    def _new_ticks(self, symbol: str, candles: list[Candle]) -> Iterator[RawTick]:
        """The checked ticks of the closed candles not handled yet; warm-up flagged on the first poll."""
        first_poll = symbol not in self._last_seen
        fresh = self._new_closed_candles(symbol, candles)
        if first_poll and len(fresh) > 1:
            log.info("warmup_replayed", symbol=symbol, candles=len(fresh) - 1)
        for index, candle in enumerate(fresh):
            self._last_seen[symbol] = candle[0]
            tick = self._checked_tick(symbol, candle, warmup=first_poll and index < len(fresh) - 1)
            if tick is None:
                continue
            if not tick.warmup:
                log.info("candle_closed", symbol=symbol, candle_time=tick.timestamp.isoformat(), close=tick.close)
            yield tick

    def _new_closed_candles(self, symbol: str, candles: list[Candle]) -> list[Candle]:
        by_open_time: dict[int, Candle] = {}
        for candle in candles:
            if isinstance(candle[0], int):
                by_open_time.setdefault(candle[0], candle)  # Kraken sends one row per interval
            else:
                self._reject(symbol, None, "the row has no open time")
        rows = [by_open_time[open_time] for open_time in sorted(by_open_time)]
        now_ms = time.time() * 1000
        closed = [c for c in rows[:-1] if c[0] + self._timeframe_ms <= now_ms]  # [-1] is forming
        last = self._last_seen.get(symbol)
        return closed[-(self._warmup_candles + 1):] if last is None else [c for c in closed if c[0] > last]

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
