"""Fans every RAW_TICK of one execution environment out to the strategy runs bound to it.

The source's candles come as blocks (a live candle: a block of one row) and go on as blocks,
through one path whatever the source. Runs of the environment's own (base) timeframe get each
block as it comes; for each longer timeframe, one Resampler per environment builds the bars once
and every run of that timeframe gets them, in order, as blocks (see backend.market_data.resample
for when a bar is complete and how gaps are marked).

Invariants: the feed thread never dies outside its error handling; it never waits on a run that
takes no more ticks (failed, stalled, stopping); every line it logs names the environment and
the strategy links that depend on it; a live feed that delivered no candle has failed; progress
counts base ticks (every symbol's), whatever the runs' timeframes; a window of several symbols
goes to the runs as it is, and is resampled frame by frame (a backtest of several symbols is not
resampled: the config loader refuses it);
runs attached while it runs (`attach`, `detach`) get every tick from then on or none, and a run
attached is finished when the feed ends, never left waiting; a run stopped on request keeps the
feed going (it may be started again).
"""

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from backend.errors import OpdaemonError
from backend.interfaces.candle_window import Candles, CandleWindow
from backend.market_data import RawTick, TickSource
from backend.market_data.candle_checks import log_data_gap
from backend.market_data.raw_tick import candles_of, tick_frames
from backend.market_data.resample import Resampler
from backend.market_data.timeframes import timeframe_seconds
from services.strategy_run import RunStatus, StrategyRun

log = structlog.get_logger(__name__)


