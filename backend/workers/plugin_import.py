"""Worker classes a blueprint names by import path (`package.module:ClassName`): plugins that live
outside this repository, found by the ordinary import system (an installed package, or a folder
on PYTHONPATH).

Invariant: `import_worker` returns a concrete IWorker subclass whose `category` is a
WorkerCategory, whose `Params` is a WorkerParams model and whose `requires`/`optional`/`produces`
are tuples of DTO types, or raises PluginImportError with a reason fit for a config error. What
a built-in plugin is checked for beyond that (category in the blueprint, params, DTO order) is
checked by the WorkerFactory, the same way for both.
"""

import importlib
import inspect

from backend.dtos import DTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams


class PluginImportError(Exception):
    """An import path that does not lead to a usable worker class; `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def is_import_path(plugin: str) -> bool:
    """`package.module:ClassName` rather than a built-in plugin's short name."""
    return ":" in plugin


def import_worker(import_path: str) -> type[IWorker]:
    module_name, _, class_name = import_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise PluginImportError(
                f"no module named '{exc.name}' (install its package, or put its folder on PYTHONPATH)"
            ) from None
        raise PluginImportError(f"importing module '{module_name}' failed: ModuleNotFoundError: {exc}") from None
    except Exception as exc:  # the plugin's own import-time error: a broken config, not a daemon crash
        raise PluginImportError(f"importing module '{module_name}' failed: {type(exc).__name__}: {exc}") from None
    worker = getattr(module, class_name, None)
    if worker is None:
        raise PluginImportError(f"module '{module_name}' has no class '{class_name}'")
    if not (isinstance(worker, type) and issubclass(worker, IWorker)):
        raise PluginImportError(f"'{import_path}' is not a worker class (a subclass of IWorker)")
    _check_contract(import_path, worker)
    return worker


def _check_contract(import_path: str, worker: type[IWorker]) -> None:
    """What IWorker's class attributes promise the factory and the tick pipeline."""
    if inspect.isabstract(worker):
        missing = ", ".join(sorted(worker.__abstractmethods__))
        raise PluginImportError(f"'{import_path}' does not implement {missing}")
    if not isinstance(getattr(worker, "category", None), WorkerCategory):
        categories = ", ".join(category.value for category in WorkerCategory)
        raise PluginImportError(f"'{import_path}' declares no category (a WorkerCategory: {categories})")
    if not (isinstance(worker.Params, type) and issubclass(worker.Params, WorkerParams)):
        raise PluginImportError(f"'{import_path}'.Params is not a WorkerParams model")
    for declaration in ("requires", "optional", "produces"):
        declared = getattr(worker, declaration)
        if not (isinstance(declared, tuple)
                and all(isinstance(dto, type) and issubclass(dto, DTO) for dto in declared)):
            raise PluginImportError(f"'{import_path}'.{declaration} is not a tuple of DTO types")
