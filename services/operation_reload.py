"""A reload of the operation file: what it changes (which links start, stop, restart or stay:
`plan_reload`) and how that is applied to the running operation (`Reloader`).

Invariants: a link is restarted exactly when what it runs with changed: its blueprint or its
environment resolves to other settings (formatting and comments do not count; a data file's or a
plugin module's contents are not compared), and an environment whose settings changed gets a new
feed, so every link on it restarts; a link that stays is untouched. A reload checks the whole
file, and contacts the exchanges of new environments, before it changes anything, so a rejected
one leaves the running set as it was; it changes the set in one step, under its lock; a link is
rebuilt only once its previous run's thread has ended; what the operator asked of a restarted
link (paused, stopped) stays.
"""

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from backend.config import LoadedOperation, ResolvedLink, load_operation
from backend.config.schema import EnvironmentConfig
from backend.errors import ConfigError, ExchangeError
from backend.state import LinkControls
from services.environment_feed import EnvironmentFeed
from services.link_controls import OperatorControls, asked_of, end_runs
from services.link_lifecycle import LinkStateError
from services.operation_building import OperationBuilder
from services.running_set import RunningSet
from services.strategy_run import RunStatus, StrategyRun

log = structlog.get_logger(__name__)

# How long a reload waits for the runs it replaces to finish their tick (an order in flight takes
# the exchange's timeouts: AddOrder, then looking it up) before it gives up and changes nothing more.
HANDOVER_TIMEOUT_SECONDS = 120.0


class ReloadFailedError(Exception):
    """Applying a checked reload failed part way (a bug, or the disk): the set may be partly changed."""


@dataclass(frozen=True)
class ReloadPlan:
    operation: LoadedOperation  # the file as re-read
    added: list[str]  # link ids, in file order
    removed: list[str]
    restarted: list[str]
    unchanged: list[str]
    new_feeds: list[str]  # environment ids whose feed is (re)built: new, or its settings changed

    @property
    def link_ids(self) -> list[str]:
        """Every link of the new running set, in file order."""
        return [link.link_id for link in self.operation.links]

    @property
    def links_to_build(self) -> list[ResolvedLink]:
        wanted = {*self.added, *self.restarted}
        return [link for link in self.operation.links if link.link_id in wanted]

    def as_log_fields(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "restarted": self.restarted,
                "unchanged": self.unchanged, "new_feeds": self.new_feeds}


def plan_reload(running: Mapping[str, ResolvedLink], feeds: Mapping[str, EnvironmentConfig],
                operation: LoadedOperation) -> ReloadPlan:
    """running: the links of the running set by id; feeds: each environment's feed (running or
    ended) by the settings it was built from; operation: the file as re-read."""
    wanted = {link.link_id: link for link in operation.links}
    new_feeds = list(dict.fromkeys(
        link.link.execution_environment_id for link in operation.links
        if feeds.get(link.link.execution_environment_id) != link.environment))
    added, restarted, unchanged = [], [], []
    for link_id, link in wanted.items():
        before = running.get(link_id)
        if before is None:
            added.append(link_id)
        elif before.blueprint != link.blueprint or link.link.execution_environment_id in new_feeds:
            restarted.append(link_id)
        else:
            unchanged.append(link_id)
    removed = [link_id for link_id in running if link_id not in wanted]
    return ReloadPlan(operation, added, removed, restarted, unchanged, new_feeds)


@dataclass(frozen=True)
class _PlannedNeed:
    link_id: str
    history_needed: int


