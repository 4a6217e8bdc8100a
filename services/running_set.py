"""The operation as it runs now: the operation file last applied, its links' current runs and the
feed serving each environment.

Invariant: the set is read and changed under `lock` only, and changed in one step (a reload holds
the lock from the first link it removes to the last it starts), so whoever reads it under the lock
(the watchdog, the status server) never sees it half changed.
"""

import threading
from dataclasses import dataclass

from backend.config import LiveEnvironment, LoadedOperation, ResolvedLink
from backend.config.schema import EnvironmentConfig
from services.environment_feed import EnvironmentFeed
from services.link_lifecycle import LinkStop, UnknownLinkError
from services.strategy_run import StrategyRun


@dataclass
class RunningLink:
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


class RunningSet:
    def __init__(self, operation: LoadedOperation) -> None:
        self.lock = threading.RLock()  # held while the set changes and while the watchdog reads it
        self.operation = operation  # the file as last applied (at start, or by a reload)
        self.stall_timeout = operation.config.stall_timeout_seconds  # also as last applied
        self.shutdown_timeout = operation.config.shutdown_timeout_seconds
        self.links: dict[str, RunningLink] = {}  # in the operation file's order
        self.feeds: dict[str, EnvironmentFeed] = {}  # by environment id
        self.feed_settings: dict[str, EnvironmentConfig] = {}  # what each feed was built from

    @property
    def runs(self) -> list[StrategyRun]:
        """The current run of every link, in the operation file's order."""
        with self.lock:
            return [link.run for link in self.links.values()]

    @property
    def feed_list(self) -> list[EnvironmentFeed]:
        with self.lock:
            return list(self.feeds.values())

    def apply(self, operation: LoadedOperation) -> None:
        """The operation file as a reload applied it (the links and feeds changed already)."""
        self.operation = operation
        self.stall_timeout = operation.config.stall_timeout_seconds
        self.shutdown_timeout = operation.config.shutdown_timeout_seconds

    def link(self, link_id: str) -> RunningLink:
        with self.lock:
            link = self.links.get(link_id)
        if link is None:
            raise UnknownLinkError(f"no strategy link {link_id!r}")
        return link
