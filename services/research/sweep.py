"""A parameter sweep and a walk-forward evaluation of one blueprint: every combination an ordinary
isolated strategy run of the blueprint with those values (same workers, same simulated broker),
named by a stable id, run by an executor (this process, local processes or Ray), ranked by the
sweep's metric.

Invariants: a combination that fails (a worker raised or refused its values, its process died) is
a row with its status and error, ranked last, and the others complete; a combination breaking a
constraint is a `skipped` row, never run nor ranked, after the ranked ones; the ranking is total
and deterministic (ties by id); a search's combinations never depend on the executor (Optuna asks
`batch` trials at a time, whatever the number of processes), so every executor gives the same table.
"""

import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from backend.config import LoadedOperation, OperationConfig, ResolvedLink, StrategyLink
from backend.config.schema import BacktestEnvironment
from backend.research.constraints import first_violated
from backend.research.parameter_space import (
    Combination,
    combination_id,
    describe,
    with_parameters,
)
from backend.research.walk_forward import Window, planned_windows
from services.research.runs import Executor, RunResult
from services.research.sweep_file import LoadedSweep, SweepEnvironment

log = structlog.get_logger(__name__)

METRICS = ("pnl_pct", "pnl", "max_drawdown_pct", "sharpe", "sortino", "trades", "exposure_pct", "fees_paid",
           "final_equity")


@dataclass
class Row:
    """One combination's result: metrics averaged over the sweep's environments."""

    combination_id: str
    combination: Combination
    status: str = "not run"  # completed | failed | stalled | stopped | not run | skipped
    error: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    per_environment: dict[str, dict[str, Any]] = field(default_factory=dict)
    rank: int | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        return describe(self.combination)

    def score(self, metric: str) -> float | None:
        return self.metrics.get(metric) if self.status == "completed" else None

    @property
    def finished(self) -> bool:
        """Ran to its end, or was refused before it could run (a stop cut neither short)."""
        return self.status in ("completed", "failed")


@dataclass
class Progress:
    """A stage's combinations done of its total, logged as `sweep_progress` lines."""

    label: str
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def advance(self, count: int) -> None:
        self.done += count
        self.report(self.done)

    def report(self, reached: float) -> None:
        """A line for `reached` combinations' worth of work: those done, and (while a pass runs)
        the share of the running ones' candles replayed."""
        elapsed = time.monotonic() - self.started
        log.info("sweep_progress", stage=self.label, done=self.done, total=self.total,
                 percent=round(reached * 100 / self.total) if self.total else 100,
                 eta_seconds=round(elapsed * (self.total - reached) / reached, 1) if reached else None)


