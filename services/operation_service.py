"""Boots every active strategy link of an operation in isolation and runs them to the end.

Invariants: everything is built, and every config error raised, before the first thread starts;
a wrong setting a tick source or gateway reports (a SettingError: it knows no file) becomes the
ConfigError naming the link's environment file, here, where that file is known;
`wait()` returns within `shutdown_timeout_seconds` of a stop request and never waits on a run that
is stalled, whatever its workers do; the watchdog marks a run stalled once one tick has taken
longer than `stall_timeout_seconds`.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from backend.config import LoadedOperation, ResolvedLink
from backend.config.schema import EnvironmentConfig, LiveEnvironment
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.errors import ConfigError, SettingError
from backend.interfaces import WorkerServices
from backend.interfaces.journal import IAccountJournal, InMemoryJournal
from backend.market_data import TickSource
from backend.market_data.candle_checks import timeframe_seconds
from backend.portfolio import Ledger, StrategyAccount
from backend.state import StateStore, StoreJournal
from services.environment_feed import EnvironmentFeed
from services.execution_environments import ExecutionEnvironments
from services.reconciliation import reconcile
from services.strategy_run import RunSummary, StrategyRun
from services.tick_cache_manager import TickCacheManager
from services.worker_factory import WorkerFactory

log = structlog.get_logger(__name__)

SourceFactory = Callable[[EnvironmentConfig], TickSource]
WATCHDOG_SECONDS = 0.1  # how often wait() checks the runs
MAX_WARMUP_CANDLES = 700  # Kraken's OHLC endpoint returns at most 720 candles, the last one forming


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
        factory = worker_factory or WorkerFactory()
        source_factory = source_factory or self._environments.tick_source
        self.runs = [self._build_run(link, factory, queue_size) for link in operation.links]
        runs_by_environment: dict[str, list[StrategyRun]] = {}
        link_of_environment: dict[str, ResolvedLink] = {}
        # Each run's bars: the environment streams its own timeframe, its feed resamples the rest.
        timeframes = {link.link_id: link.blueprint.timeframe for link in operation.links}
        for link, run in zip(operation.links, self.runs, strict=True):
            runs_by_environment.setdefault(run.environment_id, []).append(run)
            link_of_environment.setdefault(run.environment_id, link)
        self.feeds: list[EnvironmentFeed] = []
        for environment_id, link in link_of_environment.items():
            runs = runs_by_environment[environment_id]
            # Lines logged while the data loads name the environment and its links too.
            with structlog.contextvars.bound_contextvars(
                environment=environment_id, strategy_links=[run.link_id for run in runs]
            ), settings_of(link.environment_file):
                source = source_factory(with_warmup_for(link.environment, runs, timeframes))
            self.feeds.append(EnvironmentFeed(
                environment_id, source, runs, self.stop_event,
                base_timeframe=link.environment.timeframe, run_timeframes=timeframes,
            ))
        # The feeds know no files: a prepare() error is named after the environment's file here.
        for feed, link in zip(self.feeds, link_of_environment.values(), strict=True):
            with settings_of(link.environment_file):
                feed.prepare()
            feed.resume_after_restart()
        live = [(link, run) for link, run in zip(operation.links, self.runs, strict=True)
                if isinstance(link.environment, LiveEnvironment) and link.environment.mode == "live"]
        reconcile({link.link_id: run.tick_manager.account for link, run in live},
                  {link.link_id: link.blueprint.assets[0].split("/")[1] for link, _ in live})

    def _build_run(self, link: ResolvedLink, factory: WorkerFactory, queue_size: int) -> StrategyRun:
        context = TradingContextProvider()
        history = OhlcvProvider(factory.history_needed(link.blueprint, link.blueprint_file))
        account = self._account(link)
        workforce = factory.build(link.blueprint, link.blueprint_file, WorkerServices(context, account, history))
        manager = TickCacheManager(context, history, workforce, account, link.blueprint.assets)
        return StrategyRun(link.link, manager, self.stop_event, queue_size)

    def _account(self, link: ResolvedLink) -> StrategyAccount:
        """The link's account: restored from the store for live and paper links, new otherwise."""
        with settings_of(link.environment_file):
            gateway = self._environments.order_gateway(link.environment, link.link_id)
        journal: IAccountJournal = InMemoryJournal()
        ledger = Ledger(link.environment.starting_capital)
        if self._store is not None and isinstance(link.environment, LiveEnvironment):
            journal = StoreJournal(self._store, link.link_id)
            restored = self._store.load_account(link.link_id)
            mode = link.environment.mode
            kept_mode = self._store.account_mode(link.link_id)
            if restored is not None and kept_mode not in (None, mode):
                # A paper account's coins were never bought: trading them live would sell real ones.
                raise ConfigError(
                    link.environment_file,
                    f"strategy link {link.link_id} has a {kept_mode} account in {self._store.path}; it cannot "
                    f"continue as mode: {mode}: use another --data-dir for it",
                    "mode",
                )
            if restored is None:
                self._store.save_account(link.link_id, ledger.state)
            else:
                ledger = Ledger(restored.starting_capital, restored)
                log.info("account_restored", strategy_link=link.link_id, mode=mode, cash=round(restored.cash, 2),
                         positions={a: p.qty for a, p in restored.positions.items()}, trades=restored.trades)
            self._store.set_account_mode(link.link_id, mode)
        return StrategyAccount(ledger, gateway, journal)

    def start(self) -> None:
        log.info(
            "operation_started", operation=self.operation.config.display_name,
            strategy_links=[run.link_id for run in self.runs],
            stall_timeout_seconds=self.stall_timeout, shutdown_timeout_seconds=self.shutdown_timeout,
        )
        for run in self.runs:
            run.start()
        for feed in self.feeds:
            feed.start()

    def stop(self) -> None:
        """Stop reading new ticks; every run ends after its current tick."""
        self.stop_event.set()

    def wait(self) -> list[RunSummary]:
        """Watch the runs until all have ended (or been given up on), then log their summaries."""
        stop_deadline: float | None = None
        while True:
            now = time.monotonic()
            for run in self.runs:
                run.check_stall(now, self.stall_timeout)
            for feed in self.feeds:
                feed.halt_if_unneeded()
            threads: list[EnvironmentFeed | StrategyRun] = [*self.feeds, *self.runs]
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


def with_warmup_for(
    environment: EnvironmentConfig, runs: list[StrategyRun], timeframes: dict[str, str]
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
def settings_of(environment_file: Path) -> Iterator[None]:
    """A SettingError raised inside (a source or gateway being built or prepared) becomes the
    ConfigError naming the environment file the setting is in, with the same key and reason."""
    try:
        yield
    except SettingError as error:
        raise ConfigError(environment_file, error.reason, error.key) from None
