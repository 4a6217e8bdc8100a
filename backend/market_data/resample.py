"""Builds the bars of a longer timeframe from an environment's base candles, per symbol, as they stream.

Invariants:
- Buckets are aligned to UTC: a bar of timeframe T opens at a multiple of T seconds since the
  epoch (`1h` on the hour, `4h` at 00/04/08… UTC, `1d` at 00:00 UTC). Only timeframes that are a
  whole multiple of the base and divide a day are built (`resampling_problem`), so every bucket
  holds the same whole number of base candles and no bucket straddles UTC midnight.
- A bar is emitted once, and only complete: when its bucket's last base candle arrives, or else
  when a base candle of a later bucket does. A bucket still open when the stream ends is never
  emitted (`open_bars` tells which).
- Nothing is invented. A bar is made of the base candles that arrived: open of the first, high
  and low the extremes, close of the last, volume the sum. A bucket that lacks some is emitted
  with what it has and marked: `missing_within` counts its absent base candles. A bucket with no
  base candle at all emits nothing: the next bar's `missing_before` counts such bars, in units
  of T. A bar is `warmup` only when every base candle in it was.
"""

from dataclasses import dataclass
from datetime import datetime

from backend.market_data.raw_tick import RawTick
from backend.market_data.timeframes import timeframe_seconds, utc_from_epoch

DAY_SECONDS = 86_400


def resampling_problem(base_timeframe: str, timeframe: str) -> str | None:
    """Why bars of `timeframe` cannot be built from `base_timeframe` candles, or None when they can."""
    base, wanted = timeframe_seconds(base_timeframe), timeframe_seconds(timeframe)
    if wanted % base:
        return f"timeframe {timeframe} is not a whole multiple of the environment's timeframe {base_timeframe}"
    if wanted != base and DAY_SECONDS % wanted:
        # 7h or 2d buckets would drift against UTC days; there is no one right place to cut them.
        return (f"timeframe {timeframe} cannot be built from the environment's {base_timeframe} candles: "
                f"a longer timeframe must divide a day (e.g. 15m, 4h, 1d) so its bars align to UTC midnight")
    return None


@dataclass
class _OpenBar:
    """The bucket being filled for one symbol (epoch seconds, UTC)."""

    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    base_candles: int
    warmup: bool
    missing_before: int

    def add(self, tick: RawTick) -> None:
        self.high = max(self.high, tick.high)
        self.low = min(self.low, tick.low)
        self.close = tick.close
        self.volume += tick.volume
        self.base_candles += 1
        self.warmup = self.warmup and tick.warmup


class Resampler:
    """One timeframe's bars, built from one environment's base ticks (every symbol, each on its own)."""

    def __init__(self, base_timeframe: str, timeframe: str) -> None:
        """Raises ValueError when `resampling_problem` names one (the config loader has reported it)."""
        problem = resampling_problem(base_timeframe, timeframe)
        if problem is not None:
            raise ValueError(problem)
        self.timeframe = timeframe
        self._base_seconds = timeframe_seconds(base_timeframe)
        self._bar_seconds = timeframe_seconds(timeframe)
        self._candles_per_bar = self._bar_seconds // self._base_seconds
        self._open: dict[str, _OpenBar] = {}
        self._last_base: dict[str, int] = {}  # symbol -> open time of its latest base candle

    def add(self, tick: RawTick) -> list[RawTick]:
        """Take the next base tick of its symbol; return the bars it completes (none, one or two), oldest first.

        Raises ValueError when tick is not after the symbol's previous one (sources guarantee it).
        """
        epoch = int(tick.timestamp.timestamp())
        start = epoch - epoch % self._bar_seconds
        if epoch <= self._last_base.get(tick.symbol, epoch - 1):
            raise ValueError(f"{tick.symbol} tick {tick.timestamp.isoformat()} is not after the previous one")
        self._last_base[tick.symbol] = epoch
        completed: list[RawTick] = []
        bar = self._open.get(tick.symbol)
        if bar is not None and start != bar.start:  # a later bucket began: this one is over
            completed.append(self._emit(tick.symbol))
            bar = None
        if bar is None:
            self._open[tick.symbol] = _OpenBar(
                start=start, open=tick.open, high=tick.high, low=tick.low, close=tick.close,
                volume=tick.volume, base_candles=1, warmup=tick.warmup,
                missing_before=self._empty_buckets_before(start, epoch, tick.missing_before),
            )
        else:
            bar.add(tick)
        if epoch + self._base_seconds == start + self._bar_seconds:  # the bucket's last base candle
            completed.append(self._emit(tick.symbol))
        return completed

    def open_bars(self) -> dict[str, tuple[datetime, int]]:
        """Per symbol, the bucket not completed yet: its open time and how many base candles it holds."""
        return {symbol: (utc_from_epoch(bar.start), bar.base_candles) for symbol, bar in self._open.items()}

    def _empty_buckets_before(self, start: int, epoch: int, missing_base_candles: int) -> int:
        """Whole buckets without a base candle between the previous base candle and this one. The
        previous one is known from the tick's own gap count, so this holds after a restart too."""
        previous = epoch - (missing_base_candles + 1) * self._base_seconds
        previous_start = previous - previous % self._bar_seconds
        return max(0, (start - previous_start) // self._bar_seconds - 1)

    def _emit(self, symbol: str) -> RawTick:
        bar = self._open.pop(symbol)
        return RawTick.trusted(  # made of base ticks a source has checked
            symbol=symbol, timestamp=utc_from_epoch(bar.start), open=bar.open, high=bar.high, low=bar.low,
            close=bar.close, volume=bar.volume, warmup=bar.warmup, missing_before=bar.missing_before,
            missing_within=self._candles_per_bar - bar.base_candles,
        )
