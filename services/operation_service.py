"""Boots every active strategy link of an operation in isolation and runs them to the end; stops,
starts, pauses and resumes one link alone, and applies a reloaded operation file.

Invariants: everything is built, and every config error raised, before the first thread starts;
a wrong setting a tick source or gateway reports (a SettingError: it knows no file) becomes the
ConfigError naming the link's environment file, here, where that file is known;
`wait()` returns within `shutdown_timeout_seconds` of a stop request and never waits on a run that
is stalled, whatever its workers do; the watchdog marks a run stalled once one tick has taken
longer than `stall_timeout_seconds`; one lifecycle change (stop, start, pause, resume, reload) at
a time, and a reload checks the whole file, and contacts the exchanges of new environments,
before it changes anything, so a rejected one leaves the running set as it was; `wait()` never
sees the running set half changed; what the operator asked of a live or paper link (paused,
stopped) is in the state store before the request is answered; a link never has two runs writing
its account: a link is started again, or rebuilt by a reload, only once its previous run's thread
has ended (one still inside a tick, say waiting for an order's reply, finishes that tick first).
"""

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol, TypeVar

import structlog

from backend.config import LoadedOperation, ResolvedLink, load_operation
from backend.config.schema import EnvironmentConfig, LiveEnvironment
from backend.config.timerange import Timerange, blamed_for_empty_range
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import FillDTO
from backend.errors import ConfigError, ExchangeError, OperatorOrderError, SettingError
from backend.interfaces import WorkerServices
from backend.interfaces.journal import IAccountJournal, InMemoryJournal
from backend.market_data import TickSource
from backend.market_data.candle_checks import timeframe_seconds
from backend.portfolio import Ledger, StrategyAccount
from backend.portfolio.account import numbered_order_ids
from backend.state import LinkControls, StateStore, StoreJournal
from services.environment_feed import EnvironmentFeed
from services.execution_environments import ExecutionEnvironments
from services.link_lifecycle import OPERATOR_PAUSE, ContinuedRun, LinkStateError, LinkStop, UnknownLinkError
from services.operation_reload import ReloadFailedError, ReloadPlan, plan_reload
from services.reconciliation import reconcile
from services.strategy_run import RunEndedError, RunSnapshot, RunStatus, RunSummary, StrategyRun
from services.tick_cache_manager import TickCacheManager
from services.worker_factory import WorkerFactory

log = structlog.get_logger(__name__)

SourceFactory = Callable[[EnvironmentConfig], TickSource]
WATCHDOG_SECONDS = 0.1  # how often wait() checks the runs
MAX_WARMUP_CANDLES = 700  # Kraken's OHLC endpoint returns at most 720 candles, the last one forming
# How long a reload waits for the runs it replaces to finish their tick (an order in flight takes
# the exchange's timeouts: AddOrder, then looking it up) before it gives up and changes nothing more.
HANDOVER_TIMEOUT_SECONDS = 120.0
# How long an operator's order waits for the run to carry it out (after the tick in progress: an
# order of the link's own may be waiting for the exchange).
OPERATOR_ORDER_TIMEOUT_SECONDS = 60.0
T = TypeVar("T")


@dataclass
class _Link:
    """A strategy link in the running set: its config, its current run and that run's own stop."""

    resolved: ResolvedLink
    run: StrategyRun
    stop: LinkStop
    stopped_by_operator: bool = False

    @property
    def environment_id(self) -> str:
        return self.resolved.link.execution_environment_id

    @property
    def timeframe(self) -> str:
        return self.resolved.blueprint.timeframe

    @property
    def kept_in_store(self) -> bool:
        """A live or paper link: its account and what the operator asked of it survive restarts."""
        return isinstance(self.resolved.environment, LiveEnvironment)


class NeedsHistory(Protocol):
    @property
    def link_id(self) -> str: ...

    @property
    def history_needed(self) -> int: ...


@dataclass(frozen=True)
class _PlannedNeed:
    link_id: str
    history_needed: int


