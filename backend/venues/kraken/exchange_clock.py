"""Kraken's time as this process sees it: the local clock corrected by the measured skew.

Invariants:
- `now()` is the local clock plus `skew_seconds`, the skew last measured from Kraken's public
  `Time` endpoint (at start, every CLOCK_SKEW_CHECK_SECONDS, every CLOCK_SKEW_RECHECK_SECONDS while
  it is too large or in doubt). It is in doubt once the local clock has moved against the
  monotonic one (it was stepped) or a stream message's own timestamp disagrees with `now()`.
- |skew| above `max_clock_skew_warn_seconds` is logged (`clock_skew_high`); above
  `max_clock_skew_seconds` (`clock_skew_too_large`) the clock is not `trusted()` until a
  measurement is back under it (`clock_skew_restored`); nor is it while in doubt, until the next
  measurement. The market data sources hand out no candle while it is not trusted.
  Each level is logged when it is entered, not on every measurement.
"""

import time
from collections.abc import Callable

import ccxt
import structlog

from backend.venues.kraken.client import describe_error, is_network_failure, root_cause, translate_error

log = structlog.get_logger(__name__)

CLOCK_SKEW_CHECK_SECONDS = 60.0
CLOCK_SKEW_RECHECK_SECONDS = 5.0  # while too large, or at the earliest after a disagreeing message
# Kraken's `Time` is in whole seconds (docs.kraken.com/api-reference/market-data/get-server-time):
# the true time is up to a second later than `unixtime`, half a second on average.
TIME_RESOLUTION_SECONDS = 1.0


class ExchangeClock:
    """Kraken's clock for one source (its public client measures it)."""

    def __init__(self, client: ccxt.kraken, local_clock: Callable[[], float],
                 warn_seconds: float, max_seconds: float) -> None:
        self._client = client
        self._local_clock = local_clock
        self.warn_seconds = warn_seconds
        self.max_seconds = max_seconds
        self.skew_seconds = 0.0  # Kraken's clock minus the local one
        self._too_large = False
        self._level = "ok"
        self._measured = False
        self._checked_at = time.monotonic()  # a source never prepared (tests) measures after the period
        self._recheck_requested = False
        self._local_minus_monotonic: float | None = None  # at the last measurement

    def now(self) -> float:
        """Kraken's time now, in seconds since the epoch."""
        return self._local_clock() + self.skew_seconds

    def measure(self) -> None:
        """One `Time` request; the skew it shows becomes the clock's. ccxt's errors propagate."""
        self._checked_at = time.monotonic()
        self._recheck_requested = False
        before = self._local_clock()
        exchange_ms = self._client.fetch_time()
        after = self._local_clock()
        exchange = exchange_ms / 1000 + TIME_RESOLUTION_SECONDS / 2
        self.skew_seconds = exchange - (before + after) / 2
        self._local_minus_monotonic = after - time.monotonic()
        if not self._measured:
            self._measured = True
            log.info("clock_skew_measured", exchange="kraken", skew_seconds=round(self.skew_seconds, 3))
        self._enter_level()

    def trusted(self) -> bool:
        """Candles may be closed by this clock: the skew is within the limit and not in doubt. A
        local clock stepped since the last measurement puts it in doubt (and the next one is due)."""
        if self._local_minus_monotonic is not None and not self._recheck_requested:
            moved = self._local_clock() - time.monotonic() - self._local_minus_monotonic
            self._recheck_requested = abs(moved) > self.warn_seconds
        return not self._too_large and not self._recheck_requested

    def due(self) -> bool:
        """A measurement is due (see the module's invariants)."""
        return time.monotonic() - self._checked_at >= self._period()

    def _period(self) -> float:
        return CLOCK_SKEW_CHECK_SECONDS if self.trusted() else CLOCK_SKEW_RECHECK_SECONDS

    def check(self) -> None:
        """Measure if a measurement is due; a network failure is logged and retried later."""
        if not self.due():
            return
        try:
            self.measure()
        except ccxt.BaseError as error:
            if not is_network_failure(error):
                raise translate_error(error, self._client) from None
            log.warning("clock_skew_unmeasured", exchange="kraken", cause=root_cause(error, self._client),
                        error=describe_error(error, self._client), retry_in_seconds=self._period())

    def note_message_time(self, sent_seconds: float) -> None:
        """A stream message Kraken stamped `sent_seconds`, received now: it cannot have been sent
        after `now()`, and was not sent long before it unless the local clock jumped (or the
        message took that long): either way the clock is in doubt until measured again."""
        received = self.now()
        if sent_seconds - received > self.warn_seconds or received - sent_seconds > self.max_seconds:
            self._recheck_requested = True

    def _enter_level(self) -> None:
        skew = abs(self.skew_seconds)
        level = "too_large" if skew > self.max_seconds else "high" if skew > self.warn_seconds else "ok"
        self._too_large = level == "too_large"
        if level == self._level:
            return
        was_too_large = self._level == "too_large"
        self._level = level
        fields = {"exchange": "kraken", "skew_seconds": round(self.skew_seconds, 3),
                  "max_clock_skew_warn_seconds": self.warn_seconds, "max_clock_skew_seconds": self.max_seconds}
        if level == "too_large":
            log.error("clock_skew_too_large", **fields, action="no candle is handed out until it is back")
        elif level == "high":
            log.warning("clock_skew_high", **fields)
        if level != "too_large" and (was_too_large or level == "ok"):
            log.info("clock_skew_restored", **fields)
