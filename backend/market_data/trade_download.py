"""A symbol's candle files built from its exchange's trade history, incrementally and resumably,
or taken from the venue's window of recent candles when that window covers what every file still
needs; the venue pages through the history and serves the window (`TradeHistory`, e.g.
backend/venues/kraken/trade_history.py), everything else is here and knows no venue.

Invariants:
- A symbol's files come from the recent candles only when, for every timeframe, the window's
  oldest interval opens at or before the first candle the file needs (the one holding --since,
  or the one after the file's last); otherwise from the trades, for every timeframe (one
  download). Either way only candles closed by `end` are written, after the file's last one; the
  state left then lets a later run go on by either: after the window, the trade cursor starts at
  the earliest candle any timeframe still needs (the one holding `end`), and the candles those
  trades close again are already in the files, which skip them.
- Every timeframe's candles come from one pass over the same trades (a CandleBuilder each), on
  the UTC grid; an interval without a trade has no candle (a gap, never an invented one).
- Only closed candles are written: closed by a trade of a later interval, or by `end` once every
  trade before `end` was read (`end` is --until, or the exchange's clock at the start of the run);
  the candle still forming is kept in the state file for the next run.
- What is on disk is always a point a run can go on from, whatever interrupts it (kill -9
  included): the candle files are appended first (each replaced atomically, after the checks a
  backtest runs), the state file (the venue's cursor, the forming candles) is replaced after them.
  A crash in between makes the next run read again trades whose candles are already written: they
  close again into the same candles, which the files skip as already there, so no trade is lost or
  counted twice. The same trades give the same bytes, however many runs and interruptions built them.
- The state records what the files were built from (exchange, symbol, since, timeframes, format):
  a run asking for anything else is refused (a ConfigError naming the state file and the flag).
"""

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import structlog

from backend.atomic_file import replace_atomically
from backend.errors import ConfigError, ExchangeError, RateLimitedError, TemporaryExchangeError
from backend.market_data.candle_writer import append_candles
from backend.market_data.timeframes import timeframe_seconds, utc_from_epoch
from backend.market_data.trade_candles import CandleBuilder
from backend.market_data.trade_history import Candle, Cursor, RecentCandleRows, TradeHistory, TradePage

log = structlog.get_logger(__name__)

T = TypeVar("T")

FIRST_RETRY_SECONDS = 1.0  # after a refusal for the rate limit or a network failure; doubling
MAX_RETRY_SECONDS = 60.0
MAX_ATTEMPTS = 9  # in a row, on one request: ~4 minutes of waiting before the run gives up
PROGRESS_EVERY_SECONDS = 5.0  # `download_progress` lines
STATE_VERSION = 1


@dataclass(frozen=True)
class DownloadPlan:
    """What every symbol of one `download-data` is asked for."""

    exchange: str  # the venue's name in file names: "kraken"
    out: Path
    since: int  # epoch seconds
    timeframes: tuple[str, ...]
    file_format: str  # "parquet" or "csv": the files' extension

    def file_of(self, symbol: str, timeframe: str) -> Path:
        """`kraken_btcusd_1h.parquet` for BTC/USD: the venue, base and quote, the timeframe."""
        return self.out / f"{self.exchange}_{symbol_slug(symbol)}_{timeframe}.{self.file_format}"

    def state_of(self, symbol: str) -> Path:
        return self.out / f"{self.exchange}_{symbol_slug(symbol)}.download.json"


def symbol_slug(symbol: str) -> str:
    """BTC/USD -> btcusd: base and quote, lowercase, as file names give a symbol."""
    return symbol.replace("/", "").lower()


def with_retries(call: Callable[[], T], stop: threading.Event, **context: object) -> T | None:
    """call(), again after a wait while it fails for the exchange's rate limit
    (`download_rate_limited`) or a network failure (`download_retry`), doubling the wait each
    time; None when stop is set meanwhile (the call that failed then is not made again). The last
    error is raised after MAX_ATTEMPTS in a row; any other error at once."""
    delay = FIRST_RETRY_SECONDS
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return call()
        except TemporaryExchangeError as error:
            if stop.is_set():
                return None
            if attempt == MAX_ATTEMPTS:
                raise
            event = "download_rate_limited" if isinstance(error, RateLimitedError) else "download_retry"
            log.warning(event, cause=str(error), attempt=attempt, retry_in_seconds=delay, **context)
            if stop.wait(delay):
                return None
            delay = min(delay * 2, MAX_RETRY_SECONDS)
    raise AssertionError("unreachable: the last attempt returns or raises")


