"""Boots every active strategy link of an operation in isolation and runs them to the end; stops,
starts, pauses and resumes one link alone, and applies a reloaded operation file.

This is the façade the rest of the daemon uses (the command line, the status server through its
`OperationView`, reports, sweeps); the work is done by:
- services/operation_building.py: the links' runs and the environments' feeds;
- services/operation_supervision.py: the watchdog, until every run has ended;
- services/link_controls.py: what the operator does to one link, and what is kept of it;
- services/operation_reload.py: a reload of the operation file, planned then applied;
- services/running_set.py: the links and feeds running now, which all of them share.

Invariants: everything is built, and every config error raised, before the first thread starts;
one lifecycle change (stop, start, pause, resume, reload) at a time; the invariants of each of the
modules above hold for the operation as a whole.
"""

import threading
from collections.abc import Callable

import structlog

from backend.config import LiveEnvironment, LoadedOperation
from backend.dtos import FillDTO
from backend.state import StateStore
from services.environment_feed import EnvironmentFeed
from services.execution_environments import ExecutionEnvironments
from services.link_controls import OperatorControls
from services.operation_building import OperationBuilder, SourceFactory, settings_of
from services.operation_reload import Reloader, ReloadPlan
from services.operation_supervision import watch_until_ended
from services.reconciliation import reconcile
from services.running_set import RunningLink, RunningSet
from services.strategy_run import RunSnapshot, RunStatus, RunSummary, StrategyRun
from services.worker_factory import WorkerFactory

log = structlog.get_logger(__name__)


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
        self.stop_event = stop_event or threading.Event()
        environments = ExecutionEnvironments(self.stop_event)
        self._running = RunningSet(operation)
        self._builder = OperationBuilder(worker_factory or WorkerFactory(), environments,
                                         source_factory or environments.tick_source, store, self.stop_event,
                                         queue_size)
        self._controls = OperatorControls(self._running, store, self.stop_event, queue_size)
        self._started = threading.Event()
        self._reloader = Reloader(self._running, self._builder, self._controls, self.stop_event, self._started)
        links = {link.link_id: self._builder.link(link) for link in operation.links}
        self._running.links = links
        by_environment: dict[str, list[RunningLink]] = {}
        for link in links.values():
            by_environment.setdefault(link.environment_id, []).append(link)
        for environment_id, on_it in by_environment.items():
            runs = [link.run for link in on_it]
            timeframes = {link.resolved.link_id: link.timeframe for link in on_it}
            self._running.feeds[environment_id] = self._builder.feed(
                environment_id, on_it[0].resolved, runs, timeframes, runs, operation.timerange)
            self._running.feed_settings[environment_id] = on_it[0].resolved.environment
        # The feeds know no files: a prepare() error is named after the environment's file here.
        for environment_id, feed in self._running.feeds.items():
            with settings_of(by_environment[environment_id][0].resolved.environment_file, operation.timerange):
                feed.prepare()
            feed.resume_after_restart()
        live = [link for link in links.values()
                if isinstance(link.resolved.environment, LiveEnvironment) and link.resolved.environment.mode == "live"]
        reconcile({link.resolved.link_id: link.run.tick_manager.account for link in live},
                  {link.resolved.link_id: link.resolved.blueprint.assets[0].split("/")[1] for link in live})
        for link in links.values():
            self._controls.restore(link, self._controls.stored(link))

    @property
    def operation(self) -> LoadedOperation:
        """The operation file as last applied (at start, or by a reload)."""
        return self._running.operation

    @property
    def stall_timeout(self) -> float:
        """The operation's stall_timeout_seconds, as last applied (a test may shorten it)."""
        return self._running.stall_timeout

    @stall_timeout.setter
    def stall_timeout(self, seconds: float) -> None:
        self._running.stall_timeout = seconds

    @property
    def shutdown_timeout(self) -> float:
        return self._running.shutdown_timeout

    @property
    def runs(self) -> list[StrategyRun]:
        """The current run of every link in the running set, in the operation file's order."""
        return self._running.runs

    @property
    def feeds(self) -> list[EnvironmentFeed]:
        return self._running.feed_list

    def run_of(self, link_id: str) -> StrategyRun:
        return self._running.link(link_id).run

    def snapshots(self) -> list[RunSnapshot]:
        """What the status server reads: each link's current run as it last published itself."""
        return [run.snapshot() for run in self.runs]

    def snapshot_of(self, link_id: str) -> RunSnapshot:
        return self.run_of(link_id).snapshot()

    # --- the whole operation ---------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "operation_started", operation=self.operation.config.display_name,
            strategy_links=[run.link_id for run in self.runs],
            stall_timeout_seconds=self.stall_timeout, shutdown_timeout_seconds=self.shutdown_timeout,
        )
        with self._running.lock:
            for run in self.runs:
                if run.status is RunStatus.PENDING:  # not a link kept stopped from before a restart
                    run.start()
            for feed in self._running.feeds.values():
                feed.start()
        self._started.set()

    def stop(self) -> None:
        """Stop reading new ticks; every run ends after its current tick."""
        self.stop_event.set()

    def wait(self) -> list[RunSummary]:
        """Watch the runs until all have ended (or been given up on), then log their summaries.
        A link stopped through the control API keeps its feed, and so the daemon, running."""
        return watch_until_ended(self._running, self.stop_event)

    def run(self) -> list[RunSummary]:
        self.start()
        return self.wait()

    def share_context_workers(self) -> int:
        """Before the start: the context workers that several runs of an environment have in
        common (same class, params and upstream workers) computed once per block for all of them
        (services.shared_context; a sweep's combinations). Returns how many are shared."""
        from services.shared_context import share_context_workers

        return share_context_workers(self._running.links.values())

    @property
    def feed_errors(self) -> list[str]:
        return [f"{feed.environment_id}: {feed.error}" for feed in self.feeds if feed.error]

    def when_link_built(self, listener: Callable[[StrategyRun, str], None]) -> None:
        """listener(run, timeframe) for the run of every link a reload builds (added or restarted),
        before it starts (e.g. the backtest report, which records the runs built at start itself)."""
        self._reloader.build_listeners.append(listener)

    # --- one link: services/link_controls.py -----------------------------------------------------

    def pause_link(self, link_id: str) -> StrategyRun:
        return self._controls.pause_link(link_id)

    def resume_link(self, link_id: str) -> StrategyRun:
        return self._controls.resume_link(link_id)

    def stop_link(self, link_id: str) -> StrategyRun:
        return self._controls.stop_link(link_id)

    def start_link(self, link_id: str) -> StrategyRun:
        return self._controls.start_link(link_id)

    def force_exit(self, link_id: str, asset: str | None = None) -> list[FillDTO | None]:
        return self._controls.force_exit(link_id, asset)

    def force_entry(self, link_id: str, asset: str) -> None:
        self._controls.force_entry(link_id, asset)

    # --- reload: services/operation_reload.py ----------------------------------------------------

    def request_reload(self, trigger: str) -> None:
        self._reloader.request_reload(trigger)

    def reload(self, trigger: str) -> ReloadPlan:
        return self._reloader.reload(trigger)
