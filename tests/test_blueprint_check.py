"""`run-operation check PATH`: the columnar replay against the tick-by-tick one, look-ahead and
dependence on history, on an operation's backtest links: each planted bug found and named in one
line (exit 1), every shipped operation passing (exit 0), a config error one line (exit 2)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from backend.config import load_operation
from backend.errors import ConfigError
from tests.helpers import backtest_environment, write_config_tree

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
EMA_CROSS = REPO / "config" / "strategies" / "ema_cross.yaml"
SAMPLE_1H = REPO / "data" / "kraken_xbtusd_1h_2023q1.csv"


def check(operation: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "examples" / "plugins")])}
    return subprocess.run([sys.executable, "-m", "services.cli", "check", str(operation), *options], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False, env=env)


def ema_cross_with(root: Path, **workers: str) -> Path:
    """The shipped EMA cross on the hourly sample, with the first worker of some categories replaced."""
    spec = yaml.safe_load(EMA_CROSS.read_text())
    for category, plugin in workers.items():
        spec["workforce"][category][0]["plugin"] = plugin
    environment = backtest_environment(str(SAMPLE_1H), start="2023-01-01T00:00:00Z", end="2023-04-01T00:00:00Z")
    return write_config_tree(root, [("planted", "bt")], {"planted": spec}, {"bt": environment})


def data_not_downloaded(operation: Path) -> str | None:
    """Why a shipped operation cannot run here: a data file it names is not bundled (fetched with
    `run-operation download-data`) and was not fetched; None when it can."""
    try:
        load_operation(operation)
    except ConfigError as error:
        if "not found" in error.reason:
            return f"needs run-operation download-data first ({error.reason})"
        raise
    return None


@pytest.mark.parametrize("operation", sorted((REPO / "config" / "operations").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_operation_passes(operation):
    missing = data_not_downloaded(operation)
    if missing:
        pytest.skip(missing)
    done = check(operation)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.strip() == f"run-operation: check: OK: {operation}: every backtest link's blueprint passed"


def test_a_context_worker_whose_columns_drift_by_one_row_is_named(tmp_path):
    operation = ema_cross_with(tmp_path, context="tests.planted_workers:DriftingEma")
    done = check(operation)
    assert done.returncode == 1, done.stderr[-2000:]
    blueprint = tmp_path / "config" / "strategies" / "planted.yaml"
    # Row 11: the fast EMA(12)'s first value, a row late in the columns.
    assert done.stdout.splitlines() == [
        f"run-operation: check: {blueprint}: workforce.context[0] (tests.planted_workers:DriftingEma): columnar "
        "replay differs from tick by tick at 2023-01-01T11:00 (row 11): EmaDTO.fast: 16525.375 tick by tick, "
        "None columnar"]


def test_an_opportunity_worker_naming_its_rows_one_late_is_named(tmp_path):
    operation = ema_cross_with(tmp_path, opportunity="tests.planted_workers:LateCross")
    done = check(operation)
    assert done.returncode == 1, done.stderr[-2000:]
    (line,) = done.stdout.splitlines()
    assert "workforce.opportunity[0] (tests.planted_workers:LateCross): columnar replay differs from tick by tick " \
           "at 2023-01-" in line and "OpportunitySignalDTO written tick by tick on a row no worker named" in line


def test_a_context_worker_reading_the_next_candle_is_named(tmp_path):
    operation = ema_cross_with(tmp_path, context="tests.planted_workers:PeekingEma")
    done = check(operation)
    assert done.returncode == 1, done.stderr[-2000:]
    lookahead = [line for line in done.stdout.splitlines() if ": look-ahead: " in line]
    assert len(lookahead) == 1, done.stdout
    assert "look-ahead: workforce.context[0] (tests.planted_workers:PeekingEma): EmaDTO.fast at 2023-" in lookahead[0]
    assert "changes when later rows are removed" in lookahead[0]


def test_a_context_worker_that_never_forgets_its_start_is_named(tmp_path):
    operation = ema_cross_with(tmp_path, context="tests.planted_workers:RunningMean")
    done = check(operation)
    assert done.returncode == 1, done.stderr[-2000:]
    (line,) = done.stdout.splitlines()
    assert ": recursive: workforce.context[0] (tests.planted_workers:RunningMean): EmaDTO.fast at 2023-" in line


def test_a_config_error_is_one_line_and_exit_2(tmp_path):
    operation = ema_cross_with(tmp_path, context="tests.planted_workers:NoSuchWorker")
    done = check(operation)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1].startswith("run-operation: config error: ")
