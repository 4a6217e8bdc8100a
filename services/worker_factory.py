"""Builds a strategy's workforce from its blueprint, checking it before anything runs.

Invariants: a plugin named by import path (`package.module:ClassName`) goes through exactly the
checks a built-in one does (category, params, DTO order); only finding its class differs. A
worker's constructor that raises is a ConfigError naming the blueprint file and the worker's key,
wherever the workforce is built (a start, a shard, a reload) or tried out (`check_buildable`:
validate, a reload's check).
"""

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from backend.config.loader import format_location
from backend.config.schema import EnvironmentConfig, StrategyBlueprint
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import DTO
from backend.errors import ConfigError
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.market_data.timeframes import timeframe_length
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.workers.plugin_import import PluginImportError, import_worker, is_import_path
from backend.workers.registry import PLUGINS


@dataclass(frozen=True)
class _CheckedWorker:
    worker_class: type[IWorker]
    params: WorkerParams
    plugin: str  # as the blueprint names it
    key: str  # workforce.<category>[<index>]


class WorkerFactory:
    def __init__(self, plugins: dict[str, type[IWorker]] | None = None) -> None:
        self._plugins = PLUGINS if plugins is None else plugins

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
        account = StrategyAccount(Ledger(environment.starting_capital), SimulatedGateway(environment.fill_rules))
        services = WorkerServices(TradingContextProvider(), account, OhlcvProvider(needed),
                                  timeframe_length(blueprint.timeframe))
        self.build(blueprint, blueprint_file, services)
        return needed

    @staticmethod
    def _construct(worker: _CheckedWorker, services: WorkerServices, blueprint_file: Path) -> IWorker:
        try:
            return worker.worker_class(worker.params, services)
        except Exception as exc:  # the plugin's own code: whatever it raises is reported, never a traceback
            raise ConfigError(blueprint_file, f"plugin '{worker.plugin}' could not be built: "
                                              f"{type(exc).__name__}: {exc}", worker.key) from None

    @staticmethod
    def _check_columnar(worker: _CheckedWorker, producers: dict[type[DTO], _CheckedWorker],
                        blueprint_file: Path) -> None:
        """The columnar replay's contract (IWorker), as far as the classes tell it: a columnar
        worker's context DTOs come from columnar producers, which write columns; a worker that
        acts only on the others' signals names no rows of its own."""
        worker_class, plugin, key = worker.worker_class, worker.plugin, worker.key
        if not worker_class.columnar:
            return
        if (worker_class.category is WorkerCategory.CONTEXT and worker_class.produces
                and worker_class.prepare_block is IWorker.prepare_block):
            raise ConfigError(blueprint_file, f"plugin '{plugin}' is columnar but writes no columns "
                                              "(no prepare_block)", key)
        if worker_class.acts_only_on_signals and worker_class.next_active_row is not IWorker.next_active_row:
            raise ConfigError(blueprint_file, f"plugin '{plugin}' declares acts_only_on_signals and names rows "
                                              "of its own (next_active_row): one or the other", key)
        for dto_type in (*worker_class.requires, *worker_class.optional):
            producer = producers.get(dto_type)
            if producer is None or producer.worker_class.category is not WorkerCategory.CONTEXT:
                continue  # a signal of the tick, not a column
            if not producer.worker_class.columnar:
                raise ConfigError(blueprint_file, f"worker '{plugin}' is columnar and reads {dto_type.__name__} "
                                                  f"from the block's columns, which '{producer.plugin}' "
                                                  f"({producer.key}) does not write: it is not columnar", key)

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
        producers: dict[type[DTO], _CheckedWorker] = {}
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
                worker = _CheckedWorker(worker_class, params, spec.plugin, key)
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
                            f"{dto_type.__name__} is already produced by '{producers[dto_type].plugin}' "
                            f"({producers[dto_type].key})",
                            key,
                        )
                self._check_columnar(worker, producers, blueprint_file)
                producers.update(dict.fromkeys(worker_class.produces, worker))
                checked.append(worker)
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
