"""Loads a sweep file and everything it names; every problem is a ConfigError naming the sweep
file and its key (a value a worker refuses: `parameters.<worker>.<param>`), found before any run.

Invariant: a LoadedSweep's parameter names each denote exactly one worker slot of its blueprint,
and every candidate value, alone, passes that worker's params model.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config.loader import (
    check_compatible,
    load_environment,
    load_yaml_model,
    referenced_file,
)
from backend.config.schema import BacktestEnvironment, StrategyBlueprint
from backend.config.sweep import SweepConfig
from backend.errors import ConfigError
from backend.research.parameter_space import ParameterName, ParameterSpace, with_parameters, worker_slots
from backend.research.walk_forward import planned_windows
from services.worker_factory import WorkerFactory


@dataclass(frozen=True)
class SweepEnvironment:
    environment_id: str
    config: BacktestEnvironment
    file: Path


@dataclass(frozen=True)
class LoadedSweep:
    path: Path
    config: SweepConfig
    blueprint: StrategyBlueprint
    blueprint_file: Path
    environments: list[SweepEnvironment]
    space: ParameterSpace


def load_sweep(path: Path | str, factory: WorkerFactory | None = None) -> LoadedSweep:
    """config/sweeps/<name>.yaml; its blueprint and environments are looked up in the sibling
    folders config/strategies/ and config/environments/, as an operation's are."""
    path = Path(path)
    config = load_yaml_model(SweepConfig, path)
    root = path.resolve().parent.parent
    blueprint_file = referenced_file(path, root / "strategies", config.blueprint, "strategy blueprint", "blueprint")
    blueprint = load_yaml_model(StrategyBlueprint, blueprint_file)
    environments = []
    for index, environment_id in enumerate(config.environments):
        key = f"environments[{index}]"
        environment_file = referenced_file(path, root / "environments", environment_id, "execution environment", key)
        environment = load_environment(environment_file)
        if not isinstance(environment, BacktestEnvironment):
            raise ConfigError(path, f"environment '{environment_id}' is {environment.type}: a sweep replays "
                                    "backtest environments only", key)
        check_compatible(path, key, blueprint, environment)
        environments.append(SweepEnvironment(environment_id, environment, environment_file))
    if config.walk_forward is not None:
        (only,) = environments
        start, end = only.config.start, only.config.end
        if not planned_windows(config.walk_forward, start, end):
            raise ConfigError(path, f"environment '{only.environment_id}' runs from {start.isoformat()} to "
                                    f"{end.isoformat()}: shorter than one train window plus one test window "
                                    f"({config.walk_forward.train} + {config.walk_forward.test})", "walk_forward")
    space = _parameter_space(path, config, blueprint, blueprint_file, factory or WorkerFactory())
    return LoadedSweep(path, config, blueprint, blueprint_file, environments, space)


def _parameter_space(path: Path, config: SweepConfig, blueprint: StrategyBlueprint, blueprint_file: Path,
                     factory: WorkerFactory) -> ParameterSpace:
    factory.history_needed(blueprint, blueprint_file)  # the blueprint itself is sound
    slots = worker_slots(blueprint.workforce)
    values: dict[ParameterName, list[Any]] = {}
    for worker, params in config.parameters.items():
        found = slots.get(worker)
        if not found:
            names = sorted(name for name in slots if "[" not in name)
            raise ConfigError(path, f"the blueprint has no worker '{worker}' (it has: {', '.join(names)})",
                              f"parameters.{worker}")
        if len(found) > 1:
            raise ConfigError(path, f"worker '{worker}' appears {len(found)} times in the blueprint: name one "
                                    f"as {' or '.join(f'{c}[{i}]' for c, i in found)}", f"parameters.{worker}")
        for param, candidates in params.items():
            key = f"parameters.{worker}.{param}"
            listed = candidates if isinstance(candidates, list) else candidates.values()
            for value in listed:
                _check_value(path, key, blueprint, blueprint_file, factory, (worker, param), value)
            values[(worker, param)] = listed
    return ParameterSpace(values)


def _check_value(path: Path, key: str, blueprint: StrategyBlueprint, blueprint_file: Path, factory: WorkerFactory,
                 name: ParameterName, value: Any) -> None:
    try:
        factory.history_needed(with_parameters(blueprint, {name: value}), blueprint_file)
    except ConfigError as error:
        raise ConfigError(path, f"{value!r}: {error.reason}", key) from None
