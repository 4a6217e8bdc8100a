"""Watches an operation's runs until they have all ended: the watchdog and the shutdown deadline.

Invariants: a run is marked stalled once one tick has taken longer than `stall_timeout_seconds`;
`watch_until_ended` returns within `shutdown_timeout_seconds` of a stop request and never waits on
a run that is stalled, whatever its workers do; it reads the running set under its lock only, so
it never sees it half changed by a reload; a link stopped through the control API keeps its feed,
and so the daemon, running.
"""

import threading
import time

import structlog

from services.environment_feed import EnvironmentFeed
from services.link_controls import WATCHDOG_SECONDS
from services.running_set import RunningSet
from services.strategy_run import RunSummary, StrategyRun

log = structlog.get_logger(__name__)


def watch_until_ended(running: RunningSet, stop_event: threading.Event) -> list[RunSummary]:
    """Watch the runs until all have ended (or been given up on), then log their summaries."""
    stop_deadline: float | None = None
    while True:
        now = time.monotonic()
        with running.lock:  # never between a run leaving and the one replacing it
            runs, feeds = running.runs, running.feed_list
            for run in runs:
                run.check_stall(now, running.stall_timeout)
            for feed in feeds:
                feed.halt_if_unneeded()
            threads: list[EnvironmentFeed | StrategyRun] = [*feeds, *runs]
            busy = [thread for thread in threads if thread.is_alive()]
        if not busy:
            break
        if stop_event.is_set():
            if stop_deadline is None:
                log.info("operation_stopping", shutdown_timeout_seconds=running.shutdown_timeout)
                stop_deadline = now + running.shutdown_timeout
            if now >= stop_deadline:
                _give_up_after_stop(busy, running.shutdown_timeout)
                break
        busy[0].join(WATCHDOG_SECONDS)  # short joins, so signal handlers get to run
    summaries = [run.summary() for run in running.runs]
    for summary in summaries:
        log.info("strategy_summary", **summary.as_log_fields())
    log.info("operation_finished", failed=[s.strategy_link for s in summaries if s.failed])
    return summaries


def _give_up_after_stop(busy: list[EnvironmentFeed | StrategyRun], shutdown_timeout: float) -> None:
    for thread in busy:
        if isinstance(thread, StrategyRun):
            thread.abandon(f"did not finish its tick within {shutdown_timeout:g} s of the stop request")
        else:  # e.g. blocked in a slow exchange request; it is a daemon thread and ends with us
            log.warning("environment_feed_not_stopped", environment=thread.environment_id,
                        waited_seconds=shutdown_timeout)
