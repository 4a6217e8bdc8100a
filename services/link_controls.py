"""What the operator does to one link of a running operation (the status server's control calls):
pause, resume, stop, start, force an exit or an entry; and what the operator asked, kept across
restarts and reloads.

Invariants: one lifecycle change (stop, start, pause, resume, reload) at a time (`one_change_at_a_time`);
what the operator asked of a live or paper link (paused, stopped) is in the state store before the
request is answered; a link is started again only once its previous run's thread has ended (one
still inside a tick, say waiting for an order's reply, finishes that tick first), so a link never
has two runs writing its account; an operator's order runs on the link's own thread, between two
ticks.
"""

import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar

import structlog

from backend.dtos import FillDTO
from backend.errors import OperatorOrderError
from backend.market_data.candle_checks import timeframe_seconds
from backend.state import LinkControls, StateStore
from services.link_lifecycle import OPERATOR_PAUSE, ContinuedRun, LinkStateError, LinkStop
from services.running_set import RunningLink, RunningSet
from services.strategy_run import RunEndedError, RunStatus, StrategyRun

log = structlog.get_logger(__name__)

T = TypeVar("T")
WATCHDOG_SECONDS = 0.1  # how often a wait for runs to end looks at them (and the daemon's stop)
# How long an operator's order waits for the run to carry it out (after the tick in progress: an
# order of the link's own may be waiting for the exchange).
OPERATOR_ORDER_TIMEOUT_SECONDS = 60.0


