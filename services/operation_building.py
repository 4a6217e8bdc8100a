"""Builds what an operation runs: each strategy link's run (workforce, history, account) and each
environment's feed, at start and for a reload.

Invariants: a wrong setting a tick source or gateway reports (a SettingError: it knows no file)
becomes, here, the ConfigError naming the link's environment file; a live or paper link's account
is restored from the state store, and never continues in another mode than the one it was kept
in; a live environment replays at start at least the candles its links' workforces need.
"""

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import structlog

from backend.config import LiveEnvironment, ResolvedLink
from backend.config.schema import EnvironmentConfig
from backend.config.timerange import Timerange, blamed_for_empty_range
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.errors import ConfigError, SettingError
from backend.interfaces import WorkerServices
from backend.interfaces.journal import IAccountJournal, InMemoryJournal
from backend.market_data import TickSource
from backend.market_data.candle_checks import timeframe_seconds
from backend.market_data.timeframes import timeframe_length
from backend.portfolio import Ledger, StrategyAccount
from backend.portfolio.account import numbered_order_ids
from backend.state import StateStore, StoreJournal
from services.environment_feed import EnvironmentFeed
from services.execution_environments import ExecutionEnvironments
from services.link_lifecycle import LinkStop
from services.running_set import RunningLink
from services.strategy_run import StrategyRun
from services.tick_cache_manager import TickCacheManager
from services.worker_factory import WorkerFactory

log = structlog.get_logger(__name__)

SourceFactory = Callable[[EnvironmentConfig], TickSource]
MAX_WARMUP_CANDLES = 700  # Kraken's OHLC endpoint returns at most 720 candles, the last one forming


class NeedsHistory(Protocol):
    @property
    def link_id(self) -> str: ...

    @property
    def history_needed(self) -> int: ...


class OperationBuilder:
    def __init__(self, worker_factory: WorkerFactory, environments: ExecutionEnvironments,
                 source_factory: SourceFactory, store: StateStore | None, stop_event: threading.Event,
                 queue_size: int) -> None:
        self._factory = worker_factory
        self._environments = environments
        self._source_factory = source_factory
        self._store = store
        self._stop_event = stop_event
        self._queue_size = queue_size

    def link(self, link: ResolvedLink) -> RunningLink:
        context = TradingContextProvider()
        history = OhlcvProvider(self._factory.history_needed(link.blueprint, link.blueprint_file))
        account = self._account(link)
        services = WorkerServices(context, account, history, timeframe_length(link.blueprint.timeframe))
        workforce = self._factory.build(link.blueprint, link.blueprint_file, services)
        manager = TickCacheManager(context, history, workforce, account, link.blueprint.assets)
        stop = LinkStop(self._stop_event)
        return RunningLink(link, StrategyRun(link.link, manager, stop, self._queue_size), stop)

    def feed(self, environment_id: str, first: ResolvedLink, needs: Sequence[NeedsHistory],
             timeframes: dict[str, str], runs: Sequence[StrategyRun], timerange: Timerange | None,
             prepare: bool = False) -> EnvironmentFeed:
        """The environment's feed to `runs` (of the links `timeframes` names; none yet, for a
        reload's new feed), its source replaying the warm-up `needs` ask for; prepared (its data
        checked, its exchange contacted) when `prepare`. first: the first link on it (its files)."""
        # Lines logged while the data loads name the environment and its links too.
        with structlog.contextvars.bound_contextvars(
            environment=environment_id, strategy_links=list(timeframes)
        ), settings_of(first.environment_file, timerange):
            source = self._source_factory(with_warmup_for(first.environment, needs, timeframes))
            feed = EnvironmentFeed(environment_id, source, list(runs), self._stop_event,
                                   base_timeframe=first.environment.timeframe,
                                   run_timeframes={run.link_id: timeframes[run.link_id] for run in runs})
            if prepare:
                feed.prepare()
        return feed

    def check_buildable(self, link: ResolvedLink) -> int:
        """The link's plugins, params and account mode checked (its workers built once and
        dropped); the candles its workforce needs."""
        needed = self._factory.check_buildable(link.blueprint, link.blueprint_file, link.environment)
        self.check_account_mode(link)
        return needed

    def _account(self, link: ResolvedLink) -> StrategyAccount:
        """The link's account: restored from the store for live and paper links, new otherwise."""
        with settings_of(link.environment_file):
            gateway = self._environments.order_gateway(link.environment, link.link_id, link.blueprint.timeframe)
        journal: IAccountJournal = InMemoryJournal()
        ledger = Ledger(link.environment.starting_capital)
        if not isinstance(link.environment, LiveEnvironment):  # a backtest: its orders never leave the process
            return StrategyAccount(ledger, gateway, journal, numbered_order_ids("backtest-"))
        if self._store is not None:
            journal = StoreJournal(self._store, link.link_id)
            restored = self._store.load_account(link.link_id)
            mode = link.environment.mode
            self.check_account_mode(link)
            if restored is None:
                self._store.save_account(link.link_id, ledger.state)
            else:
                ledger = Ledger(restored.starting_capital, restored)
                log.info("account_restored", strategy_link=link.link_id, mode=mode, cash=round(restored.cash, 2),
                         positions={a: p.qty for a, p in restored.positions.items()}, trades=restored.trades)
            self._store.set_account_mode(link.link_id, mode)
        return StrategyAccount(ledger, gateway, journal)

    def check_account_mode(self, link: ResolvedLink) -> None:
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
