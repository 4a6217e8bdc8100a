"""`run-operation validate PATH`: what `run-operation PATH` checks before it starts anything, and
nothing it does after.

Invariant: every file, plugin, param, data file (a detail file too), notification URL and (for `mode: live`)
credential's presence is checked, and every worker built once (on services of its own, then
dropped) so that a constructor that raises is found, each problem raised as the ConfigError the
daemon would exit 2 with; no thread is started, no exchange is contacted, no data dir or state
store is opened.
"""

import threading
from pathlib import Path

from backend.config import LiveEnvironment, LoadedOperation, load_operation
from backend.config.timerange import Timerange
from backend.venues import VENUES
from services.execution_environments import ExecutionEnvironments
from services.notifications import resolve_targets
from services.operation_building import settings_of
from services.worker_factory import WorkerFactory


def validate_operation(path: Path | str, factory: WorkerFactory | None = None,
                       timerange: Timerange | None = None) -> LoadedOperation:
    operation = load_operation(path, timerange)
    resolve_targets(operation)
    factory = factory or WorkerFactory()
    # Only its parse cache is used (a data file read once); it is not started and has nothing to stop.
    environments = ExecutionEnvironments(threading.Event())
    checked_environments: set[Path] = set()
    for link in operation.links:
        factory.check_buildable(link.blueprint, link.blueprint_file, link.environment)  # plugins, params, DTOs
        if link.environment_file in checked_environments:
            continue
        checked_environments.add(link.environment_file)
        environment = link.environment
        with settings_of(link.environment_file, timerange):
            if not isinstance(environment, LiveEnvironment):
                environments.tick_source(environment)  # parses and checks the file and its range
                detail = environments.detail_candles(environment)
                if detail is not None:  # a run reads it when an order first needs it: check it now
                    detail.load()
            elif environment.mode == "live":
                VENUES[environment.exchange].make(threading.Event()).check_credentials(environment)
    return operation


def summary_line(operation: LoadedOperation) -> str:
    """One line for a valid operation: its links and the environments they run on."""
    links = [link.link_id for link in operation.links]
    environments = list(dict.fromkeys(link.link.execution_environment_id for link in operation.links))
    return (
        f"run-operation: OK: {operation.path}: {_count(links, 'strategy link')} ({', '.join(links)}) on "
        f"{_count(environments, 'environment')} ({', '.join(environments)}); nothing was started"
    )


def _count(items: list[str], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"