class OperatorControls:
    def __init__(self, running: RunningSet, store: StateStore | None, stop_event: threading.Event,
                 queue_size: int) -> None:
        self._running = running
        self._store = store
        self._stop_event = stop_event
        self._queue_size = queue_size
        self.one_change_at_a_time = threading.Lock()  # stop, start, pause, resume, reload

    # --- pause, resume, stop, start ----------------------------------------------------------------

    def pause_link(self, link_id: str) -> StrategyRun:
        """No new entries for the link (exits still allowed)."""
        with self.one_change_at_a_time:
            link = self._running.link(link_id)
            account = link.run.tick_manager.account
            if account.paused is None:
                account.paused = OPERATOR_PAUSE
            self.save(link)
        log.info("strategy_link_paused", strategy_link=link_id)
        return link.run

    def resume_link(self, link_id: str) -> StrategyRun:
        """Entries again, unless the link is paused for another reason (reconciliation)."""
        with self.one_change_at_a_time:
            link = self._running.link(link_id)
            account = link.run.tick_manager.account
            if account.paused not in (None, OPERATOR_PAUSE):
                raise LinkStateError(f"paused for another reason, which resume does not clear: {account.paused}")
            account.paused = None
            self.save(link)
        log.info("strategy_link_resumed", strategy_link=link_id)
        return link.run

    def stop_link(self, link_id: str) -> StrategyRun:
        """The link's run ends after its current tick (queued ticks discarded); its account, workforce
        and history are kept for a start, and its feed goes on for the other links."""
        with self.one_change_at_a_time:
            shutdown_timeout = self._running.shutdown_timeout
            link = self._running.link(link_id)
            if link.run.status.ended and not link.stopped_by_operator:
                raise LinkStateError(f"strategy link {link_id} has {link.run.status.value}; "
                                     "only a running link can be stopped")
            if not link.stopped_by_operator:
                link.stopped_by_operator = True
                still_busy = end_runs([link], shutdown_timeout, self._stop_event)
                self.save(link)
                if still_busy:  # never abandoned: its tick (an order, say) is booked when it ends
                    log.info("strategy_link_stopping", strategy_link=link_id,
                             reason=f"still in its tick {shutdown_timeout:g} s after the stop request; "
                                    "it stops once that tick is done")
                else:
                    log.info("strategy_link_stopped", strategy_link=link_id, status=link.run.status.value,
                             ticks_processed=link.run.ticks_processed)
        return link.run

    def start_link(self, link_id: str) -> StrategyRun:
        """A link stopped through the control API runs again in a new run with the same account,
        workforce and history; the candles it missed while stopped are a gap (missing_before) on
        its first candle of each asset. Its environment's feed must still be running."""
        with self.one_change_at_a_time:
            link = self._running.link(link_id)
            if link.stopped_by_operator and link.run.thread_running:
                raise LinkStateError(f"strategy link {link_id} is still finishing its last tick (an order in "
                                     "flight, say); start it once it has stopped")
            if not link.stopped_by_operator or link.run.status is not RunStatus.STOPPED:
                if link.run.status.ended:  # failed, stalled (also while being stopped), completed
                    raise LinkStateError(f"strategy link {link_id} has {link.run.status.value}; "
                                         "only a link stopped through the control API can be started")
                return link.run  # running already
            if self._stop_event.is_set():
                raise LinkStateError("the daemon is stopping")
            bar = timedelta(seconds=timeframe_seconds(link.timeframe))
            stop = LinkStop(self._stop_event)
            run = ContinuedRun(link.run, link.resolved.link, bar, stop, self._queue_size)
            with self._running.lock:
                feed = self._running.feeds[link.environment_id]
                if not feed.attach(run, link.timeframe):
                    raise LinkStateError(f"environment {link.environment_id}'s feed has ended "
                                         f"({feed.error or 'its data ended'}); the link cannot take ticks again")
                run.start()
                feed.detach(link.run)
                link.run, link.stop, link.stopped_by_operator = run, stop, False
            self.save(link)
            log.info("strategy_link_started", strategy_link=link_id, ticks_processed=run.ticks_processed)
        return run

    # --- an operator's orders: force exit, force entry ------------------------------------------

    def force_exit(self, link_id: str, asset: str | None = None) -> list[FillDTO | None]:
        """Sell at market what the link holds of asset (of every asset, none named), now: on the
        run's own thread, between two ticks, journaled like the link's own orders. Live and
        paper links only (a backtest's orders are its workers'). What each sell filled (None: see
        its order's log line)."""
        link = self._operable(link_id)
        if asset and asset not in link.resolved.blueprint.assets:
            raise LinkStateError(f"{asset} is not an asset of strategy link {link_id}")
        account = link.run.tick_manager.account

        def sell() -> list[FillDTO | None]:  # on the run's thread, the only one that reads the account
            assets = [asset] if asset else [p.asset for p in account.ledger.open_positions() if not p.dust]
            if not assets:
                raise OperatorOrderError("it holds nothing to sell")
            return [account.force_exit(held) for held in assets]

        return self._between_ticks(link, sell)

    def force_entry(self, link_id: str, asset: str) -> None:
        """The link's next traded candle of asset carries a buy opportunity from the operator: its
        planners size the entry as any other (its threats may still restrain it)."""
        link = self._operable(link_id)
        self._between_ticks(link, lambda: link.run.tick_manager.force_entry(asset))
        log.info("force_entry_requested", strategy_link=link_id, asset=asset)

    def _operable(self, link_id: str) -> RunningLink:
        link = self._running.link(link_id)
        if not link.kept_in_store:
            raise LinkStateError(f"strategy link {link_id} is a backtest: its orders are its workers' alone")
        return link

    def _between_ticks(self, link: RunningLink, function: Callable[[], T]) -> T:
        try:
            return link.run.call_between_ticks(function, OPERATOR_ORDER_TIMEOUT_SECONDS)
        except (RunEndedError, OperatorOrderError) as exc:
            raise LinkStateError(f"strategy link {link.resolved.link_id}: {exc}") from None

    # --- what the operator asked, kept --------------------------------------------------------------

    def stored(self, link: RunningLink) -> LinkControls:
        """What the state store keeps of the operator's requests for the link (nothing for a backtest)."""
        if self._store is None or not link.kept_in_store:
            return LinkControls()
        return self._store.link_controls(link.resolved.link_id)

    def restore(self, link: RunningLink, controls: LinkControls) -> None:
        """Before the link starts: what the operator asked of it before a restart or a reload."""
        if not (controls.paused or controls.stopped):
            return
        account = link.run.tick_manager.account
        if controls.paused and account.paused is None:
            account.paused = OPERATOR_PAUSE
        if controls.stopped:
            link.stopped_by_operator = True
            link.run.end_unstarted(RunStatus.STOPPED)  # not started until start_link
        log.info("link_controls_restored", strategy_link=link.resolved.link_id, paused=controls.paused,
                 stopped=controls.stopped)

    def save(self, link: RunningLink) -> None:
        if self._store is None or not link.kept_in_store:
            return
        self._store.save_link_controls(link.resolved.link_id, LinkControls(*asked_of(link)))


def asked_of(link: RunningLink) -> tuple[bool, bool]:
    """(paused, stopped) by the operator."""
    return link.run.tick_manager.account.paused == OPERATOR_PAUSE, link.stopped_by_operator


def end_runs(links: Sequence[RunningLink], wait_seconds: float, stop_event: threading.Event) -> list[RunningLink]:
    """Stop each link's run after its current tick and wait for them together, at most
    wait_seconds (cut short by the daemon's stop); the links whose run is still in its tick
    then. A run is never abandoned here: the tick it finishes may book an order's fill."""
    for link in links:
        link.stop.set()
    deadline = time.monotonic() + wait_seconds
    for link in links:
        while link.run.thread_running and not stop_event.is_set() and time.monotonic() < deadline:
            link.run.join(min(WATCHDOG_SECONDS, max(0.0, deadline - time.monotonic())))
        if link.run.status is RunStatus.PENDING:  # stopped before the operation started
            link.run.end_unstarted(RunStatus.STOPPED)
    return [link for link in links if link.run.thread_running]
