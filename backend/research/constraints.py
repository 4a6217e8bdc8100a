"""Constraints between a sweep's parameters (`fast_period < slow_period`, `take_profit_pct >= 5`),
read by a tiny grammar: `name OP name` or `name OP number`, OP one of < <= > >= == !=. The text is
never evaluated as code.

Invariants: a parsed Constraint's names each denote exactly one parameter of the space it was
parsed against (`worker.param`, or `param` alone when one worker has it), and an ordering
comparison only ever compares numbers (every candidate value on either side was checked).
"""

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.research.parameter_space import ParameterName, ParameterSpace, parameter_label

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt,
}
ORDERING = frozenset({"<", "<=", ">", ">="})
# Two-character operators first, so `a <= b` is never read as `a <` `= b`.
SHAPE = re.compile(r"\s*(?P<left>[^\s<>=!]+)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<right>[^\s<>=!]+)\s*")
NUMBER = re.compile(r"-?\d+(\.\d*)?([eE][-+]?\d+)?")


@dataclass(frozen=True)
class Constraint:
    text: str  # as written in the sweep file
    left: ParameterName
    op: str
    right: ParameterName | float

    def holds(self, combination: Mapping[ParameterName, Any]) -> bool:
        right = combination[self.right] if isinstance(self.right, tuple) else self.right
        return COMPARISONS[self.op](combination[self.left], right)

    def __str__(self) -> str:
        return self.text


def parse_constraint(text: str, space: ParameterSpace) -> Constraint:
    """The constraint `text` over space's parameters; a ValueError saying what is wrong otherwise."""
    shape = SHAPE.fullmatch(text)
    if shape is None:
        raise ValueError(f"{text!r} is not `name OP name` or `name OP number` (OP: <, <=, >, >=, ==, !=)")
    op = shape["op"]
    left = _parameter(shape["left"], space)
    number = _finite_number(shape["right"])
    right = number if number is not None else _parameter(shape["right"], space)
    if op in ORDERING:
        for side in (left, right):
            if isinstance(side, tuple):
                _numbers_only(op, side, space.values[side])
    return Constraint(text.strip(), left, op, right)


def first_violated(constraints: Sequence[Constraint], combination: Mapping[ParameterName, Any]) -> Constraint | None:
    return next((constraint for constraint in constraints if not constraint.holds(combination)), None)


def _finite_number(token: str) -> float | None:
    """token as a number; None when it is not one (`1e400` is infinite: not a number either)."""
    if NUMBER.fullmatch(token) is None:
        return None
    value = float(token)
    return value if math.isfinite(value) else None


def _parameter(token: str, space: ParameterSpace) -> ParameterName:
    by_label = {parameter_label(name): name for name in space.values}
    if token in by_label:
        return by_label[token]
    matching = [name for name in space.values if name[1] == token]
    if len(matching) == 1:
        return matching[0]
    if matching:
        raise ValueError(f"{token!r} names {' and '.join(map(parameter_label, matching))}: write one of them")
    raise ValueError(f"{token!r} is not a swept parameter (they are: {', '.join(by_label)})")


def _numbers_only(op: str, name: ParameterName, candidates: Sequence[Any]) -> None:
    for value in candidates:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{op!r} compares numbers: {parameter_label(name)} has the value {value!r}")