class OperationService:
    def __init__(
        self,
        operation: LoadedOperation,
        worker_factory: WorkerFactory | None = None,
        source_factory: SourceFactory | None = None,
        queue_size: int = 1024,
        stop_event: threading.Event | None = None,
        store: StateStore | None = None,
    ) -> None:
        """store: where live and paper links keep their accounts (None: they live in memory)."""
        self.operation = operation
        self.stop_event = stop_event or threading.Event()
        self._store = store
        self._environments = ExecutionEnvironments(self.stop_event)
        self.stall_timeout = operation.config.stall_timeout_seconds
        self.shutdown_timeout = operation.config.shutdown_timeout_seconds
        self._factory = worker_factory or WorkerFactory()
        self._source_factory = source_factory or self._environments.tick_source
        self._queue_size = queue_size
        self._one_change_at_a_time = threading.Lock()  # stop, start, pause, resume, reload
        self._running_set = threading.RLock()  # held while the set changes and while wait() reads it
        self._started = threading.Event()
        self._build_listeners: list[Callable[[StrategyRun, str], None]] = []
        self._links = {link.link_id: self._build_link(link) for link in operation.links}
        by_environment: dict[str, list[_Link]] = {}
        for link in self._links.values():
            by_environment.setdefault(link.environment_id, []).append(link)
        self._feeds: dict[str, EnvironmentFeed] = {}
        self._feed_settings: dict[str, EnvironmentConfig] = {}  # what each feed was built from
        for environment_id, links in by_environment.items():
            first = links[0].resolved
            timeframes = {link.resolved.link_id: link.timeframe for link in links}
            # Lines logged while the data loads name the environment and its links too.
            with structlog.contextvars.bound_contextvars(
                environment=environment_id, strategy_links=list(timeframes)
            ), settings_of(first.environment_file, operation.timerange):
                source = self._source_factory(with_warmup_for(first.environment, [link.run for link in links],
                                                              timeframes))
            self._feeds[environment_id] = EnvironmentFeed(
                environment_id, source, [link.run for link in links], self.stop_event,
                base_timeframe=first.environment.timeframe, run_timeframes=timeframes,
            )
            self._feed_settings[environment_id] = first.environment
        # The feeds know no files: a prepare() error is named after the environment's file here.
        for environment_id, feed in self._feeds.items():
            with settings_of(by_environment[environment_id][0].resolved.environment_file, operation.timerange):
                feed.prepare()
            feed.resume_after_restart()
        live = [link for link in self._links.values()
                if isinstance(link.resolved.environment, LiveEnvironment) and link.resolved.environment.mode == "live"]
        reconcile({link.resolved.link_id: link.run.tick_manager.account for link in live},
                  {link.resolved.link_id: link.resolved.blueprint.assets[0].split("/")[1] for link in live})
        for link in self._links.values():
            self._restore_controls(link, self._stored_controls(link))

    @property
    def runs(self) -> list[StrategyRun]:
        """The current run of every link in the running set, in the operation file's order."""
        with self._running_set:
            return [link.run for link in self._links.values()]

    @property
    def feeds(self) -> list[EnvironmentFeed]:
        with self._running_set:
            return list(self._feeds.values())

    def run_of(self, link_id: str) -> StrategyRun:
        return self._link(link_id).run

    def snapshots(self) -> list[RunSnapshot]:
        """What the status server reads: each link's current run as it last published itself."""
        return [run.snapshot() for run in self.runs]

    def snapshot_of(self, link_id: str) -> RunSnapshot:
        return self.run_of(link_id).snapshot()

    def _link(self, link_id: str) -> _Link:
        with self._running_set:
            link = self._links.get(link_id)
        if link is None:
            raise UnknownLinkError(f"no strategy link {link_id!r}")
        return link

    def _build_link(self, link: ResolvedLink) -> _Link:
        context = TradingContextProvider()
        history = OhlcvProvider(self._factory.history_needed(link.blueprint, link.blueprint_file))
        account = self._account(link)
        workforce = self._factory.build(link.blueprint, link.blueprint_file, WorkerServices(context, account, history))
        manager = TickCacheManager(context, history, workforce, account, link.blueprint.assets)
        stop = LinkStop(self.stop_event)
        return _Link(link, StrategyRun(link.link, manager, stop, self._queue_size), stop)

    def _account(self, link: ResolvedLink) -> StrategyAccount:
        """The link's account: restored from the store for live and paper links, new otherwise."""
        with settings_of(link.environment_file):
            gateway = self._environments.order_gateway(link.environment, link.link_id)
        journal: IAccountJournal = InMemoryJournal()
        ledger = Ledger(link.environment.starting_capital)
        if not isinstance(link.environment, LiveEnvironment):  # a backtest: its orders never leave the process
            return StrategyAccount(ledger, gateway, journal, numbered_order_ids("backtest-"))
        if self._store is not None:
            journal = StoreJournal(self._store, link.link_id)
            restored = self._store.load_account(link.link_id)
            mode = link.environment.mode
            self._check_account_mode(link)
            if restored is None:
                self._store.save_account(link.link_id, ledger.state)
            else:
                ledger = Ledger(restored.starting_capital, restored)
                log.info("account_restored", strategy_link=link.link_id, mode=mode, cash=round(restored.cash, 2),
                         positions={a: p.qty for a, p in restored.positions.items()}, trades=restored.trades)
            self._store.set_account_mode(link.link_id, mode)
        return StrategyAccount(ledger, gateway, journal)

    def _check_account_mode(self, link: ResolvedLink) -> None:
        """A paper account's coins were never bought: trading them live would sell real ones."""
        if self._store is None or not isinstance(link.environment, LiveEnvironment):
            return
        mode = link.environment.mode
        kept_mode = self._store.account_mode(link.link_id)
        if kept_mode not in (None, mode) and self._store.load_account(link.link_id) is not None:
            raise ConfigError(
                link.environment_file,
                f"strategy link {link.link_id} has a {kept_mode} account in {self._store.path}; it cannot "
                f"continue as mode: {mode}: use another --data-dir for it",
                "mode",
            )

    # --- the whole operation ---------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "operation_started", operation=self.operation.config.display_name,
            strategy_links=[run.link_id for run in self.runs],
            stall_timeout_seconds=self.stall_timeout, shutdown_timeout_seconds=self.shutdown_timeout,
        )
        with self._running_set:
            for run in self.runs:
                if run.status is RunStatus.PENDING:  # not a link kept stopped from before a restart
                    run.start()
            for feed in self._feeds.values():
                feed.start()
        self._started.set()

    def stop(self) -> None:
        """Stop reading new ticks; every run ends after its current tick."""
        self.stop_event.set()

    def wait(self) -> list[RunSummary]:
        """Watch the runs until all have ended (or been given up on), then log their summaries.
        A link stopped through the control API keeps its feed, and so the daemon, running."""
        stop_deadline: float | None = None
        while True:
            now = time.monotonic()
            with self._running_set:  # never between a run leaving and the one replacing it
                runs, feeds = self.runs, self.feeds
                for run in runs:
                    run.check_stall(now, self.stall_timeout)
                for feed in feeds:
                    feed.halt_if_unneeded()
                threads: list[EnvironmentFeed | StrategyRun] = [*feeds, *runs]
                busy = [thread for thread in threads if thread.is_alive()]
            if not busy:
                break
            if self.stop_event.is_set():
                if stop_deadline is None:
                    log.info("operation_stopping", shutdown_timeout_seconds=self.shutdown_timeout)
                    stop_deadline = now + self.shutdown_timeout
                if now >= stop_deadline:
                    self._give_up_after_stop(busy)
                    break
            busy[0].join(WATCHDOG_SECONDS)  # short joins, so signal handlers get to run
        summaries = [run.summary() for run in self.runs]
        for summary in summaries:
            log.info("strategy_summary", **summary.as_log_fields())
        log.info("operation_finished", failed=[s.strategy_link for s in summaries if s.failed])
        return summaries

    def _give_up_after_stop(self, busy: list[EnvironmentFeed | StrategyRun]) -> None:
        for thread in busy:
            if isinstance(thread, StrategyRun):
                thread.abandon(f"did not finish its tick within {self.shutdown_timeout:g} s of the stop request")
            else:  # e.g. blocked in a slow exchange request; it is a daemon thread and ends with us
                log.warning("environment_feed_not_stopped", environment=thread.environment_id,
                            waited_seconds=self.shutdown_timeout)

    def run(self) -> list[RunSummary]:
        self.start()
        return self.wait()

    @property
    def feed_errors(self) -> list[str]:
        return [f"{feed.environment_id}: {feed.error}" for feed in self.feeds if feed.error]

    def when_link_built(self, listener: Callable[[StrategyRun, str], None]) -> None:
        """listener(run, timeframe) for the run of every link a reload builds (added or restarted),
        before it starts (e.g. the backtest report, which records the runs built at start itself)."""
        self._build_listeners.append(listener)

    # --- one link: pause, resume, stop, start ----------------------------------------------------

    def pause_link(self, link_id: str) -> StrategyRun:
        """No new entries for the link (exits still allowed)."""
        with self._one_change_at_a_time:
            link = self._link(link_id)
            account = link.run.tick_manager.account
            if account.paused is None:
                account.paused = OPERATOR_PAUSE
            self._save_controls(link)
        log.info("strategy_link_paused", strategy_link=link_id)
        return link.run

    def resume_link(self, link_id: str) -> StrategyRun:
        """Entries again, unless the link is paused for another reason (reconciliation)."""
        with self._one_change_at_a_time:
            link = self._link(link_id)
            account = link.run.tick_manager.account
            if account.paused not in (None, OPERATOR_PAUSE):
                raise LinkStateError(f"paused for another reason, which resume does not clear: {account.paused}")
            account.paused = None
            self._save_controls(link)
        log.info("strategy_link_resumed", strategy_link=link_id)
        return link.run

    def stop_link(self, link_id: str) -> StrategyRun:
        """The link's run ends after its current tick (queued ticks discarded); its account, workforce
        and history are kept for a start, and its feed goes on for the other links."""
        with self._one_change_at_a_time:
            link = self._link(link_id)
            if link.run.status.ended and not link.stopped_by_operator:
                raise LinkStateError(f"strategy link {link_id} has {link.run.status.value}; "
                                     "only a running link can be stopped")
            if not link.stopped_by_operator:
                link.stopped_by_operator = True
                still_busy = self._end_runs([link], self.shutdown_timeout)
                self._save_controls(link)
                if still_busy:  # never abandoned: its tick (an order, say) is booked when it ends
                    log.info("strategy_link_stopping", strategy_link=link_id,
                             reason=f"still in its tick {self.shutdown_timeout:g} s after the stop request; "
                                    "it stops once that tick is done")
                else:
                    log.info("strategy_link_stopped", strategy_link=link_id, status=link.run.status.value,
                             ticks_processed=link.run.ticks_processed)
        return link.run

    def start_link(self, link_id: str) -> StrategyRun:
        """A link stopped through the control API runs again in a new run with the same account,
        workforce and history; the candles it missed while stopped are a gap (missing_before) on
        its first candle of each asset. Its environment's feed must still be running."""
        with self._one_change_at_a_time:
            link = self._link(link_id)
            if link.stopped_by_operator and link.run.thread_running:
                raise LinkStateError(f"strategy link {link_id} is still finishing its last tick (an order in "
                                     "flight, say); start it once it has stopped")
            if not link.stopped_by_operator or link.run.status is not RunStatus.STOPPED:
                if link.run.status.ended:  # failed, stalled (also while being stopped), completed
                    raise LinkStateError(f"strategy link {link_id} has {link.run.status.value}; "
                                         "only a link stopped through the control API can be started")
                return link.run  # running already
            if self.stop_event.is_set():
                raise LinkStateError("the daemon is stopping")
            bar = timedelta(seconds=timeframe_seconds(link.timeframe))
            stop = LinkStop(self.stop_event)
            run = ContinuedRun(link.run, link.resolved.link, bar, stop, self._queue_size)
            with self._running_set:
                feed = self._feeds[link.environment_id]
                if not feed.attach(run, link.timeframe):
                    raise LinkStateError(f"environment {link.environment_id}'s feed has ended "
                                         f"({feed.error or 'its data ended'}); the link cannot take ticks again")
                run.start()
                feed.detach(link.run)
                link.run, link.stop, link.stopped_by_operator = run, stop, False
            self._save_controls(link)
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

    def _operable(self, link_id: str) -> _Link:
        link = self._link(link_id)
        if not link.kept_in_store:
            raise LinkStateError(f"strategy link {link_id} is a backtest: its orders are its workers' alone")
        return link

    def _between_ticks(self, link: _Link, function: Callable[[], T]) -> T:
        try:
            return link.run.call_between_ticks(function, OPERATOR_ORDER_TIMEOUT_SECONDS)
        except (RunEndedError, OperatorOrderError) as exc:
            raise LinkStateError(f"strategy link {link.resolved.link_id}: {exc}") from None

    def _end_runs(self, links: Sequence[_Link], wait_seconds: float) -> list[_Link]:
        """Stop each link's run after its current tick and wait for them together, at most
        wait_seconds (cut short by the daemon's stop); the links whose run is still in its tick
        then. A run is never abandoned here: the tick it finishes may book an order's fill."""
        for link in links:
            link.stop.set()
        deadline = time.monotonic() + wait_seconds
        for link in links:
            while link.run.thread_running and not self.stop_event.is_set() and time.monotonic() < deadline:
                link.run.join(min(WATCHDOG_SECONDS, max(0.0, deadline - time.monotonic())))
            if link.run.status is RunStatus.PENDING:  # stopped before the operation started
                link.run.end_unstarted(RunStatus.STOPPED)
        return [link for link in links if link.run.thread_running]

    def _stored_controls(self, link: _Link) -> LinkControls:
        if self._store is None or not link.kept_in_store:
            return LinkControls()
        return self._store.link_controls(link.resolved.link_id)

    def _restore_controls(self, link: _Link, controls: LinkControls) -> None:
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

    def _save_controls(self, link: _Link) -> None:
        if self._store is None or not link.kept_in_store:
            return
        paused = link.run.tick_manager.account.paused == OPERATOR_PAUSE
        self._store.save_link_controls(link.resolved.link_id, LinkControls(paused, link.stopped_by_operator))

    # --- reload ----------------------------------------------------------------------------------

    def request_reload(self, trigger: str) -> None:
        """Reload in a thread of its own (from a signal handler): the outcome is logged."""
        threading.Thread(target=self._reload_logged, args=(trigger,), name="reload", daemon=True).start()

    def _reload_logged(self, trigger: str) -> None:
        self._started.wait()
        try:
            self.reload(trigger)
        except (ConfigError, ExchangeError, LinkStateError, ReloadFailedError):
            pass  # logged as operation_reload_rejected or operation_reload_failed
        except Exception:  # while checking: never silently
            log.exception("operation_reload_failed")

    def reload(self, trigger: str) -> ReloadPlan:
        """Re-read the operation file and apply it: new links start, removed ones stop, changed ones
        restart, the others are untouched. ConfigError, ExchangeError or LinkStateError: rejected
        (logged as operation_reload_rejected), nothing changed."""
        with self._one_change_at_a_time:
            log.info("operation_reload_requested", trigger=trigger, file=str(self.operation.path))
            try:
                if self.stop_event.is_set():
                    raise LinkStateError("the daemon is stopping")
                if not self._started.is_set():  # start() would start what the reload started again
                    raise LinkStateError("the operation is still starting")
                plan, needs = self._plan_reload()
                feeds = self._prepared_feeds(plan, needs)
            except (ConfigError, ExchangeError, LinkStateError) as exc:
                where = {"file": exc.file, "key": exc.key, "reason": exc.reason} if isinstance(exc, ConfigError) else {}
                log.error("operation_reload_rejected", error=str(exc), **where)
                raise
            try:
                self._apply(plan, feeds)
            except ReloadFailedError as exc:
                log.error("operation_reload_failed", error=str(exc))
                raise
            except Exception as exc:
                log.exception("operation_reload_failed", error=f"{type(exc).__name__}: {exc}")
                raise ReloadFailedError(f"{type(exc).__name__}: {exc}") from exc
        log.info("operation_reloaded", **plan.as_log_fields())
        return plan

    def _plan_reload(self) -> tuple[ReloadPlan, dict[str, int]]:
        """The file re-read and every link to build checked (plugins, params, its workers built once
        and dropped, account mode); with the candles each of those needs."""
        operation = load_operation(self.operation.path, self.operation.timerange)
        with self._running_set:
            running = {link_id: link.resolved for link_id, link in self._links.items()}
            feeds = dict(self._feed_settings)
        plan = plan_reload(running, feeds, operation)
        needs = {}
        for link in plan.links_to_build:
            needs[link.link_id] = self._factory.check_buildable(link.blueprint, link.blueprint_file, link.environment)
            self._check_account_mode(link)
        return plan, needs

    def _prepared_feeds(self, plan: ReloadPlan, needs: dict[str, int]) -> dict[str, EnvironmentFeed]:
        """A feed, with no run yet, for each environment that gets a new one, its data loaded and
        its exchange checked (prepare), before anything running is touched."""
        feeds: dict[str, EnvironmentFeed] = {}
        for environment_id in plan.new_feeds:
            links = [link for link in plan.operation.links if link.link.execution_environment_id == environment_id]
            first = links[0]
            timeframes = {link.link_id: link.blueprint.timeframe for link in links}
            with structlog.contextvars.bound_contextvars(
                environment=environment_id, strategy_links=list(timeframes)
            ), settings_of(first.environment_file, plan.operation.timerange):
                warmup = with_warmup_for(first.environment, [_PlannedNeed(link_id, needs[link_id])
                                                             for link_id in timeframes], timeframes)
                feed = EnvironmentFeed(environment_id, self._source_factory(warmup), [], self.stop_event,
                                       base_timeframe=first.environment.timeframe, run_timeframes={})
                feed.prepare()
            feeds[environment_id] = feed
        return feeds

    def _apply(self, plan: ReloadPlan, new_feeds: dict[str, EnvironmentFeed]) -> None:
        """Stop the links that leave or restart (outside the running-set lock: the status server
        reads the set meanwhile), then change the set in one step."""
        leaving = [self._links[link_id] for link_id in [*plan.removed, *plan.restarted]]
        if leaving:
            log.info("reload_stopping_links", strategy_links=[link.resolved.link_id for link in leaving])
        still_busy = self._end_runs(leaving, HANDOVER_TIMEOUT_SECONDS)
        if still_busy:  # their accounts are not theirs to hand over yet: build nothing
            raise ReloadFailedError(f"strategy link(s) {', '.join(link.resolved.link_id for link in still_busy)} "
                                 f"did not finish their tick within {HANDOVER_TIMEOUT_SECONDS:g} s of being "
                                 "stopped; they stay stopped until they do and the file is reloaded again")
        environments = {link.link.execution_environment_id: link.environment for link in plan.operation.links}
        with self._running_set:
            for link in leaving:
                self._feeds[link.environment_id].detach(link.run)
            for link_id in plan.removed:
                log.info("strategy_summary", **self._links.pop(link_id).run.summary().as_log_fields())
            for environment_id, feed in [*self._feeds.items()]:
                if environment_id in new_feeds or environment_id not in environments:
                    feed.halt_if_unneeded()  # every link it served has left: it ends
                if environment_id not in environments:
                    del self._feeds[environment_id], self._feed_settings[environment_id]
            for environment_id, feed in new_feeds.items():  # a replaced feed keeps its place
                self._feeds[environment_id] = feed
                self._feed_settings[environment_id] = environments[environment_id]
            built = {resolved.link_id: self._build_link(resolved) for resolved in plan.links_to_build}
            for link_id, link in built.items():
                before = self._links.get(link_id)
                if before is not None:  # restarted: what the operator asked of it stays
                    paused = before.run.tick_manager.account.paused == OPERATOR_PAUSE
                    self._restore_controls(link, LinkControls(paused, before.stopped_by_operator))
                else:
                    self._restore_controls(link, self._stored_controls(link))
                if not self._feeds[link.environment_id].attach(link.run, link.timeframe):
                    link.run.end_unstarted(RunStatus.COMPLETED)
                    log.warning("strategy_link_not_started", strategy_link=link_id,
                                reason=f"environment {link.environment_id}'s feed has ended")
            for feed in new_feeds.values():
                feed.resume_after_restart()
            for link in built.values():
                for listener in self._build_listeners:
                    listener(link.run, link.timeframe)
                if link.run.status is RunStatus.PENDING:
                    link.run.start()
            for feed in new_feeds.values():
                feed.start()
            self._links = {link_id: built.get(link_id) or self._links[link_id] for link_id in plan.link_ids}
            self.operation = plan.operation
            self.stall_timeout = plan.operation.config.stall_timeout_seconds
            self.shutdown_timeout = plan.operation.config.shutdown_timeout_seconds


