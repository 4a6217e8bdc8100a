"""Boots every active strategy link of an operation in isolation and runs them to the end."""

import threading
from collections.abc import Callable

import structlog

from backend.config import LoadedOperation, ResolvedLink
from backend.config.schema import EnvironmentConfig
from backend.core.trading_context_provider import TradingContextProvider
from backend.market_data import TickSource
from backend.market_data.sources import build_tick_source
from backend.portfolio import Ledger
from backend.portfolio.brokers import build_broker
from services.environment_feed import EnvironmentFeed
from services.strategy_run import RunSummary, StrategyRun
from services.tick_cache_manager import TickCacheManager
from services.worker_factory import WorkerFactory

log = structlog.get_logger(__name__)

SourceFactory = Callable[[EnvironmentConfig, str], TickSource]


class OperationService:
    """Everything is built (and every config error raised) before the first thread starts."""

    def __init__(
        self,
        operation: LoadedOperation,
        worker_factory: WorkerFactory | None = None,
        source_factory: SourceFactory = build_tick_source,
        queue_size: int = 1024,
    ) -> None:
        self.operation = operation
        self.stop_event = threading.Event()
        factory = worker_factory or WorkerFactory()
        self.runs = [self._build_run(link, factory, queue_size) for link in operation.links]
        runs_by_environment: dict[str, list[StrategyRun]] = {}
        link_of_environment: dict[str, ResolvedLink] = {}
        for link, run in zip(operation.links, self.runs, strict=True):
            runs_by_environment.setdefault(run.environment_id, []).append(run)
            link_of_environment.setdefault(run.environment_id, link)
        self.feeds = [
            EnvironmentFeed(
                environment_id,
                source_factory(link.environment, str(link.environment_file)),
                runs_by_environment[environment_id],
                self.stop_event,
            )
            for environment_id, link in link_of_environment.items()
        ]
        for feed in self.feeds:
            feed.prepare()

    @staticmethod
    def _build_run(link: ResolvedLink, factory: WorkerFactory, queue_size: int) -> StrategyRun:
        context = TradingContextProvider()
        ledger = Ledger(link.environment.starting_capital)
        broker = build_broker(link.environment, str(link.environment_file), ledger)
        workforce = factory.build(link.blueprint, link.blueprint_file, context, broker)
        manager = TickCacheManager(context, workforce, ledger, link.blueprint.assets)
        return StrategyRun(link.link, manager, ledger, queue_size)

    def start(self) -> None:
        log.info(
            "operation_started", operation=self.operation.config.display_name,
            strategy_links=[run.link_id for run in self.runs],
        )
        for run in self.runs:
            run.start()
        for feed in self.feeds:
            feed.start()

    def stop(self) -> None:
        """Stop reading new ticks; every tick already queued is still processed."""
        if not self.stop_event.is_set():
            log.info("operation_stopping")
            self.stop_event.set()

    def wait(self, poll_seconds: float = 0.2) -> list[RunSummary]:
        """Block until every run has ended (in short joins, so signal handlers get to run)."""
        threads: list[EnvironmentFeed | StrategyRun] = [*self.feeds, *self.runs]
        for thread in threads:
            while thread.is_alive():
                thread.join(poll_seconds)
        summaries = [run.summary() for run in self.runs]
        log.info("operation_finished", failed=[s.strategy_link for s in summaries if s.error])
        return summaries

    def run(self) -> list[RunSummary]:
        self.start()
        return self.wait()

    @property
    def feed_errors(self) -> list[str]:
        return [f"{feed.environment_id}: {feed.error}" for feed in self.feeds if feed.error]
