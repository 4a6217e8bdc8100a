"""A sweep's parameter space: named parameters with their candidate values, the combinations
drawn from it, and the stable id of each.

Invariants: combinations come in a deterministic order (grid: row-major in the file's order;
random: a seeded sample without repeats); a combination's id depends only on the blueprint and the
values, never on the search method or the order, so the same run has the same id everywhere.
"""

import hashlib
import itertools
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from backend.config.schema import StrategyBlueprint, WorkerSpec, Workforce

# A parameter: (worker key as written in the sweep file, param name).
ParameterName = tuple[str, str]
Combination = dict[ParameterName, Any]


@dataclass(frozen=True)
class ParameterSpace:
    values: dict[ParameterName, list[Any]]  # in the sweep file's order

    @property
    def size(self) -> int:
        size = 1
        for candidates in self.values.values():
            size *= len(candidates)
        return size

    def grid(self) -> Iterator[Combination]:
        names = list(self.values)
        for chosen in itertools.product(*self.values.values()):
            yield dict(zip(names, chosen, strict=True))

    def sample(self, budget: int, seed: int) -> list[Combination]:
        """`budget` distinct combinations (all of them, in grid order, if the grid is not larger)."""
        if budget >= self.size:
            return list(self.grid())
        rng = random.Random(seed)
        picked = sorted(rng.sample(range(self.size), budget))
        return [self.at(index) for index in picked]

    def at(self, index: int) -> Combination:
        """The grid's index-th combination (row-major: the last parameter varies fastest)."""
        chosen: Combination = {}
        for name, candidates in reversed(list(self.values.items())):
            index, position = divmod(index, len(candidates))
            chosen[name] = candidates[position]
        return {name: chosen[name] for name in self.values}


def parameter_label(name: ParameterName) -> str:
    worker, param = name
    return f"{worker}.{param}"


def combination_id(blueprint_id: str, combination: Mapping[ParameterName, Any]) -> str:
    """`<blueprint>-<8 hex>`: a hash of the values by parameter, whatever their order."""
    canonical = json.dumps(sorted((parameter_label(name), value) for name, value in combination.items()),
                           separators=(",", ":"), default=str)
    return f"{blueprint_id}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def worker_slots(workforce: Workforce) -> dict[str, list[tuple[str, int]]]:
    """Every name a sweep may use for a worker: its plugin name and `category[index]`, each with
    the (category, index) slots it denotes (a plugin used twice denotes two)."""
    slots: dict[str, list[tuple[str, int]]] = {}
    for category, specs in workforce:
        for index, spec in enumerate(specs):
            slots.setdefault(spec.plugin, []).append((category, index))
            slots[f"{category}[{index}]"] = [(category, index)]
    return slots


def with_parameters(blueprint: StrategyBlueprint, combination: Mapping[ParameterName, Any]) -> StrategyBlueprint:
    """The blueprint with the combination's values in its workers' params (names already resolved
    to exactly one slot by the sweep loader)."""
    slots = worker_slots(blueprint.workforce)
    workforce: dict[str, list[WorkerSpec]] = {category: list(specs) for category, specs in blueprint.workforce}
    for (worker, param), value in combination.items():
        ((category, index),) = slots[worker]
        spec = workforce[category][index]
        workforce[category][index] = spec.model_copy(update={"params": {**spec.params, param: value}})
    return blueprint.model_copy(update={"workforce": Workforce(**workforce)})


def describe(combination: Mapping[ParameterName, Any]) -> dict[str, Any]:
    """The combination as `worker.param: value`, for tables and logs."""
    return {parameter_label(name): value for name, value in combination.items()}