def with_warmup_for(
    environment: EnvironmentConfig, runs: Sequence[NeedsHistory], timeframes: dict[str, str]
) -> EnvironmentConfig:
    """A live environment replays at start at least the base candles its runs' workforces need
    (`warmup_candles` can ask for more, never for less), capped by what Kraken keeps."""
    if not isinstance(environment, LiveEnvironment):
        return environment
    base = timeframe_seconds(environment.timeframe)
    needed = 0
    for run in runs:
        per_bar = timeframe_seconds(timeframes[run.link_id]) // base
        needed = max(needed, run.history_needed * per_bar + per_bar - 1)  # + a bar's alignment slack
    if needed > MAX_WARMUP_CANDLES:
        log.warning("warmup_capped", environment=environment.display_name, needed_candles=needed,
                    replayed_candles=MAX_WARMUP_CANDLES)
    warmup = max(environment.warmup_candles, min(needed, MAX_WARMUP_CANDLES))
    return environment.model_copy(update={"warmup_candles": warmup})


@contextmanager
def settings_of(environment_file: Path, timerange: Timerange | None = None) -> Iterator[None]:
    """A SettingError raised inside (a source or gateway being built or prepared) becomes the
    ConfigError naming the environment file the setting is in, with the same key and reason; a
    backtest range --timerange left without candles, the ConfigError naming that option."""
    try:
        with blamed_for_empty_range(timerange):
            yield
    except SettingError as error:
        raise ConfigError(environment_file, error.reason, error.key) from None
