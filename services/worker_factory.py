"""Builds a strategy's workforce from its blueprint, checking it before anything runs.

Invariant: a plugin named by import path (`package.module:ClassName`) goes through exactly the
checks a built-in one does (category, params, DTO order); only finding its class differs.
"""

from pathlib import Path

import structlog
from pydantic import ValidationError

from backend.config.loader import format_location
from backend.config.schema import StrategyBlueprint
from backend.dtos import DTO
from backend.errors import ConfigError
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.workers.plugin_import import PluginImportError, import_worker, is_import_path
from backend.workers.registry import PLUGINS

log = structlog.get_logger(__name__)


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
        it, or two workers producing the same DTO.
        """
        return [worker_class(params, services) for worker_class, params in self._checked(blueprint, blueprint_file)]

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
            (params.history_needed() for _, params in self._checked(blueprint, blueprint_file)),
            default=0,
        )

    def _checked(self, blueprint: StrategyBlueprint, blueprint_file: Path) -> list[tuple[type[IWorker], WorkerParams]]:
        """The workforce's plugin classes with their validated params, in run order."""
        checked: list[tuple[type[IWorker], WorkerParams]] = []
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
                checked.append((worker_class, params))
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