class Reloader:
    def __init__(self, running: RunningSet, builder: OperationBuilder, controls: OperatorControls,
                 stop_event: threading.Event, started: threading.Event) -> None:
        self._running = running
        self._builder = builder
        self._controls = controls
        self._stop_event = stop_event
        self._started = started
        self.build_listeners: list[Callable[[StrategyRun, str], None]] = []

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
        with self._controls.one_change_at_a_time:
            log.info("operation_reload_requested", trigger=trigger, file=str(self._running.operation.path))
            try:
                if self._stop_event.is_set():
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
        operation = load_operation(self._running.operation.path, self._running.operation.timerange)
        with self._running.lock:
            running = {link_id: link.resolved for link_id, link in self._running.links.items()}
            feeds = dict(self._running.feed_settings)
        plan = plan_reload(running, feeds, operation)
        needs = {link.link_id: self._builder.check_buildable(link) for link in plan.links_to_build}
        return plan, needs

    def _prepared_feeds(self, plan: ReloadPlan, needs: dict[str, int]) -> dict[str, EnvironmentFeed]:
        """A feed, with no run yet, for each environment that gets a new one, its data loaded and
        its exchange checked (prepare), before anything running is touched."""
        feeds: dict[str, EnvironmentFeed] = {}
        for environment_id in plan.new_feeds:
            links = [link for link in plan.operation.links if link.link.execution_environment_id == environment_id]
            timeframes = {link.link_id: link.blueprint.timeframe for link in links}
            planned = [_PlannedNeed(link_id, needs[link_id]) for link_id in timeframes]
            feeds[environment_id] = self._builder.feed(environment_id, links[0], planned, timeframes, [],
                                                       plan.operation.timerange, prepare=True)
        return feeds

    def _apply(self, plan: ReloadPlan, new_feeds: dict[str, EnvironmentFeed]) -> None:
        """Stop the links that leave or restart (outside the running-set lock: the status server
        reads the set meanwhile), then change the set in one step."""
        running = self._running
        leaving = [running.links[link_id] for link_id in [*plan.removed, *plan.restarted]]
        if leaving:
            log.info("reload_stopping_links", strategy_links=[link.resolved.link_id for link in leaving])
        still_busy = end_runs(leaving, HANDOVER_TIMEOUT_SECONDS, self._stop_event)
        if still_busy:  # their accounts are not theirs to hand over yet: build nothing
            raise ReloadFailedError(f"strategy link(s) {', '.join(link.resolved.link_id for link in still_busy)} "
                                    f"did not finish their tick within {HANDOVER_TIMEOUT_SECONDS:g} s of being "
                                    "stopped; they stay stopped until they do and the file is reloaded again")
        environments = {link.link.execution_environment_id: link.environment for link in plan.operation.links}
        with running.lock:
            for link in leaving:
                running.feeds[link.environment_id].detach(link.run)
            for link_id in plan.removed:
                log.info("strategy_summary", **running.links.pop(link_id).run.summary().as_log_fields())
            for environment_id, feed in [*running.feeds.items()]:
                if environment_id in new_feeds or environment_id not in environments:
                    feed.halt_if_unneeded()  # every link it served has left: it ends
                if environment_id not in environments:
                    del running.feeds[environment_id], running.feed_settings[environment_id]
            for environment_id, feed in new_feeds.items():  # a replaced feed keeps its place
                running.feeds[environment_id] = feed
                running.feed_settings[environment_id] = environments[environment_id]
            built = {resolved.link_id: self._builder.link(resolved) for resolved in plan.links_to_build}
            for link_id, link in built.items():
                before = running.links.get(link_id)
                if before is not None:  # restarted: what the operator asked of it stays
                    self._controls.restore(link, LinkControls(*asked_of(before)))
                else:
                    self._controls.restore(link, self._controls.stored(link))
                if not running.feeds[link.environment_id].attach(link.run, link.timeframe):
                    link.run.end_unstarted(RunStatus.COMPLETED)
                    log.warning("strategy_link_not_started", strategy_link=link_id,
                                reason=f"environment {link.environment_id}'s feed has ended")
            for feed in new_feeds.values():
                feed.resume_after_restart()
            for link in built.values():
                for listener in self.build_listeners:
                    listener(link.run, link.timeframe)
                if link.run.status is RunStatus.PENDING:
                    link.run.start()
            for feed in new_feeds.values():
                feed.start()
            running.links = {link_id: built.get(link_id) or running.links[link_id] for link_id in plan.link_ids}
            running.apply(plan.operation)
