"""`--executor ray`: the combinations dealt over as many Ray tasks as the cluster has CPUs (a task:
a slice of the combinations over one data set), on a local Ray or an existing cluster.

Invariants: each data file (a detail file too) is read once and shipped once, through Ray's object
store; a task runs its slice exactly as the local executor runs a pass in one process (one
operation of every combination's links, the context workers they have in common computed once:
services.research.runs; its runs logging warnings and errors only, as a local shard's), so
results are identical; a task lost with its worker is retried once (`max_retries=1`), then
reported as the failure of each combination of its slice while the other slices complete.
"""

import hashlib
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from backend.config import BacktestEnvironment, EnvironmentConfig, LoadedOperation
from services.backtest_shards import failed_summary
from services.logging_setup import configure_logging
from services.research.runs import RUNS_LOG_LEVEL, LocalExecutor, PassProgress, RunResult, unmeasured

log = structlog.get_logger(__name__)

WAIT_SECONDS = 0.2  # how often the driver looks at the stop event while tasks run


class RayExecutor:
    def __init__(self, address: str | None, stop: threading.Event) -> None:
        import ray

        self._ray = ray
        self.stop = stop
        if not ray.is_initialized():
            # A local Ray when no address is given; its dashboard and driver log echo stay off.
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self._task = ray.remote(max_retries=1)(_run_slice)
        self._shipped: dict[Path, Any] = {}

    def run(self, parts: Sequence[LoadedOperation], done: Callable[[dict[str, RunResult]], None],
            progress: PassProgress | None = None) -> None:
        """progress: not told (a task tells its slice's results when it ends, nothing before)."""
        ray = self._ray
        tasks = max(1, min(int(ray.cluster_resources().get("CPU", 1)), len(parts)))
        slices = [list(parts[start::tasks]) for start in range(tasks) if parts[start::tasks]]
        pending = {self._task.remote(chunk, self._data_of(chunk)): chunk for chunk in slices}
        while pending and not self.stop.is_set():
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)
            for reference in ready:
                chunk = pending.pop(reference)
                try:
                    done(ray.get(reference))
                except ray.exceptions.RayError as error:  # lost twice, or the task itself broke
                    done(_failed(chunk, _describe(error)))
        for reference in pending:
            ray.cancel(reference)

    def close(self) -> None:
        """Leave the cluster (a local Ray started here is shut down)."""
        self._ray.shutdown()

    def _data_of(self, parts: Sequence[LoadedOperation]) -> dict[str, Any]:
        """The parts' data files as object-store references, each file put once per executor."""
        files = {path for part in parts for link in part.links for path in _data_files(link.environment).values()}
        for path in files - self._shipped.keys():
            self._shipped[path] = self._ray.put(path.read_bytes())
        return {str(path): self._shipped[path] for path in files}


def _run_slice(parts: Sequence[LoadedOperation], data: dict[str, Any]) -> dict[str, RunResult]:
    """In a Ray worker: the data written once per worker machine (by content), then the slice run
    in the worker's process exactly as LocalExecutor(1) runs a pass, logging as a local shard does
    (to the worker's stderr: Ray's worker log file). `data`: path -> object reference (references
    inside a dict are not resolved by Ray: fetched here)."""
    import ray

    configure_logging("json", RUNS_LOG_LEVEL)  # else structlog's defaults: every fill printed
    local = {original: _materialised(ray.get(reference), Path(original).suffix)
             for original, reference in data.items()}
    reading = [replace(part, links=[replace(link, environment=_reading(link.environment, local))
                                    for link in part.links]) for part in parts]
    results: dict[str, RunResult] = {}
    LocalExecutor(1, threading.Event()).run(reading, results.update)
    return results


def _describe(error: Exception) -> str:
    """A Ray error in one line: its kind and the last line of what it says (no traceback, no colour)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"


def _data_files(environment: EnvironmentConfig) -> dict[str, Path]:
    """The files a (backtest) environment reads, by symbol (and "detail_data_file"): shipped to the
    task, found there by content."""
    assert isinstance(environment, BacktestEnvironment)  # a sweep runs backtests only
    files = {symbol: environment.data_file_of(symbol) for symbol in environment.symbols}
    if environment.detail_data_file is not None:
        files["detail_data_file"] = environment.detail_data_file
    return files


def _reading(environment: EnvironmentConfig, local: dict[str, Path]) -> EnvironmentConfig:
    """The environment reading the task's copies of its files (each symbol's named in `data_files`)."""
    files = {key: local[str(path)] for key, path in _data_files(environment).items()}
    detail = files.pop("detail_data_file", None)
    return environment.model_copy(update={"data_files": files, "data_file": None,
                                          **({"detail_data_file": detail} if detail is not None else {})})


def _materialised(content: bytes, suffix: str) -> Path:
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"opdaemon-data-{digest}{suffix}"
    if not path.exists() or path.stat().st_size != len(content):
        partial = path.with_suffix(f".{threading.get_ident()}.partial")
        partial.write_bytes(content)
        partial.replace(path)  # atomic: another task on this machine never reads half a file
    return path


def _failed(parts: Sequence[LoadedOperation], reason: str) -> dict[str, RunResult]:
    links = [link for part in parts for link in part.links]
    log.error("sweep_task_failed", strategy_links=[link.link_id for link in links], error=reason)
    return {link.link_id: unmeasured(failed_summary(link, reason), link.environment.starting_capital)
            for link in links}