@dataclass
class SymbolDownload:
    """One symbol's download: its builders, the candles they closed since the last save, the
    venue's cursor; `run` pages through the history and saves. Also what a progress bar reads
    (services.progress.ProgressSource's names): seconds of history read of those asked for."""

    plan: DownloadPlan
    symbol: str
    cursor: Cursor
    builders: dict[str, CandleBuilder]
    written_through: dict[str, int | None]  # timeframe -> open time of the last candle written
    trades: int = 0  # read, in every run together
    last_trade_time: float | None = None
    end: float = 0.0  # epoch seconds: --until, or the exchange's clock; set before `run`
    finished: bool = False  # every trade before `end` read
    closed: dict[str, list[Candle]] = field(default_factory=dict)  # timeframe -> not written yet

    @classmethod
    def resume(cls, plan: DownloadPlan, symbol: str, history: TradeHistory) -> "SymbolDownload":
        """Where the state file beside the files left off, or the start of the history at
        plan.since when there is none; a ConfigError when it was made for another download, or
        a file it says was written is gone."""
        path = plan.state_of(symbol)
        if not path.exists():
            return cls(plan, symbol, history.start(plan.since),
                       {timeframe: CandleBuilder(timeframe) for timeframe in plan.timeframes},
                       dict.fromkeys(plan.timeframes))
        try:
            state = json.loads(path.read_text())
            saved = state["timeframes"]
            download = cls(plan, symbol, state["cursor"],
                           {timeframe: CandleBuilder(timeframe, saved[timeframe]["forming"]) for timeframe in saved},
                           {timeframe: saved[timeframe]["written_through"] for timeframe in saved},
                           state["trades"], state["last_trade_time"])
            asked = {("exchange", "--exchange"): plan.exchange, ("symbol", "--symbols"): symbol,
                     ("since", "--since"): utc_from_epoch(plan.since).isoformat(),
                     ("format", "--format"): plan.file_format}
            found = {key: state[key[0]] for key in asked}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(path, f"not a download state this version wrote ({error}): move it away to "
                                    "download again") from None
        for (key, flag), value in asked.items():
            if found[key, flag] != value:
                raise ConfigError(path, f"the files beside it were downloaded with {flag} {found[key, flag]}, not "
                                        f"{value}: give the same {flag}, or another --out to download afresh", flag)
        if sorted(saved) != sorted(plan.timeframes):
            raise ConfigError(path, f"the files beside it were built for {' '.join(saved)}, not "
                                    f"{' '.join(plan.timeframes)}: every timeframe comes from the same trades, so "
                                    "give the same ones, or another --out for others", "--timeframes")
        for timeframe, last in download.written_through.items():
            if last is not None and not plan.file_of(symbol, timeframe).exists():
                raise ConfigError(plan.file_of(symbol, timeframe),
                                  f"missing, though {path.name} says its candles were written up to "
                                  f"{utc_from_epoch(last).isoformat()}: put it back, or move {path.name} away to "
                                  "download again")
        return download

    # --- what a progress bar reads ----------------------------------------------------------

    @property
    def environment_id(self) -> str:
        return f"{self.plan.exchange} {self.symbol}, seconds of history"

    @property
    def ticks_sent(self) -> int:
        if self.finished:
            return self.total_ticks
        reached = self.plan.since if self.last_trade_time is None else self.last_trade_time
        return max(0, min(int(reached), int(self.end)) - self.plan.since)

    @property
    def total_ticks(self) -> int:
        return max(0, int(self.end) - self.plan.since)

    # --- downloading ------------------------------------------------------------------------

    def run(self, history: TradeHistory, stop: threading.Event, save_every: float) -> bool:
        """Pages until every trade before `end` is read (the candles `end` closes too, all
        saved: True), or until stop is set (what was read is saved: False). Saves at least every
        save_every seconds meanwhile; an error that retrying did not cure is raised once what
        was read is saved."""
        from_window = self._from_recent_candles(history, stop)
        if from_window is not None:
            return from_window
        started, first_ticks = time.monotonic(), self.ticks_sent
        saved_at = reported_at = started
        try:
            while not stop.is_set():
                page = with_retries(lambda: history.page(self.symbol, self.cursor, self.end), stop,
                                    symbol=self.symbol)
                if page is None:
                    break
                self._take(page)
                if page.last:
                    self.finished = True
                    self._close_before(self.end)
                    self.save()
                    self._report(started, first_ticks)
                    return True
                now = time.monotonic()
                if now - saved_at >= save_every:
                    self.save()
                    saved_at = now
                if now - reported_at >= PROGRESS_EVERY_SECONDS:
                    self._report(started, first_ticks)
                    reported_at = now
        except ExchangeError:  # from a page: nothing of it was taken
            self.save()
            raise
        self.save()
        return False

    def _from_recent_candles(self, history: TradeHistory, stop: threading.Event) -> bool | None:
        """The files from the venue's recent candles when every timeframe's window covers what its
        file needs (written and saved: True; stopped meanwhile: False); None when one does not, or
        the venue serves none of a timeframe (the trades then). Logs `download_source` either way."""
        needed = {timeframe: self._first_needed(timeframe) for timeframe in self.plan.timeframes}
        windows: dict[str, RecentCandleRows] = {}
        for timeframe in sorted(needed, key=timeframe_seconds):  # the shortest window is the likeliest short
            window = with_retries(partial(history.recent_candles, self.symbol, timeframe), stop, symbol=self.symbol)
            if stop.is_set():
                return False
            reason = _not_covering(window, needed[timeframe], history.name)
            if reason is not None:
                log.info("download_source", symbol=self.symbol, source="trades", reason=f"{timeframe}: {reason}")
                return None
            assert window is not None
            windows[timeframe] = window
        log.info("download_source", symbol=self.symbol, source="ohlc",
                 reason=f"{history.name}'s recent candles of every timeframe reach back to the file's next candle")
        for timeframe, window in windows.items():
            step = timeframe_seconds(timeframe)
            self.closed[timeframe] = [candle for candle in window.candles
                                      if candle[0] >= needed[timeframe] and candle[0] + step <= self.end]
            self.builders[timeframe].forming = None
        self.cursor = history.start(min(_opening(self.end, timeframe) for timeframe in self.plan.timeframes))
        self.finished = True
        self.save()
        return True

    def _first_needed(self, timeframe: str) -> int:
        """Open time of the first candle the file may still lack: the one after its last, or the
        one holding plan.since before any was written."""
        last = self.written_through[timeframe]
        return _opening(self.plan.since, timeframe) if last is None else last + timeframe_seconds(timeframe)

    def _take(self, page: TradePage) -> None:
        for trade in page.trades:
            for timeframe, builder in self.builders.items():
                candle = builder.add(trade)
                if candle is not None:
                    self.closed.setdefault(timeframe, []).append(candle)
        if page.trades:
            self.trades += len(page.trades)
            self.last_trade_time = page.trades[-1].time
        self.cursor = page.cursor

    def _close_before(self, moment: float) -> None:
        for timeframe, builder in self.builders.items():
            candle = builder.close_before(math.floor(moment))
            if candle is not None:
                self.closed.setdefault(timeframe, []).append(candle)

    def save(self) -> None:
        """The closed candles appended to their files, then the state replaced (in that order:
        see the module's invariant); a ConfigError naming the file that could not be written."""
        try:
            self._save()
        except OSError as exc:
            raise ConfigError(exc.filename or self.plan.out, f"cannot write it: {exc.strerror or exc}") from None

    def _save(self) -> None:
        for timeframe, candles in self.closed.items():
            if candles:
                append_candles(self.plan.file_of(self.symbol, timeframe), timeframe, candles)
                last = self.written_through[timeframe]  # candles closed again by trades read again: not later
                self.written_through[timeframe] = candles[-1][0] if last is None else max(last, candles[-1][0])
        self.closed.clear()
        state = {
            "version": STATE_VERSION,
            "exchange": self.plan.exchange,
            "symbol": self.symbol,
            "since": utc_from_epoch(self.plan.since).isoformat(),
            "format": self.plan.file_format,
            "cursor": self.cursor,
            "trades": self.trades,
            "last_trade_time": self.last_trade_time,
            "timeframes": {timeframe: {"forming": builder.forming, "written_through": self.written_through[timeframe]}
                           for timeframe, builder in self.builders.items()},
        }
        data = (json.dumps(state, indent=1) + "\n").encode()  # floats as repr: a forming candle goes on exactly
        replace_atomically(self.plan.state_of(self.symbol), lambda handle: handle.write(data))

    def _report(self, started: float, first_ticks: int) -> None:
        done, total = self.ticks_sent, self.total_ticks
        elapsed, this_run = time.monotonic() - started, done - first_ticks
        reached = None if self.last_trade_time is None else utc_from_epoch(int(self.last_trade_time)).isoformat()
        log.info("download_progress", symbol=self.symbol, trades=self.trades, reached=reached,
                 percent=round(done * 100 / total) if total else 100,
                 eta_seconds=round(elapsed * (total - done) / this_run, 1) if this_run > 0 else None)


def _opening(moment: float, timeframe: str) -> int:
    """Open time of the timeframe's candle holding moment (epoch seconds), on the UTC grid."""
    step = timeframe_seconds(timeframe)
    return math.floor(moment) // step * step


def _not_covering(window: RecentCandleRows | None, needed: int, venue: str) -> str | None:
    """Why the window cannot make the file from `needed` (epoch seconds) on; None when it can."""
    if window is None:
        return f"{venue} serves no recent candles of it"
    if window.first_open is None or window.first_open > needed:
        reached = "nothing" if window.first_open is None else f"back to {utc_from_epoch(window.first_open).isoformat()}"
        return (f"{venue}'s recent candles reach {reached}, the file needs them from "
                f"{utc_from_epoch(needed).isoformat()}")
    return None