class Sweep:
    def __init__(self, sweep: LoadedSweep, executor: Executor, stop: threading.Event) -> None:
        self.sweep = sweep
        self.config = sweep.config
        self.executor = executor
        self.stop = stop
        # For a progress bar over the whole command (services.progress.ProgressSource's names).
        self.environment_id = f"sweep {sweep.path.stem}"
        self.ticks_sent = 0  # combination runs done, every stage together
        self.unasked_trials = 0  # Optuna: trials of the latest search a stop left unasked

    @property
    def total_ticks(self) -> int:
        """Combination runs planned: the search over the whole range, then per walk-forward
        window its search and its test run (Optuna may need fewer when it repeats itself)."""
        return self.planned_per_search + len(self._windows()) * (self.planned_per_search + 1)

    @property
    def planned_per_search(self) -> int:
        """Combinations one search runs: those picked that break no constraint (Optuna: its budget
        of trials, a skipped one included)."""
        search = self.config.search
        if search.method == "optuna":
            return search.budget or 0
        return sum(first_violated(self.sweep.constraints, combination) is None for combination in self._picked())

    def _picked(self) -> list[Combination]:
        """Grid and random searches: the combinations chosen, constraints not yet applied."""
        search = self.config.search
        return (list(self.sweep.space.grid()) if search.method == "grid"
                else self.sweep.space.sample(search.budget or 0, search.seed))

    # --- one search ---------------------------------------------------------------------------

    def run(self, environments: Sequence[SweepEnvironment] | None = None, label: str = "sweep") -> list[Row]:
        """Search the space on environments (default: the sweep's), ranked best first."""
        environments = list(environments or self.sweep.environments)
        if self.config.search.method == "optuna":
            rows = self._optuna(environments, label)
        else:
            rows = self._evaluate(self._picked(), environments, label)
        return self.ranked(rows)

    def ranked(self, rows: Sequence[Row]) -> list[Row]:
        """Best first, failed and unfinished last; skipped rows after those, unranked."""
        metric, lower = self.config.metric, self.config.lower_is_better

        def key(row: Row) -> tuple:
            score = row.score(metric)
            return (score is None, 0.0 if score is None else (score if lower else -score), row.combination_id)

        ordered = sorted((row for row in rows if row.status != "skipped"), key=key)
        for rank, row in enumerate(ordered, start=1):
            row.rank = rank
        return ordered + sorted((row for row in rows if row.status == "skipped"), key=lambda row: row.combination_id)

    def _evaluate(self, combinations: Sequence[Combination], environments: Sequence[SweepEnvironment],
                  label: str, own_progress: bool = True) -> list[Row]:
        """Run combinations, their log lines under label (own_progress: their `sweep_progress` too);
        those breaking a constraint are skipped, those the workers refuse are failed rows, neither runs."""
        rows: dict[str, Row] = {}
        parts: list[LoadedOperation] = []
        skipped: Counter[str] = Counter()
        refused = 0
        for combination in combinations:
            identifier = combination_id(self.config.blueprint, combination)
            if identifier in rows:
                continue
            row = rows[identifier] = Row(identifier, combination)
            violated = first_violated(self.sweep.constraints, combination)
            refusal = None if violated else self.sweep.refusal(combination)
            if violated:
                row.status, row.error = "skipped", f"violates {violated}"
                skipped[violated.text] += 1
            elif refusal:
                row.status, row.error = "failed", refusal
                refused += 1
                log.warning("sweep_combination_refused", combination_id=identifier, parameters=row.parameters,
                            reason=refusal)
            else:
                parts.append(self._part(identifier, combination, environments))
        if skipped:
            log.info("sweep_combinations_skipped", stage=label, count=skipped.total(), by_constraint=dict(skipped))
        progress = Progress(label, refused + len(parts)) if own_progress else None

        def advance(finished: int) -> None:
            self.ticks_sent += finished
            if progress is not None:
                progress.advance(finished)

        if refused:
            advance(refused)
        estimated = 0  # combinations' worth of the running pass's candles counted in ticks_sent

        def partly(share: float) -> None:
            """The running pass's combinations, share of their candles replayed: in the bar and the lines."""
            nonlocal estimated
            self.ticks_sent += int(share * len(parts)) - estimated
            estimated = int(share * len(parts))
            if progress is not None:
                progress.report(progress.done + share * len(parts))

        def done(results: dict[str, RunResult]) -> None:
            nonlocal estimated
            self.ticks_sent -= estimated  # the estimate gives way to the count
            estimated = 0
            for link_id, result in results.items():
                identifier, environment_id = link_id.rsplit("@", 1)
                _record(rows[identifier], environment_id, result, len(environments))
            advance(len({link_id.rsplit("@", 1)[0] for link_id in results}))

        self.executor.run(parts, done, partly)
        return list(rows.values())

    def _part(self, identifier: str, combination: Combination,
              environments: Sequence[SweepEnvironment]) -> LoadedOperation:
        """One combination on every environment: an operation of its own, links named `<id>@<env>`."""
        blueprint = with_parameters(self.sweep.blueprint, combination)
        links = [
            ResolvedLink(StrategyLink(strategy_blueprint_id=identifier, execution_environment_id=env.environment_id),
                         blueprint, self.sweep.blueprint_file, env.config, env.file)
            for env in environments
        ]
        config = OperationConfig(display_name=self.config.display_name, strategy_links=[link.link for link in links])
        return LoadedOperation(self.sweep.path, config, links)

    def _optuna(self, environments: Sequence[SweepEnvironment], label: str) -> list[Row]:
        """TPE over the grid's values: `batch` trials asked, run together, then told, until the budget."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        search = self.config.search
        budget = search.budget or 0
        direction = optuna.study.StudyDirection.MINIMIZE if self.config.lower_is_better else \
            optuna.study.StudyDirection.MAXIMIZE
        study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=search.seed))
        labels = {name: f"{name[0]}.{name[1]}" for name in self.sweep.space.values}
        progress = Progress(label, budget)
        rows: dict[str, Row] = {}
        asked = 0
        while asked < budget and not self.stop.is_set():
            trials = [study.ask() for _ in range(min(search.batch, budget - asked))]
            asked += len(trials)
            combinations = [{name: trial.suggest_categorical(labels[name], values)
                             for name, values in self.sweep.space.values.items()} for trial in trials]
            fresh = [c for c in combinations if combination_id(self.config.blueprint, c) not in rows]
            for row in self._evaluate(fresh, environments, label, own_progress=False):
                rows[row.combination_id] = row
            for trial, combination in zip(trials, combinations, strict=True):
                score = rows[combination_id(self.config.blueprint, combination)].score(self.config.metric)
                if score is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, score)
            progress.advance(len(trials))
        self.unasked_trials = budget - asked
        return list(rows.values())

    # --- walk-forward -------------------------------------------------------------------------

    def walk_forward(self) -> "WalkForward":
        """Optimise on each train window, run the winner on the test window after it, stitch the
        test windows' equity (each continuing from the previous one's end)."""
        (environment,) = self.sweep.environments
        slices = self._windows()
        results = WalkForward(self.config.metric, environment.config.starting_capital)
        for window in slices:
            if self.stop.is_set():
                break
            train = _within(environment, window.train_start, window.train_end)
            ranked = self.run([train], label=f"window {window.index + 1}/{len(slices)} train")
            best = next((row for row in ranked if row.score(self.config.metric) is not None), None)
            test_row = None
            if best is not None:
                test = _within(environment, window.test_start, window.test_end)
                (test_row,) = self._evaluate([best.combination], [test],
                                             f"window {window.index + 1}/{len(slices)} test")
            results.add(window, ranked, best, test_row)
        return results

    def coverage(self, rows: Sequence[Row], unasked_trials: int, walk_forward: "WalkForward | None") -> "Coverage":
        """How much of the whole-range search (its rows, and its Optuna trials a stop left unasked)
        and of the walk-forward ran."""
        skipped = sum(row.status == "skipped" for row in rows)
        return Coverage(
            finished=sum(row.finished for row in rows), planned=len(rows) - skipped + unasked_trials,
            skipped=skipped, windows_planned=len(self._windows()),
            windows_finished=0 if walk_forward is None else sum(result.finished for result in walk_forward.windows),
        )

    def _windows(self) -> list[Window]:
        plan = self.config.walk_forward
        if plan is None:
            return []
        (environment,) = self.sweep.environments
        return planned_windows(plan, environment.config.start, environment.config.end)


def _within(environment: SweepEnvironment, start: Any, end: Any) -> SweepEnvironment:
    """The environment replaying only [start, end); ids stay the same (the window is in the table)."""
    config: BacktestEnvironment = environment.config.model_copy(update={"start": start, "end": end})
    return SweepEnvironment(environment.environment_id, config, environment.file)


def _record(row: Row, environment_id: str, result: RunResult, environments: int) -> None:
    summary, performance = result.summary, result.performance
    figures: dict[str, Any] = {
        "status": summary.status.value, "error": summary.error, "ticks_processed": summary.ticks_processed,
        "pnl_pct": performance.pnl_pct, "pnl": performance.pnl, "max_drawdown_pct": performance.max_drawdown_pct,
        "sharpe": performance.sharpe, "sortino": performance.sortino, "exposure_pct": performance.exposure_pct,
        "trades": summary.account.trades, "fees_paid": summary.account.fees_paid,
        "final_equity": performance.final_equity, "daily_equity": list(result.daily_equity),
    }
    row.per_environment[environment_id] = figures
    if len(row.per_environment) < environments:
        return
    statuses = [figures["status"] for figures in row.per_environment.values()]
    row.status = next((status for status in statuses if status != "completed"), "completed")
    row.error = next((f["error"] for f in row.per_environment.values() if f["error"]), None)
    for metric in METRICS:
        values = [figures[metric] for figures in row.per_environment.values()]
        if any(value is None for value in values):
            row.metrics[metric] = None
            continue
        mean = sum(values) / len(values)
        # Counts stay whole numbers when they are (`trades` on one environment: 85, not 85.0).
        row.metrics[metric] = int(mean) if all(isinstance(v, int) for v in values) and mean.is_integer() else mean


@dataclass(frozen=True)
class Coverage:
    """What ran of what was planned; partial when a stop (SIGINT/SIGTERM) cut the sweep short."""

    finished: int  # whole-range combinations that ran to their end (or were refused)
    planned: int  # whole-range combinations to run: skipped ones not counted, Optuna's unasked trials counted
    skipped: int
    windows_finished: int
    windows_planned: int

    @property
    def partial(self) -> bool:
        return self.finished < self.planned or self.windows_finished < self.windows_planned

    def describe(self) -> str:
        """`2 of 9 combinations finished, 0 of 4 walk-forward windows`."""
        text = f"{self.finished} of {self.planned} combinations finished"
        if self.windows_planned:
            text += f", {self.windows_finished} of {self.windows_planned} walk-forward windows"
        return text


@dataclass
class WindowResult:
    window: Window
    train_rows: list[Row]
    best: Row | None
    test: Row | None

    @property
    def finished(self) -> bool:
        """Its search and its test run both ran to their end (a stop cut neither short)."""
        return all(row.finished or row.status == "skipped" for row in self.train_rows) and (
            self.test is None or self.test.finished)


@dataclass
class WalkForward:
    metric: str
    starting_capital: float
    windows: list[WindowResult] = field(default_factory=list)

    def add(self, window: Window, train_rows: list[Row], best: Row | None, test: Row | None) -> None:
        self.windows.append(WindowResult(window, train_rows, best, test))

    def stitched_equity(self) -> list[tuple[str, float]]:
        """The test windows' daily equity end to end, each rescaled to start where the last ended."""
        points: list[tuple[str, float]] = []
        level = self.starting_capital
        for result in self.windows:
            if result.test is None or not result.test.per_environment:
                continue
            (figures,) = result.test.per_environment.values()
            daily = figures["daily_equity"]
            if not daily:
                continue
            scale = level / self.starting_capital
            points += [(day, equity * scale) for day, equity in daily]
            level = points[-1][1]
        return points

    def out_of_sample_pnl_pct(self) -> float:
        stitched = self.stitched_equity()
        return (stitched[-1][1] / self.starting_capital - 1) * 100 if stitched else 0.0
