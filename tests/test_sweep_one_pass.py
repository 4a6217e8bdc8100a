"""A sweep's combinations run in one pass (many runs on one feed per process) with the context
workers they have in common computed once: the results are those of each combination run alone,
to the float.

tests/sweep_results_before_one_pass/ holds what `run-operation sweep` wrote for the shipped
examples before the one pass (each combination then an operation of its own, in a process of its
own with --processes 2): every file must come out the same, byte for byte.
"""

import gc
import os
import shutil
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from backend.config import LoadedOperation
from backend.dtos import EmaDTO
from backend.interfaces.candle_columns import CandleColumns
from backend.workers.context.ema_detector import EmaColumns, EmaDetector
from services.plugin_testing import Replay, sample_candles
from services.research.runs import PASS_GC_THRESHOLDS, LocalExecutor, RunResult, _rare_collections
from services.research.sweep import Row, Sweep
from services.research.sweep_file import load_sweep
from tests.helpers import REPO, backtest_environment, write_yaml
from tests.probes import CollectorWatch, CountedEma

RECORDED = Path(__file__).parent / "sweep_results_before_one_pass"


def assert_recorded_files(name: str, *options: str, out: Path) -> None:
    """`run-operation sweep config/sweeps/<name>.yaml` with options writes the recorded files."""
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "sweep", f"config/sweeps/{name}.yaml", "--out", str(out), *options,
         "--log-level", "warning"],
        cwd=REPO, capture_output=True, text=True, timeout=50, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    recorded = sorted(path.name for path in (RECORDED / name).iterdir())
    assert sorted(path.name for path in out.iterdir()) == recorded
    for file in recorded:
        assert (out / file).read_text() == (RECORDED / name / file).read_text(), file


@pytest.mark.e2e
@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize("name", ["dca_grid", "dca_ema_periods", "dca_walk_forward"])
def test_the_shipped_sweeps_write_the_files_they_wrote_before_the_one_pass(tmp_path, name, processes):
    assert_recorded_files(name, "--processes", processes, out=tmp_path / name)


@pytest.mark.e2e
@pytest.mark.ray
def test_ray_tasks_of_several_combinations_write_the_files_recorded_before(tmp_path, ray_address):
    """The grid's 9 combinations in as many tasks as the local Ray has CPUs, each a pass."""
    assert_recorded_files("dca_grid", "--executor", "ray", "--address", ray_address, out=tmp_path / "out")


class OneByOne:
    """The executor as it was: each combination an operation of its own, alone in this process."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def run(self, parts: Sequence[LoadedOperation], done: Callable[[dict[str, RunResult]], None],
            progress: object = None) -> None:
        for part in parts:
            LocalExecutor(1, self.stop).run([part], done)

    def close(self) -> None:
        pass


def sweep_over(tmp_path: Path, extra_execution: list[dict]) -> Path:
    """Smart DCA's take profit swept (its context workers the same in every combination), its EMA
    detector counted; extra_execution: more execution workers."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config" / "environments", config / "environments")
    environment = config / "environments" / "backtest_2023_q1.yaml"
    environment.write_text(environment.read_text().replace("../../data/", str(REPO / "data") + "/"))
    blueprint = yaml.safe_load((REPO / "config" / "strategies" / "smart_dca_btc.yaml").read_text())
    blueprint["workforce"]["context"][0]["plugin"] = "tests.probes:CountedEma"
    blueprint["workforce"]["execution"] += extra_execution
    write_yaml(config / "strategies" / "counted.yaml", blueprint)
    return write_yaml(config / "sweeps" / "s.yaml", {
        "display_name": "one pass", "blueprint": "counted", "environments": ["backtest_2023_q1"],
        "metric": "sharpe", "search": {"method": "grid"},
        "parameters": {"dca_planner": {"take_profit_pct": [5, 10, 15]}},
    })


def rows(path: Path, executor_of: Callable[[threading.Event], object]) -> list[Row]:
    stop = threading.Event()
    return Sweep(load_sweep(path), executor_of(stop), stop).run()  # type: ignore[arg-type]


@pytest.mark.parametrize("extra_execution", [[], [{"plugin": "tests.columnar:NotColumnar"}]],
                         ids=["columnar", "tick_by_tick"])
def test_combinations_in_one_pass_get_what_each_gets_alone_with_the_context_computed_once(tmp_path, extra_execution):
    path = sweep_over(tmp_path, extra_execution)
    CountedEma.prepared = 0
    alone = rows(path, OneByOne)
    prepared_alone = CountedEma.prepared
    CountedEma.prepared = 0
    together = rows(path, lambda stop: LocalExecutor(1, stop))

    assert [(row.combination_id, row.status, row.metrics, row.per_environment) for row in together] == [
        (row.combination_id, row.status, row.metrics, row.per_environment) for row in alone]
    assert all(row.status == "completed" and row.metrics["trades"] for row in together)
    if not extra_execution:  # each combination prepared every block itself; in one pass, one instance did
        assert prepared_alone == 3 * CountedEma.prepared > 0
    else:  # tick by tick, alone, nothing is prepared; together, the DTOs come from the shared columns
        assert prepared_alone == 0 and CountedEma.prepared > 0


def test_a_pass_collects_garbage_cycles_rarely_and_puts_the_collector_back(tmp_path):
    """During a pass the collector runs after PASS_GC_THRESHOLDS' allocations, what was made
    before is frozen out of it, a cycle made meanwhile is still collected; after, it is as before."""
    path = sweep_over(tmp_path, [{"plugin": "tests.probes:CollectorWatch"}])
    before = gc.get_threshold()
    CollectorWatch.seen = set()
    assert all(row.status == "completed" for row in rows(path, lambda stop: LocalExecutor(1, stop)))
    assert CollectorWatch.seen == {(PASS_GC_THRESHOLDS, True)}
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

    class Node:
        pass

    with _rare_collections():
        node = Node()
        node.itself = node  # type: ignore[attr-defined]
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is None


@dataclass(frozen=True)
class KeepingColumns(EmaColumns):
    kept: object = None


class BlockKeeping(EmaDetector):
    """The EMA detector, whose columns keep a reference to their block (as a plugin's might)."""

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        super().prepare_block(asset, candles)
        own = self.context.find_columns(asset, EmaDTO)
        assert isinstance(own, EmaColumns)
        self.context.set_result_columns(asset, KeepingColumns(own.fast_period, own.slow_period, own.fast, own.slow,
                                                              kept=candles))


def test_shared_columns_go_with_their_block_even_when_they_refer_to_it():
    from backend.config.schema import BacktestEnvironment
    from services.shared_context import SharedContextWorker

    replay = Replay(worker_specs=[(BlockKeeping, {"fast_period": 12, "slow_period": 26})])
    environment = BacktestEnvironment.model_validate(backtest_environment())
    shared = SharedContextWorker(replay.workers[0], environment, ())
    block = sample_candles().rows(0, 500)
    (columns,) = shared.columns(block)
    assert shared.columns(block)[0] is columns and columns.kept is block  # computed once
    assert shared.columns(sample_candles().rows(500, 1000))[0] is not columns  # the next block's
    gone = weakref.ref(block)
    del block, columns
    gc.collect()
    assert gone() is None
