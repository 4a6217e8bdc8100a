"""The pieces of `run-operation sweep FILE` that are not argument parsing: load and check the sweep
(its data files too, before any run), choose the executor, keep the runs' own log lines out of the
way, run, write the results.

Invariant: every config or data error, a missing optional package included, is a ConfigError
raised before the first combination runs.
"""

import argparse
import importlib.util
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from backend.config.timerange import Timerange
from backend.errors import ConfigError
from services.execution_environments import ExecutionEnvironments
from services.logging_setup import stderr_lines_to
from services.operation_building import settings_of
from services.progress import ProgressBars
from services.research.results import write_results
from services.research.runs import Executor, LocalExecutor
from services.research.sweep import Coverage, Row, Sweep, WalkForward
from services.research.sweep_file import LoadedSweep, load_sweep

log = structlog.get_logger(__name__)


def load_checked_sweep(path: Path, executor: str, timerange: Timerange | None = None) -> LoadedSweep:
    sweep = load_sweep(path, timerange=timerange)
    if sweep.config.search.method == "optuna" and importlib.util.find_spec("optuna") is None:
        raise ConfigError(path, "method optuna needs Optuna: pip install 'opdaemon[research]'", "search.method")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("--executor ray", "Ray is not installed: pip install 'opdaemon[ray]'")
    environments = ExecutionEnvironments(threading.Event())
    for environment in sweep.environments:  # every row of every data file checked once, now
        with settings_of(environment.file, timerange):
            environments.tick_source(environment.config)
    return sweep


def make_executor(args: argparse.Namespace, stop: threading.Event) -> Executor:
    if args.executor == "ray":
        from services.research.ray_executor import RayExecutor

        return RayExecutor(args.address, stop)
    if args.address is not None:
        log.warning("option_ignored", option="--address", reason="it names a Ray cluster: use it with --executor ray")
    return LocalExecutor(args.processes, stop)


def quiet_runs() -> None:
    """Drop the strategy runs' and feeds' lines below warning (a sweep's runs would flood the log
    with fills); the sweep's own lines and every warning or error stay."""
    config = structlog.get_config()
    processors = config["processors"]

    def drop_run_chatter(_logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        run_line = "strategy_link" in event or "strategy_links" in event
        if run_line and method in ("debug", "info"):
            raise structlog.DropEvent
        return event

    structlog.configure(processors=[drop_run_chatter, *processors])


@contextmanager
def _progress_bar(search: Sweep) -> Iterator[None]:
    """On a terminal, one bar over every combination run (with the time left) in place of the
    `sweep_progress` lines; elsewhere, the lines."""
    if not ProgressBars.wanted(sys.stderr):
        yield
        return
    bars = ProgressBars([search], sys.stderr)
    with stderr_lines_to(bars, hidden_events={"sweep_progress", "backtest_shards_started"}), bars:
        yield


def run_and_write(sweep: LoadedSweep, executor: Executor, stop: threading.Event,
                  out: Path) -> tuple[list[Row], WalkForward | None, Coverage, Path]:
    """The sweep over the whole range (and the walk-forward, if the file has one); the results page,
    written whatever ran (after a stop: what ran, marked partial)."""
    search = Sweep(sweep, executor, stop)
    log.info("sweep_started", sweep=sweep.config.display_name, combinations=sweep.space.size,
             method=sweep.config.search.method, metric=sweep.config.metric,
             constraints=len(sweep.constraints), walk_forward=sweep.config.walk_forward is not None)
    try:
        with _progress_bar(search):
            rows = search.run()
            unasked_trials = search.unasked_trials  # the whole range's: a walk-forward's searches set their own
            walking = sweep.config.walk_forward is not None and not stop.is_set()
            walk_forward = search.walk_forward() if walking else None
    finally:
        executor.close()
    coverage = search.coverage(rows, unasked_trials, walk_forward)
    page = write_results(out, sweep, rows, coverage, walk_forward)
    log.info("sweep_finished", results=str(page), stopped=stop.is_set(), partial=coverage.partial,
             finished=coverage.finished, planned=coverage.planned, skipped=coverage.skipped,
             failed=[row.combination_id for row in rows if row.status not in ("completed", "skipped")])
    return rows, walk_forward, coverage, page
