"""Polls Kraken's OHLC endpoint and emits each closed candle once, as a RAW_TICK."""

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import ccxt
import structlog

from backend.config.schema import LiveEnvironment
from backend.errors import ConfigError
from backend.market_data.kraken_client import describe_error, make_kraken_client
from backend.market_data.raw_tick import RawTick
from backend.market_data.tick_source import TickSource

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 300.0
Candle = list  # ccxt OHLCV row: [open_time_ms, open, high, low, close, volume]


class KrakenLiveSource(TickSource):
    """Live RAW_TICKs for every symbol of a live environment (public data, no credentials).

    A candle is emitted once it is closed: its interval has ended on the local UTC clock
    (open + timeframe <= now) AND Kraken has already started a later row (Kraken's last OHLC
    row is the still-forming one). The second rule protects against clock skew and late trades.
    The first poll emits the latest closed candle per symbol, preceded by `warmup_candles`
    earlier ones flagged as warm-up (indicators only, no trading).

    Network-type failures (ccxt.OperationFailed: NetworkError, ExchangeNotAvailable,
    RequestTimeout, DDoSProtection, BadResponse...) are logged and retried with capped
    exponential backoff; any other ccxt error (authentication, bad symbol...) propagates.
    """

    def __init__(
        self, environment: LiveEnvironment, environment_file: str, client: ccxt.kraken | None = None
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
        self._last_emitted: dict[str, int] = {}  # symbol -> open time (ms) of the last emitted candle
        self._markets_checked = False

    def ticks(self, stop: threading.Event) -> Iterator[RawTick]:
        failures = 0
        while not stop.is_set():
            delay = self._poll_interval
            for symbol in self._symbols:
                try:
                    self._check_markets()
                    candles = self._fetch(symbol)
                except ccxt.OperationFailed as error:
                    failures += 1
                    delay = self._backoff(failures)
                    log.warning("market_data_unavailable", exchange="kraken", symbol=symbol,
                                error=describe_error(error, self._client), attempt=failures,
                                retry_in_seconds=round(delay, 3))
                    break
                warmup = symbol not in self._last_emitted
                fresh = self._new_closed_candles(symbol, candles)
                if warmup and len(fresh) > 1:
                    log.info("warmup_replayed", symbol=symbol, candles=len(fresh) - 1)
                for index, candle in enumerate(fresh):
                    if stop.is_set():
                        return
                    tick = _to_tick(symbol, candle, warmup=warmup and index < len(fresh) - 1)
                    if not tick.warmup:
                        log.info("candle_closed", symbol=symbol, candle_time=tick.timestamp.isoformat(),
                                 close=tick.close)
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
        last = self._last_emitted.get(symbol)
        since = None if last is None else last + 1  # ccxt asks Kraken for a little more and filters
        return self._client.fetch_ohlcv(symbol, self._timeframe, since=since)

    def _new_closed_candles(self, symbol: str, candles: list[Candle]) -> list[Candle]:
        candles = sorted(candles, key=lambda candle: candle[0])
        now_ms = time.time() * 1000
        closed = [c for c in candles[:-1] if c[0] + self._timeframe_ms <= now_ms]  # [-1] is forming
        last = self._last_emitted.get(symbol)
        fresh = closed[-(self._warmup_candles + 1):] if last is None else [c for c in closed if c[0] > last]
        if fresh:
            self._last_emitted[symbol] = fresh[-1][0]
        return fresh


def _to_tick(symbol: str, candle: Candle, warmup: bool) -> RawTick:
    open_time, open_, high, low, close, volume = candle[:6]
    return RawTick(
        symbol=symbol,
        timestamp=datetime.fromtimestamp(open_time / 1000, tz=UTC),
        open=open_, high=high, low=low, close=close, volume=volume, warmup=warmup,
    )