class _Progress:
    """`backtest_progress` lines: one each time another progress_every_pct of the ticks is sent."""

    def __init__(self, total: int | None, every_pct: int) -> None:
        self._total = total
        self._every_pct = every_pct
        self._next_pct = every_pct
        self._started = time.monotonic()

    def cut(self, candles: Candles, sent: int) -> Iterator[Candles]:
        """candles (the ticks after the first `sent`) cut where a line is due, so that each is
        logged once the tick it counts is sent (`report` between the pieces); a window of several
        symbols is never cut (a line is logged after it)."""
        if isinstance(candles, CandleWindow):
            yield candles
            return
        start = 0
        while self._total:
            due = -(-self._next_pct * self._total // 100) - (sent + start)  # ticks until the next line
            if not 0 < due < len(candles) - start:
                break
            yield candles.rows(start, start + due)
            start += due
        yield candles.rows(start, len(candles)) if start else candles

    def report(self, sent: int, tick_time: datetime) -> None:
        total = self._total
        if not total or sent * 100 < self._next_pct * total:
            return
        percent = sent * 100 // total
        elapsed = time.monotonic() - self._started
        log.info(
            "backtest_progress", ticks=sent, total_ticks=total, percent=round(sent * 100 / total),
            tick_time=tick_time.isoformat(), eta_seconds=round(elapsed * (total - sent) / sent, 1),
        )
        self._next_pct = (percent // self._every_pct + 1) * self._every_pct


@dataclass
class _Route:
    """The runs of one timeframe and, above the base timeframe, the one resampler building their bars."""

    timeframe: str
    resampler: Resampler | None  # None: the base timeframe, whose ticks go through as they are
    runs: list[StrategyRun] = field(default_factory=list)
    bars_sent: int = 0  # a resampled timeframe's (the base one's are the feed's ticks_sent)


class EnvironmentFeed:
    def __init__(
        self,
        environment_id: str,
        source: TickSource,
        runs: Sequence[StrategyRun],
        stop: threading.Event,
        base_timeframe: str,
        run_timeframes: Mapping[str, str],
        progress_every_pct: int = 10,
    ) -> None:
        """base_timeframe: the source's candles; run_timeframes: each run's timeframe by link id
        (the base one or a longer one the config loader accepted)."""
        self.environment_id = environment_id
        self._source = source
        self._runs = list(runs)
        self._base_timeframe = base_timeframe
        self._run_timeframes = dict(run_timeframes)
        self._routes = self._routes_by_timeframe()
        self._stop = stop
        # Ends the source's waits: set on a stop request, or once no run bound here takes ticks
        # (a live source would otherwise poll on until its next candle, an hour on 1h candles).
        self._halt = threading.Event()
        self._progress_every_pct = progress_every_pct
        self.error: str | None = None
        # For the status server: base ticks sent, candles after a hole, when the feed started and
        # when its last tick came (time.monotonic()), read at scrape time.
        self.ticks_sent = 0
        self.gaps = 0
        self.started_at: float | None = None
        self.last_tick_at: float | None = None
        self._thread = threading.Thread(target=self._feed, name=f"feed:{environment_id}", daemon=True)
        # attach/detach (other threads) against the feed's end: a run is attached before the end
        # (and finished by it) or refused. A route's runs are replaced, never changed in place, so
        # the feed thread's loops never see a list change under them; a new route is appended.
        self._membership = threading.Lock()
        self._ended = False

    @property
    def log_context(self) -> dict[str, object]:
        """The fields every feed-level line carries, so a per-strategy log view sees its feed."""
        return {"environment": self.environment_id, "strategy_links": [run.link_id for run in self._runs]}

    def _routes_by_timeframe(self) -> list[_Route]:
        """One route per timeframe (`60m` and `1h` are one), base first: a bar is built once."""
        base = self._base_timeframe
        routes: dict[int, _Route] = {timeframe_seconds(base): _Route(base, None)}
        for run in self._runs:
            timeframe = self._run_timeframes[run.link_id]
            seconds = timeframe_seconds(timeframe)
            if seconds not in routes:
                routes[seconds] = _Route(timeframe, Resampler(base, timeframe))
            routes[seconds].runs.append(run)
        return [route for route in routes.values() if route.runs]

    def prepare(self) -> None:
        """The source's start-up checks (exchange reachable, key accepted), before any thread starts."""
        with structlog.contextvars.bound_contextvars(**self.log_context):
            self._source.prepare()

    def resume_after_restart(self) -> None:
        """Tell the source, per symbol, the oldest base candle the runs bound to it have all processed."""
        cursors: dict[str, datetime] = {}
        base = timedelta(seconds=timeframe_seconds(self._base_timeframe))
        for run in self._runs:
            # A run's cursor is the open time of its last bar; that bar took base candles up to
            # its last one, so the source replays from there and the next bar is built whole.
            bar = timedelta(seconds=timeframe_seconds(self._run_timeframes[run.link_id]))
            for symbol, bar_time in run.tick_manager.account.cursors.items():
                last_base = bar_time + bar - base
                cursors[symbol] = min(last_base, cursors.get(symbol, last_base))
        if cursors:
            log.info("resuming_after_restart", **self.log_context,
                     last_processed={symbol: moment.isoformat() for symbol, moment in cursors.items()})
            self._source.resume_after(cursors)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread.start()

    @property
    def live(self) -> bool:
        """A source without an end (a live exchange) rather than a backtest's file."""
        return self._source.total_ticks is None

    @property
    def total_ticks(self) -> int | None:
        """Base ticks the source will send (a backtest's), None for a live one: with `ticks_sent`, progress."""
        return self._source.total_ticks

    @property
    def reconnects(self) -> int:
        return getattr(self._source, "reconnects", 0)

    @property
    def base_timeframe_seconds(self) -> int:
        return timeframe_seconds(self._base_timeframe)

    def last_candle_age(self, now: float) -> float | None:
        """Seconds since the last tick came (since the start before the first); None if not started."""
        since = self.last_tick_at if self.last_tick_at is not None else self.started_at
        return None if since is None else max(0.0, now - since)

    def stale_reason(self, now: float, margin_seconds: float) -> str | None:
        """Why the feed is not fresh at now (time.monotonic()), or None: a live feed whose last
        tick (or start) is older than its timeframe plus margin_seconds, or whose source says it
        is stale; a failed feed. A feed that ended without error (a backtest done) is not stale."""
        if self.error:
            return f"environment {self.environment_id}: feed failed: {self.error}"
        if self.started_at is None or not self.is_alive():
            return None
        stale_since = getattr(self._source, "stale_since", None)
        if stale_since is not None:
            return f"environment {self.environment_id}: market data stale since {stale_since.isoformat()}"
        age = self.last_candle_age(now)
        limit = self.base_timeframe_seconds + margin_seconds
        if self.live and age is not None and age > limit:
            return f"environment {self.environment_id}: no candle for {age:.0f} s (limit {limit:g} s)"
        return None

    def halt_if_unneeded(self) -> None:
        """Called by the watchdog: end the feed's waits once it is stopping or serves no run."""
        if self._stop.is_set() or self._unneeded():
            self._halt.set()

    def _unneeded(self) -> bool:
        """No run bound here takes ticks or may take them again: each has ended, and not on a stop
        request (a link stopped through the control API can be started again). None bound: unneeded."""
        return all(run.status.ended and run.status is not RunStatus.STOPPED for run in self._runs)

    def attach(self, run: StrategyRun, timeframe: str) -> bool:
        """Send run the ticks from now on, as bars of timeframe; False if the feed has ended."""
        with self._membership:
            if self._ended:
                return False
            self._run_timeframes[run.link_id] = timeframe
            seconds = timeframe_seconds(timeframe)
            route = next((r for r in self._routes if timeframe_seconds(r.timeframe) == seconds), None)
            if route is None:  # a new timeframe: its bars are built from the next complete one on
                self._routes.append(_Route(timeframe, Resampler(self._base_timeframe, timeframe), [run]))
            else:
                route.runs = [*route.runs, run]
            self._runs = [*self._runs, run]
            return True

    def detach(self, run: StrategyRun) -> None:
        """No more ticks for run; a feed left with no run ends (halt_if_unneeded)."""
        with self._membership:
            for route in self._routes:
                route.runs = [r for r in route.runs if r is not run]
            self._runs = [r for r in self._runs if r is not run]

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _feed(self) -> None:
        structlog.contextvars.bind_contextvars(**self.log_context)
        sent = 0
        try:
            log.info("environment_feed_started", total_ticks=self._source.total_ticks)
            sent = self._send_blocks()
            stopped = self._stop.is_set() or self._halt.is_set()  # asked to end: not the source's failure
            if self._source.total_ticks is None and sent == 0 and not self.error and self._runs and not stopped:
                self.error = "no live candle was delivered"
                log.error("environment_feed_failed", error=self.error)
        except OpdaemonError as exc:  # e.g. a symbol the exchange does not list: no traceback
            self.error = str(exc)
            log.error("environment_feed_failed", error=self.error)
        except BaseException as exc:  # anything else still ends the feed in order
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("environment_feed_failed", error=self.error)
        finally:
            end = RunStatus.STOPPED if self._stop.is_set() or self.error else RunStatus.COMPLETED
            with self._membership:
                self._ended = True
            for run in self._runs:
                run.finish(end)
            self._report_open_bars()
            log.info("environment_feed_finished", ticks_sent=sent,
                     candles_rejected=self._source.candles_rejected,
                     bars_sent={route.timeframe: route.bars_sent for route in self._routes if route.resampler})

    def _send_blocks(self) -> int:
        """The source's candles a block at a time (a live candle: a block of one row), each block
        as it is to the runs of the base timeframe (each replays it, columnar when it can), and
        through the resampler of every longer timeframe, the bars it completes, as a block, to that
        timeframe's runs. Returns the base candles sent."""
        progress = _Progress(self._source.total_ticks, self._progress_every_pct)
        sent = 0
        for block in self._source.blocks(self._halt):
            for candles in progress.cut(block, sent):
                if not self._send_block(candles):
                    return sent
                sent += len(candles)
                self.ticks_sent = sent
                if self._stop.is_set() or self._halt.is_set():
                    return sent
                progress.report(sent, candles.open_time(len(candles) - 1))
        return sent

    def _send_block(self, candles: Candles) -> bool:
        """False, sending nothing, once no run bound here takes ticks."""
        self.last_tick_at = time.monotonic()
        if self._unneeded():
            log.warning("environment_feed_idle", reason="no strategy run bound to it takes ticks any more")
            return False
        self.gaps += candles.missing_candles
        for route in self._routes:
            if route.resampler is None:
                for run in route.runs:
                    run.submit(candles)
            else:  # the bars the block completes, as a block (several symbols': a window) of their own
                bars = [bar for frame in tick_frames(candles) for _, _, tick in frame
                        for bar in route.resampler.add(tick)]
                for bar in bars:
                    self._announce_gaps(route.timeframe, bar)
                if bars:
                    block = candles_of(bars)
                    for run in route.runs:
                        run.submit(block)
                    route.bars_sent += len(bars)
        return True

    def _announce_gaps(self, timeframe: str, bar: RawTick) -> None:
        """A resampled bar's gaps, in its own timeframe (the base gaps were logged by the source)."""
        if bar.missing_before:
            log_data_gap(bar.symbol, bar.timestamp, bar.missing_before, timeframe)
        if bar.missing_within:
            log.warning("bar_missing_base_candles", symbol=bar.symbol, timeframe=timeframe,
                        bar_time=bar.timestamp.isoformat(), base_timeframe=self._base_timeframe,
                        missing_candles=bar.missing_within)

    def _report_open_bars(self) -> None:
        """Buckets the data ended inside were never complete, so no run got them: say so."""
        for route in self._routes:
            if route.resampler is None:
                continue
            for symbol, (bar_time, base_candles) in route.resampler.open_bars().items():
                log.info("bar_not_completed", symbol=symbol, timeframe=route.timeframe,
                         bar_time=bar_time.isoformat(), base_candles=base_candles)
