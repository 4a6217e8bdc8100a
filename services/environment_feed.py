"""Fans every RAW_TICK of one execution environment out to the strategy runs bound to it.

Invariants: the feed thread never dies outside its error handling; it never waits on a run that
takes no more ticks (failed, stalled, stopping); every line it logs names the environment and
the strategy links that depend on it; a live feed that delivered no candle has failed.
"""

import threading
import time
from collections.abc import Sequence
from datetime import datetime

import structlog

from backend.errors import OpdaemonError
from backend.market_data import TickSource
from services.strategy_run import RunStatus, StrategyRun

log = structlog.get_logger(__name__)


class EnvironmentFeed:
    def __init__(
        self,
        environment_id: str,
        source: TickSource,
        runs: Sequence[StrategyRun],
        stop: threading.Event,
        progress_every_pct: int = 10,
    ) -> None:
        self.environment_id = environment_id
        self._source = source
        self._runs = list(runs)
        self._stop = stop
        # Ends the source's waits: set on a stop request, or once no run bound here takes ticks
        # (a live source would otherwise poll on until its next candle, an hour on 1h candles).
        self._halt = threading.Event()
        self._progress_every_pct = progress_every_pct
        self.error: str | None = None
        self._thread = threading.Thread(target=self._feed, name=f"feed:{environment_id}", daemon=True)

    @property
    def log_context(self) -> dict[str, object]:
        """The fields every feed-level line carries, so a per-strategy log view sees its feed."""
        return {"environment": self.environment_id, "strategy_links": [run.link_id for run in self._runs]}

    def prepare(self) -> None:
        """The source's start-up checks (exchange reachable, key accepted), before any thread starts."""
        with structlog.contextvars.bound_contextvars(**self.log_context):
            self._source.prepare()

    def resume_after_restart(self) -> None:
        """Tell the source, per symbol, the oldest last-processed candle of the runs bound to it."""
        cursors: dict[str, datetime] = {}
        for run in self._runs:
            for symbol, candle_time in run.tick_manager.account.cursors.items():
                cursors[symbol] = min(candle_time, cursors.get(symbol, candle_time))
        if cursors:
            log.info("resuming_after_restart", **self.log_context,
                     last_processed={symbol: moment.isoformat() for symbol, moment in cursors.items()})
            self._source.resume_after(cursors)

    def start(self) -> None:
        self._thread.start()

    def halt_if_unneeded(self) -> None:
        """Called by the watchdog: end the feed's waits once it is stopping or serves no run."""
        if self._stop.is_set() or all(run.status.ended for run in self._runs):
            self._halt.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _feed(self) -> None:
        structlog.contextvars.bind_contextvars(**self.log_context)
        sent = 0
        try:
            log.info("environment_feed_started", total_ticks=self._source.total_ticks)
            sent = self._send_ticks()
            if self._source.total_ticks is None and sent == 0 and not self.error:
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
            for run in self._runs:
                run.finish(end)
            log.info("environment_feed_finished", ticks_sent=sent,
                     candles_rejected=self._source.candles_rejected)

    def _send_ticks(self) -> int:
        total = self._source.total_ticks
        started = time.monotonic()
        next_report = self._progress_every_pct
        sent = 0
        for tick in self._source.ticks(self._halt):
            delivered = any([run.submit(tick) for run in self._runs])  # a list: submit to every run
            sent += delivered
            if self._stop.is_set() or self._halt.is_set():
                break
            if not delivered:
                log.warning("environment_feed_idle", reason="no strategy run bound to it takes ticks any more")
                break
            if total and sent * 100 >= next_report * total:
                elapsed = time.monotonic() - started
                log.info(
                    "backtest_progress", ticks=sent, total_ticks=total,
                    percent=round(sent * 100 / total), tick_time=tick.timestamp.isoformat(),
                    eta_seconds=round(elapsed * (total - sent) / sent, 1),
                )
                next_report += self._progress_every_pct
        return sent
