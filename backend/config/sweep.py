"""The shape of a sweep file (`config/sweeps/*.yaml`): a blueprint, backtest environments, a
parameter grid per worker, constraints between the parameters, how to search it, what to rank
by, and optionally walk-forward windows.

Invariant: a SweepConfig that validated names no empty grid, a search that fits its grid's shape,
and windows with positive lengths; whether its workers, values and constraints' names exist is
checked against the blueprint by the sweep loader (services.research.sweep_file), which knows the files.
"""

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from backend.config.schema import Identifier, StrictModel, Timeframe

# Lower is better for these; higher for every other metric.
LOWER_IS_BETTER = frozenset({"max_drawdown_pct", "fees_paid", "exposure_pct"})
Metric = Literal["pnl_pct", "pnl", "max_drawdown_pct", "sharpe", "sortino", "trades", "exposure_pct", "fees_paid"]
Number = int | float


class ValueRange(StrictModel):
    """`{from: 10, to: 30, step: 5}`: 10, 15, 20, 25, 30 (`to` included when the steps reach it)."""

    start: Number = Field(alias="from")
    stop: Number = Field(alias="to")
    step: Number = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "ValueRange":
        if self.stop < self.start:
            raise ValueError("'to' must not be below 'from'")
        if (self.stop - self.start) / self.step > 100_000:
            raise ValueError("more than 100000 values: a larger step, please")
        return self

    def values(self) -> list[Number]:
        count = int((self.stop - self.start) / self.step + 1e-9) + 1
        if all(isinstance(x, int) for x in (self.start, self.stop, self.step)):
            return [int(self.start + i * self.step) for i in range(count)]
        return [round(self.start + i * self.step, 10) for i in range(count)]


# A list of values, or a range: told apart by shape, so an error speaks of the one that was meant.
# (A tag written <like this> is not a key: format_location leaves it out of the error's key.)
ParameterValues = Annotated[
    Annotated[list[Any], Field(min_length=1), Tag("<list>")] | Annotated[ValueRange, Tag("<range>")],
    Discriminator(lambda value: "<range>" if isinstance(value, dict) else "<list>"),
]


class SearchConfig(StrictModel):
    method: Literal["grid", "random", "optuna"] = "grid"
    budget: int | None = Field(default=None, gt=0)  # combinations tried: random and optuna
    seed: int = 0
    batch: int = Field(default=4, gt=0)  # optuna: trials asked (and run side by side) before their results are told

    @model_validator(mode="after")
    def _budget_where_sampled(self) -> "SearchConfig":
        if self.method == "grid" and self.budget is not None:
            raise ValueError("budget applies to method random or optuna; grid tries every combination")
        if self.method != "grid" and self.budget is None:
            raise ValueError(f"method {self.method} needs a budget: how many combinations to try")
        return self


# Durations of walk-forward windows: `30d`, `12h`, `90m`.
Duration = Timeframe


class WalkForwardConfig(StrictModel):
    train: Duration
    test: Duration
    step: Duration | None = None  # default: the test length (back-to-back test windows)
    anchored: bool = False  # True: every train window starts at the environment's start


class SweepConfig(StrictModel):
    display_name: str
    description: str = ""
    blueprint: Identifier
    environments: list[Identifier] = Field(min_length=1)
    metric: Metric = "sharpe"
    search: SearchConfig = SearchConfig()
    # worker (its plugin name, or `category[index]`) -> param -> values
    parameters: dict[str, Annotated[dict[str, ParameterValues], Field(min_length=1)]] = Field(min_length=1)
    # `fast_period < slow_period`: combinations breaking one are skipped (parsed by backend.research.constraints)
    constraints: list[str] = Field(default_factory=list)
    walk_forward: WalkForwardConfig | None = None

    @model_validator(mode="after")
    def _one_environment_to_walk(self) -> "SweepConfig":
        if self.walk_forward is not None and len(self.environments) != 1:
            raise ValueError("walk_forward slides its windows over exactly one environment")
        return self

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER
