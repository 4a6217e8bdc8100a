"""Loads a sweep file and everything it names; every problem is a ConfigError naming the sweep
file and its key (a value a worker refuses: `parameters.<worker>.<param>`; a constraint:
`constraints[<i>]`), found before any run.

Invariant: a LoadedSweep's parameter names each denote exactly one worker slot of its blueprint,
every candidate value, alone, passes that worker's params model, and at least one combination
satisfies every constraint. Values that pass alone may still be refused together (a worker
checking two params against each other): `refusal` tells, before the combination runs.
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
from backend.config.timerange import Timerange
from backend.errors import ConfigError
from backend.research.constraints import Constraint, first_violated, parse_constraint
from backend.research.parameter_space import (
    Combination,
    ParameterName,
    ParameterSpace,
    with_parameters,
    worker_slots,
)
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
    constraints: list[Constraint]
    factory: WorkerFactory

    def refusal(self, combination: Combination) -> str | None:
        """Why the blueprint's workers refuse this combination's values together; None if they take them."""
        refused = _refused(self.blueprint, self.blueprint_file, self.factory, combination)
        if refused is None:
            return None
        return f"refused: {refused.key}: {refused.reason}" if refused.key else f"refused: {refused.reason}"


def load_sweep(path: Path | str, factory: WorkerFactory | None = None,
               timerange: Timerange | None = None) -> LoadedSweep:
    """config/sweeps/<name>.yaml; its blueprint and environments are looked up in the sibling
    folders config/strategies/ and config/environments/, as an operation's are (each backtest
    range --timerange's where that gives one; a walk-forward's windows are laid over it)."""
    path = Path(path)
    config = load_yaml_model(SweepConfig, path)
    root = path.resolve().parent.parent
    blueprint_file = referenced_file(path, root / "strategies", config.blueprint, "strategy blueprint", "blueprint")
    blueprint = load_yaml_model(StrategyBlueprint, blueprint_file)
    environments = []
    for index, environment_id in enumerate(config.environments):
        key = f"environments[{index}]"
        environment_file = referenced_file(path, root / "environments", environment_id, "execution environment", key)
        environment = load_environment(environment_file, timerange)
        if not isinstance(environment, BacktestEnvironment):
            raise ConfigError(path, f"environment '{environment_id}' is {environment.type}: a sweep replays "
                                    "backtest environments only", key)
        check_compatible(path, key, blueprint, environment)
        environments.append(SweepEnvironment(environment_id, environment, environment_file))
    if config.walk_forward is not None:
        (only,) = environments
        start, end = only.config.start, only.config.end
        if not planned_windows(config.walk_forward, start, end):
            # A range from --timerange is that option's to fix; the environment's own, the sweep file's.
            file, blamed_key = (timerange.option, None) if timerange else (str(path), "walk_forward")
            raise ConfigError(file, f"environment '{only.environment_id}' runs from {start.isoformat()} to "
                                    f"{end.isoformat()}: shorter than one train window plus one test window "
                                    f"({config.walk_forward.train} + {config.walk_forward.test})", blamed_key)
    factory = factory or WorkerFactory()
    space = _parameter_space(path, config, blueprint, blueprint_file, factory)
    constraints = _constraints(path, config, space)
    return LoadedSweep(path, config, blueprint, blueprint_file, environments, space, constraints, factory)


def _constraints(path: Path, config: SweepConfig, space: ParameterSpace) -> list[Constraint]:
    constraints = []
    for index, text in enumerate(config.constraints):
        try:
            constraints.append(parse_constraint(text, space))
        except ValueError as error:
            raise ConfigError(path, str(error), f"constraints[{index}]") from None
    if constraints and all(first_violated(constraints, combination) for combination in space.grid()):
        raise ConfigError(path, "no combination satisfies every constraint", "constraints")
    return constraints


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
            values[(worker, param)] = candidates if isinstance(candidates, list) else candidates.values()
    space = ParameterSpace(values)
    for (worker, param), listed in values.items():
        for value in listed:
            _check_value(path, f"parameters.{worker}.{param}", blueprint, blueprint_file, factory, space,
                         (worker, param), value)
    return space


def _check_value(path: Path, key: str, blueprint: StrategyBlueprint, blueprint_file: Path, factory: WorkerFactory,
                 space: ParameterSpace, name: ParameterName, value: Any) -> None:
    """A value no combination can use (a typo, out of range) is the sweep file's error; one that
    only some combinations refuse (fast_period 30 beside slow_period 26, say) is theirs: a failed row."""
    refused = _refused(blueprint, blueprint_file, factory, {name: value})
    if refused is None:
        return  # with the blueprint's own values for the rest: the usual case, one check
    if all(_refused(blueprint, blueprint_file, factory, combination) is not None
           for combination in space.grid() if combination[name] == value):
        raise ConfigError(path, f"{value!r}: {refused.reason}", key)


def _refused(blueprint: StrategyBlueprint, blueprint_file: Path, factory: WorkerFactory,
             combination: Combination) -> ConfigError | None:
    """The error building the blueprint with combination's values would raise; None if it builds."""
    try:
        factory.history_needed(with_parameters(blueprint, combination), blueprint_file)
    except ConfigError as error:
        return error
    return None
