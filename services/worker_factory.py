"""Builds a strategy's workforce from its blueprint, checking it before anything runs.

Invariants: a plugin named by import path (`package.module:ClassName`) goes through exactly the
checks a built-in one does (category, params, DTO order); only finding its class differs. A
worker's constructor that raises is a ConfigError naming the blueprint file and the worker's key,
wherever the workforce is built (a start, a shard, a reload) or tried out (`check_buildable`:
validate, a reload's check).
"""

from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import ValidationError

from backend.config.loader import format_location
from backend.config.schema import EnvironmentConfig, StrategyBlueprint
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import DTO
from backend.errors import ConfigError
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.workers.plugin_import import PluginImportError, import_worker, is_import_path
from backend.workers.registry import PLUGINS

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _CheckedWorker:
    worker_class: type[IWorker]
    params: WorkerParams
    plugin: str  # as the blueprint names it
    key: str  # workforce.<category>[<index>]


class WorkerFactory:
    def __init__(self, plugins: dict[str, type[IWorker]] | None = None) -> None:
        self._plugins = PLUGINS if plugins is None else plugins
        self._warned: set[tuple[Path, str]] = set()  # (blueprint file, key) already warned about

    def build(
        self,
        blueprint: StrategyBlueprint,
        blueprint_file: Path,
        services: WorkerServices,
    ) -> list[IWorker]:
        """Workers in run order: context, opportunity, threat, planning, execution.

        Raises ConfigError (naming the blueprint file and key) for an unknown plugin, a plugin
        listed under the wrong category, bad params, a DTO required before any worker produces
        it, two workers producing the same DTO, or a worker whose constructor raises.
        """
        checked = self._checked(blueprint, blueprint_file)
        return [self._construct(worker, services, blueprint_file) for worker in checked]

    def check_buildable(self, blueprint: StrategyBlueprint, blueprint_file: Path,
                        environment: EnvironmentConfig) -> int:
        """Build the workforce once on services of its own (an empty tick cache and history, a
        simulated account with the environment's capital and fees) and drop it: every check of
        `build`, constructors included, with nothing shared with a run. Returns `history_needed`."""
        needed = self.history_needed(blueprint, blueprint_file)
        account = StrategyAccount(Ledger(environment.starting_capital),
                                  SimulatedGateway(environment.fee_rate, environment.slippage_bps))
        self.build(blueprint, blueprint_file, WorkerServices(TradingContextProvider(), account, OhlcvProvider(needed)))
        return needed

    @staticmethod
    def _construct(worker: _CheckedWorker, services: WorkerServices, blueprint_file: Path) -> IWorker:
        try:
            return worker.worker_class(worker.params, services)
        except Exception as exc:  # the plugin's own code: whatever it raises is reported, never a traceback
            raise ConfigError(blueprint_file, f"plugin '{worker.plugin}' could not be built: "
                                              f"{type(exc).__name__}: {exc}", worker.key) from None

    def _check_columnar(self, worker_class: type[IWorker], category: WorkerCategory, blueprint_file: Path,
                        key: str) -> None:
        """Warn (once) of a columnar opportunity worker that keeps the default `next_active_row`
        (never): in a columnar replay it then runs only on candles another worker names, which
        for the one that finds the opportunities is most likely a bug in the plugin."""
        names_no_row = worker_class.next_active_row is IWorker.next_active_row
        if (worker_class.columnar and category is WorkerCategory.OPPORTUNITY and names_no_row
                and (blueprint_file, key) not in self._warned):
            self._warned.add((blueprint_file, key))
            log.warning("columnar_worker_names_no_row", file=str(blueprint_file), key=key,
                        plugin=f"{worker_class.__module__}:{worker_class.__qualname__}",
                        consequence="in a backtest replayed columnar it runs only on candles another worker names")

    def history_needed(self, blueprint: StrategyBlueprint, blueprint_file: Path) -> int:
        """Candles per asset the workforce needs: the largest need any of its workers declares
        (so the run's history holds enough for each, and its warm-up follows from its workers).
        Raises the same ConfigErrors as build."""
        return max(
            (worker.params.history_needed() for worker in self._checked(blueprint, blueprint_file)),
            default=0,
        )

    def _checked(self, blueprint: StrategyBlueprint, blueprint_file: Path) -> list[_CheckedWorker]:
        """The workforce's plugin classes with their validated params, in run order."""
        checked: list[_CheckedWorker] = []
        producers: dict[type[DTO], str] = {}
        for category in WorkerCategory:
            for index, spec in enumerate(getattr(blueprint.workforce, category.value)):
                key = f"workforce.{category.value}[{index}]"
                worker_class = self._plugin(spec.plugin, category, blueprint_file, key)
                try:
                    params = worker_class.Params.model_validate(spec.params)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    raise ConfigError(
                        blueprint_file,
                        first["msg"].removeprefix("Value error, "),
                        f"{key}.params" + ("." + format_location(tuple(first["loc"])) if first["loc"] else ""),
                    ) from None
                for dto_type in worker_class.requires:
                    if dto_type not in producers:
                        raise ConfigError(
                            blueprint_file,
                            f"worker '{spec.plugin}' requires {dto_type.__name__}, "
                            "which no earlier worker produces",
                            key,
                        )
                for dto_type in worker_class.produces:
                    if dto_type in producers:
                        raise ConfigError(
                            blueprint_file,
                            f"{dto_type.__name__} is already produced by {producers[dto_type]}",
                            key,
                        )
                    producers[dto_type] = f"'{spec.plugin}' ({key})"
                self._check_columnar(worker_class, category, blueprint_file, key)
                checked.append(_CheckedWorker(worker_class, params, spec.plugin, key))
        return checked

    def _plugin(
        self, name: str, category: WorkerCategory, blueprint_file: Path, key: str
    ) -> type[IWorker]:
        worker_class = self._find(name, blueprint_file, f"{key}.plugin")
        if worker_class.category is not category:
            raise ConfigError(
                blueprint_file,
                f"plugin '{name}' is a {worker_class.category.value} worker, not {category.value}",
                f"{key}.plugin",
            )
        return worker_class

    def _find(self, name: str, blueprint_file: Path, key: str) -> type[IWorker]:
        """The class a blueprint's `plugin` names: a built-in by short name, or one by import path."""
        if is_import_path(name):
            try:
                return import_worker(name)
            except PluginImportError as exc:
                raise ConfigError(blueprint_file, exc.reason, key) from None
        worker_class = self._plugins.get(name)
        if worker_class is None:
            known = ", ".join(sorted(self._plugins))
            raise ConfigError(
                blueprint_file,
                f"unknown plugin '{name}' (known: {known}; or a class by import path, package.module:ClassName)",
                key,
            )
        return worker_class
