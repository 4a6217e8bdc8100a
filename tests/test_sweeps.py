"""Research at scale: grid expansion and ids, walk-forward windows on hand-checked dates, sweeps
through the real CLI (in-process, over local processes, seeded random and Optuna), a failing or
killed combination reported while the rest complete, and bad sweep files refused with the key."""

import csv
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from backend.config.sweep import ValueRange
from backend.research.constraints import parse_constraint
from backend.research.parameter_space import ParameterSpace, combination_id
from backend.research.walk_forward import windows
from tests.daemon import Daemon
from tests.helpers import REPO, write_yaml
from tests.test_progress import ANSI_CONTROL, BAR, read_until_closed

GRID = REPO / "config" / "sweeps" / "dca_grid.yaml"
WALK = REPO / "config" / "sweeps" / "dca_walk_forward.yaml"


# --- the parameter space and the windows, by hand ------------------------------------------------


def test_a_grid_is_expanded_row_major_and_sampled_reproducibly():
    space = ParameterSpace({("a", "x"): [1, 2], ("b", "y"): [10, 20, 30]})
    grid = list(space.grid())
    assert space.size == 6 and len(grid) == 6
    assert [(c[("a", "x")], c[("b", "y")]) for c in grid] == [(1, 10), (1, 20), (1, 30), (2, 10), (2, 20), (2, 30)]
    assert [space.at(i) for i in range(6)] == grid
    sample = space.sample(3, seed=7)
    assert sample == space.sample(3, seed=7) and len({combination_id("bp", c) for c in sample}) == 3
    assert sample != space.sample(3, seed=8) or sample != space.sample(3, seed=9)  # the seed matters
    assert space.sample(10, seed=1) == grid  # a budget above the grid's size: the whole grid


def test_a_combination_id_depends_on_blueprint_and_values_only():
    one = {("a", "x"): 1, ("b", "y"): 2.5}
    assert combination_id("bp", one) == combination_id("bp", dict(reversed(list(one.items()))))
    assert re.fullmatch(r"bp-[0-9a-f]{8}", combination_id("bp", one))
    assert combination_id("bp", one) != combination_id("bp", {**one, ("a", "x"): 2})
    assert combination_id("bp", one) != combination_id("other", one)


def test_constraints_compare_parameters_by_a_tiny_grammar_never_by_eval():
    space = ParameterSpace({("a", "fast"): [1, 5], ("b", "slow"): [3, 4], ("c", "mode"): ["x", "y"],
                            ("d", "fast"): [1], ("e", "period"): [2]})
    below = parse_constraint("a.fast < b.slow", space)
    assert below.holds({("a", "fast"): 1, ("b", "slow"): 3}) and not below.holds({("a", "fast"): 5, ("b", "slow"): 3})
    assert str(below) == "a.fast < b.slow"
    for text, value, expected in [("period <= 2", 2, True), ("period>=2.5", 2, False), ("period==2", 2, True),
                                  ("period != 2", 2, False), ("period > -1.5", 2, True), ("period<3", 2, True)]:
        assert parse_constraint(text, space).holds({("e", "period"): value}) is expected, text
    assert parse_constraint("mode != a.fast", space).holds({("c", "mode"): "x", ("a", "fast"): 1})
    for text, reason in [
        ("fast < slow", "'fast' names a.fast and d.fast: write one of them"),
        ("mode < 3", "'<' compares numbers: c.mode has the value 'x'"),
        ("period < 1e400", "'1e400' is not a swept parameter"),  # not a finite number, so not a number
        ("period < nan", "'nan' is not a swept parameter"),
        ("3 < period", "'3' is not a swept parameter"),  # the left side names a parameter
        ("period << 3", "'period << 3' is not `name OP name` or `name OP number`"),
        ("len(period) < 3", "'len(period)' is not a swept parameter"),
    ]:
        with pytest.raises(ValueError, match=re.escape(reason)):
            parse_constraint(text, space)


def test_value_ranges_include_their_end_when_the_steps_reach_it():
    assert ValueRange.model_validate({"from": 5, "to": 15, "step": 5}).values() == [5, 10, 15]
    assert ValueRange.model_validate({"from": 1, "to": 2, "step": 0.4}).values() == [1.0, 1.4, 1.8]
    assert ValueRange.model_validate({"from": 0.1, "to": 0.3, "step": 0.1}).values() == [0.1, 0.2, 0.3]


def day(n: int) -> datetime:
    return datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=n)


def test_rolling_and_anchored_windows_on_hand_checked_dates():
    rolling = windows(day(0), day(90), timedelta(days=30), timedelta(days=15), timedelta(days=15))
    assert [(w.train_start, w.train_end, w.test_end) for w in rolling] == [
        (day(0), day(30), day(45)), (day(15), day(45), day(60)),
        (day(30), day(60), day(75)), (day(45), day(75), day(90)),
    ]
    anchored = windows(day(0), day(90), timedelta(days=30), timedelta(days=15), timedelta(days=15), anchored=True)
    assert [(w.train_start, w.test_start, w.test_end) for w in anchored] == [
        (day(0), day(30), day(45)), (day(0), day(45), day(60)), (day(0), day(60), day(75)), (day(0), day(75), day(90)),
    ]
    assert windows(day(0), day(40), timedelta(days=30), timedelta(days=15), timedelta(days=15)) == []


# --- sweeps through the CLI -------------------------------------------------------------------------


def sweep(args: list, module: str = "services.cli", timeout: float = 50) -> tuple[int, str, Daemon]:
    daemon = Daemon(["sweep", *args], module=module)
    code, out = daemon.finish(timeout=timeout)
    return code, out, daemon


def rows_of(directory: Path) -> list[dict]:
    return json.loads((directory / "results.json").read_text())["rows"]


@pytest.mark.e2e
def test_the_example_grid_gives_the_same_ranked_table_in_process_and_over_processes(tmp_path):
    code_one, _, _ = sweep([GRID, "--processes", "1", "--out", tmp_path / "one"])
    code_two, out, daemon = sweep([GRID, "--processes", "2", "--out", tmp_path / "two"])

    assert (code_one, code_two) == (0, 0), daemon.stderr
    assert rows_of(tmp_path / "one") == rows_of(tmp_path / "two")
    rows = rows_of(tmp_path / "two")
    assert len(rows) == 9 and [row["rank"] for row in rows] == list(range(1, 10))
    sharpes = [row["sharpe"] for row in rows]
    assert sharpes == sorted(sharpes, reverse=True)  # ranked by the metric, best first
    # The shipped blueprint's own values are one of the rows, with the backtest demo's figures.
    shipped = next(r for r in rows if r["dca_schedule_opportunity.interval_bars"] == 24
                   and r["dca_planner.take_profit_pct"] == 10)
    assert shipped["trades"] == 78 and isinstance(shipped["trades"], int)
    assert shipped["pnl_pct"] == pytest.approx(20.61, abs=0.01)
    with (tmp_path / "two" / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["combination_id"] for r in table] == [r["combination_id"] for r in rows]
    page = (tmp_path / "two" / "results.html").read_text()
    assert "<svg" in page and not re.search(r"""(src|href)=["']?https?:""", page)  # a heatmap, nothing fetched
    assert f"Results: {tmp_path / 'two' / 'results.html'}" in out
    progress = daemon.events("sweep_progress")
    assert progress[-1]["done"] == progress[-1]["total"] == 9
    assert not daemon.events("order_filled")  # the runs' own chatter stays out of a sweep's log


@pytest.mark.e2e
def test_the_example_walk_forward_reports_each_window_in_and_out_of_sample(tmp_path):
    code, out, daemon = sweep([WALK, "--out", tmp_path])
    assert code == 0, daemon.stderr
    assert "window 4  train 2023-02-15..2023-03-17  test ..2023-04-01" in out
    with (tmp_path / "walk_forward.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [(r["train_start"][:10], r["test_start"][:10], r["test_end"][:10]) for r in table] == [
        ("2023-01-01", "2023-01-31", "2023-02-15"), ("2023-01-16", "2023-02-15", "2023-03-02"),
        ("2023-01-31", "2023-03-02", "2023-03-17"), ("2023-02-15", "2023-03-17", "2023-04-01"),
    ]
    report = json.loads((tmp_path / "walk_forward.json").read_text())
    for row in report["windows"]:
        assert row["out_of_sample_status"] == "completed"
        assert row["in_sample_sharpe"] is not None and row["out_of_sample_sharpe"] is not None
    stitched = report["stitched_equity"]
    assert stitched[0][0] == "2023-01-31" and stitched[-1][0] == "2023-03-31"
    # Compounded, the windows' out-of-sample returns are the stitched curve's return.
    compounded = 1.0
    for row in report["windows"]:
        compounded *= 1 + row["out_of_sample_pnl_pct"] / 100
    assert report["out_of_sample_pnl_pct"] == pytest.approx((compounded - 1) * 100, rel=1e-9)
    assert "in-sample vs out-of-sample" in (tmp_path / "results.html").read_text()
    assert f"Stitched out-of-sample PnL: {report['out_of_sample_pnl_pct']:+.2f}%" in out


def copy_config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    for folder in ("strategies", "environments"):
        shutil.copytree(REPO / "config" / folder, config / folder)
    environment = config / "environments" / "backtest_2023_q1.yaml"
    environment.write_text(environment.read_text().replace(
        "../../data/", str(REPO / "data") + "/"))
    (config / "sweeps").mkdir()
    return config


def write_sweep(config: Path, **settings: object) -> Path:
    base = yaml.safe_load(GRID.read_text())
    return write_yaml(config / "sweeps" / "s.yaml", {**base, **settings})


@pytest.mark.e2e
def test_a_seeded_random_search_and_optuna_repeat_exactly_whatever_the_executor(tmp_path):
    config = copy_config(tmp_path)
    parameters = {"dca_schedule_opportunity": {"interval_bars": [6, 12, 24, 48]},
                  "dca_planner": {"take_profit_pct": {"from": 4, "to": 16, "step": 4}}}
    random_file = write_sweep(config, search={"method": "random", "budget": 5, "seed": 3}, parameters=parameters)
    assert sweep([random_file, "--processes", "2", "--out", tmp_path / "r1"])[0] == 0
    assert sweep([random_file, "--processes", "1", "--out", tmp_path / "r2"])[0] == 0
    assert len(rows_of(tmp_path / "r1")) == 5 and rows_of(tmp_path / "r1") == rows_of(tmp_path / "r2")

    optuna_file = write_sweep(config, search={"method": "optuna", "budget": 6, "seed": 3, "batch": 2},
                              parameters=parameters)
    assert sweep([optuna_file, "--processes", "2", "--out", tmp_path / "o1"])[0] == 0
    assert sweep([optuna_file, "--processes", "1", "--out", tmp_path / "o2"])[0] == 0
    assert rows_of(tmp_path / "o1") == rows_of(tmp_path / "o2")
    assert 1 <= len(rows_of(tmp_path / "o1")) <= 6  # TPE may ask for a combination twice


def probe_sweep(tmp_path: Path, **probe: list) -> Path:
    config = copy_config(tmp_path)
    write_yaml(config / "strategies" / "probed.yaml", {
        "display_name": "probe", "assets": ["BTC/USD"], "timeframe": "1h",
        "workforce": {"opportunity": [{"plugin": "probe", "params": {"tag": "sweep"}}],
                      "execution": [{"plugin": "market_order_executor"}]},
    })
    return write_sweep(config, display_name="probe", blueprint="probed", metric="pnl_pct",
                       parameters={"probe": probe})


@pytest.mark.e2e
@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_raising_combination_is_a_failed_row_and_the_others_complete(tmp_path, processes):
    path = probe_sweep(tmp_path, crash_at_tick=[None, 100, None], sleep_seconds=[0.0])
    code, out, daemon = sweep([path, "--processes", processes, "--out", tmp_path / "out"], module="tests.probe_cli")

    assert code == 0, daemon.stderr
    rows = rows_of(tmp_path / "out")
    assert [row["status"] for row in rows] == ["completed", "failed"]  # None and 100: two combinations
    assert rows[1]["probe.crash_at_tick"] == 100 and rows[1]["rank"] == 2
    assert rows[1]["error"] == "ZeroDivisionError: probe crashed on purpose"
    assert "[failed]" in out


@pytest.mark.e2e
def test_a_killed_combination_process_is_a_failed_row_and_the_others_complete(tmp_path):
    path = probe_sweep(tmp_path, kill_process_at_tick=[None, 50])
    code, _, daemon = sweep([path, "--processes", "2", "--out", tmp_path / "out"], module="tests.probe_cli")

    assert code == 0, daemon.stderr
    rows = rows_of(tmp_path / "out")
    assert [(row["probe.kill_process_at_tick"], row["status"]) for row in rows] == [(None, "completed"), (50, "failed")]
    assert rows[1]["error"] == "shard process killed by SIGKILL"


@pytest.mark.e2e
@pytest.mark.parametrize(("settings", "key", "reason"), [
    ({"parameters": {"nope": {"x": [1]}}}, "parameters.nope", "the blueprint has no worker 'nope'"),
    ({"parameters": {"dca_planner": {"take_profit_pct": [10, -5]}}}, "parameters.dca_planner.take_profit_pct",
     "-5: Input should be greater than 0"),
    ({"search": {"method": "grid", "budget": 5}}, "search", "budget applies to method random or optuna"),
    ({"search": {"method": "random"}}, "search", "method random needs a budget"),
    ({"environments": ["nowhere"]}, "environments[0]", "unknown execution environment 'nowhere'"),
    ({"metric": "luck"}, "metric", "Input should be"),
    ({"parameters": {"dca_planner": {"take_profit_pct": {"from": 9, "to": 3, "step": 1}}}},
     "parameters.dca_planner.take_profit_pct", "'to' must not be below 'from'"),
    ({"constraints": ["interval_bars < nope"]}, "constraints[0]", "'nope' is not a swept parameter (they are: "
     "dca_schedule_opportunity.interval_bars, dca_planner.take_profit_pct)"),
    ({"constraints": ["interval_bars < 100", "__import__(os).system(true) < 1"]}, "constraints[1]",
     "'__import__(os).system(true)' is not a swept parameter"),  # a name, never code
    ({"constraints": ["interval_bars < 1 + 2"]}, "constraints[0]", "'interval_bars < 1 + 2' is not"),
    ({"constraints": ["interval_bars"]}, "constraints[0]", "'interval_bars' is not"),
    ({"constraints": ["interval_bars > 48"]}, "constraints", "no combination satisfies every constraint"),
    ({"walk_forward": {"train": "30x", "test": "15d"}}, "walk_forward.train", "String should match pattern"),
    ({"walk_forward": {"train": "300d", "test": "15d"}}, "walk_forward",
     "environment 'backtest_2023_q1' runs from 2023-01-01T00:00:00+00:00 to 2023-04-01T00:00:00+00:00: shorter than "
     "one train window plus one test window (300d + 15d)"),
])
def test_a_bad_sweep_file_exits_2_naming_the_key(tmp_path, settings, key, reason):
    path = write_sweep(copy_config(tmp_path), **settings)
    code, _, daemon = sweep([path, "--out", tmp_path / "out"])
    assert code == 2, daemon.stderr
    (line,) = [line for line in daemon.stderr.splitlines() if line.startswith("run-operation: config error:")]
    assert line.startswith(f"run-operation: config error: {path}: {key}: {reason}"), line
    assert "Traceback" not in daemon.stderr and not (tmp_path / "out").exists()


EMA_PERIODS = {"ema_detector": {"fast_period": [12, 30], "slow_period": [26, 72]}}  # (30, 26): refused


@pytest.mark.e2e
def test_a_combination_a_worker_refuses_is_a_failed_row_ranked_last_and_results_are_written(tmp_path):
    """Each value alone passes the worker's params; fast 30 with slow 26 does not (the worker checks
    the two together): that row fails with the worker's reason, the other three run, no traceback."""
    path = write_sweep(copy_config(tmp_path), parameters=EMA_PERIODS)
    code, out, daemon = sweep([path, "--processes", "1", "--out", tmp_path / "out"])

    assert code == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr
    rows = rows_of(tmp_path / "out")
    assert [row["status"] for row in rows] == ["completed", "completed", "completed", "failed"]
    refused = rows[3]
    assert (refused["ema_detector.fast_period"], refused["ema_detector.slow_period"], refused["rank"]) == (30, 26, 4)
    assert refused["error"] == "refused: workforce.context[0].params: fast_period must be smaller than slow_period"
    (logged,) = daemon.events("sweep_combination_refused")
    assert logged["combination_id"] == refused["combination_id"] and logged["level"] == "warning"
    assert daemon.events("sweep_progress")[-1]["done"] == 4
    assert "[failed]" in out


@pytest.mark.e2e
def test_constraints_skip_combinations_before_any_run_and_list_them(tmp_path):
    path = write_sweep(copy_config(tmp_path), parameters=EMA_PERIODS,
                       constraints=["fast_period < ema_detector.slow_period"])
    code, out, daemon = sweep([path, "--processes", "1", "--out", tmp_path / "out"])

    assert code == 0, daemon.stderr
    rows = rows_of(tmp_path / "out")
    assert [(row["rank"], row["status"]) for row in rows] == [(1, "completed"), (2, "completed"), (3, "completed"),
                                                              (None, "skipped")]
    skipped = rows[3]
    assert (skipped["ema_detector.fast_period"], skipped["ema_detector.slow_period"]) == (30, 26)
    assert skipped["error"] == "violates fast_period < ema_detector.slow_period"
    (logged,) = daemon.events("sweep_combinations_skipped")
    assert logged["count"] == 1 and logged["by_constraint"] == {"fast_period < ema_detector.slow_period": 1}
    assert daemon.events("sweep_progress")[-1]["total"] == 3  # only the combinations that run
    assert not daemon.events("sweep_combination_refused")
    with (tmp_path / "out" / "results.csv").open() as handle:
        assert [r["status"] for r in csv.DictReader(handle)][-1] == "skipped"
    assert '<tr class="skipped">' in (tmp_path / "out" / "results.html").read_text()
    assert "Best 3 of 3 combinations by sharpe (1 skipped by the constraints, listed in the results)" in out


@pytest.mark.e2e
def test_an_interrupted_sweep_writes_its_results_marked_partial(tmp_path):
    """The three combinations run in one pass (slowed by the probe); SIGINT during it stops all
    three, and the walk-forward never starts. Everything is written, and says it is partial."""
    path = probe_sweep(tmp_path, sleep_seconds=[0.003, 0.004, 0.005])
    write_yaml(path, {**yaml.safe_load(path.read_text()), "walk_forward": {"train": "30d", "test": "15d"}})
    daemon = Daemon(["sweep", path, "--processes", "1", "--out", tmp_path / "out"], module="tests.probe_cli")
    daemon.wait_for_line(lambda line: '"sweep_started"' in line)
    time.sleep(1.0)  # the pass takes about 10 s
    daemon.signal(signal.SIGINT)
    code, out = daemon.finish(timeout=30)

    assert code == 0, daemon.stderr
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["partial"] is True
    assert (document["combinations_finished"], document["combinations_planned"]) == (0, 3)
    # `stopped` mid-run (or `not run`, had the signal come before the pass started).
    assert {row["status"] for row in document["rows"]} <= {"stopped", "not run"}
    assert (document["windows_finished"], document["windows_planned"]) == (0, 4)
    assert "Partial results: the sweep was stopped; 0 of 3 combinations finished, 0 of 4 walk-forward windows" in out
    assert '<p class="partial">Partial results' in (tmp_path / "out" / "results.html").read_text()
    (finished,) = daemon.events("sweep_finished")
    assert finished["partial"] is True and finished["finished"] == 0 and finished["planned"] == 3


@pytest.mark.e2e
@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_pass_tells_how_far_it_is_before_any_combination_ends(tmp_path, processes):
    """The three combinations run in one pass (slowed by the probe, about 10 s): while it runs,
    `sweep_progress` lines count the share of its candles replayed (none finished yet)."""
    path = probe_sweep(tmp_path, sleep_seconds=[0.003, 0.004, 0.005])
    daemon = Daemon(["sweep", path, "--processes", processes, "--out", tmp_path / "out"], module="tests.probe_cli")
    try:
        under_way = json.loads(daemon.wait_for_line(
            lambda line: '"sweep_progress"' in line and json.loads(line)["percent"] > 0))
    finally:
        daemon.signal(signal.SIGINT)
        daemon.finish(timeout=30)
    assert under_way["done"] == 0 and 0 < under_way["percent"] < 100 and under_way["eta_seconds"] > 0


@pytest.mark.e2e
def test_a_complete_sweep_is_not_marked_partial(tmp_path):
    path = probe_sweep(tmp_path, tag=["a", "b"])
    code, out, daemon = sweep([path, "--processes", "1", "--out", tmp_path / "out"], module="tests.probe_cli")
    assert code == 0, daemon.stderr
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["partial"] is False and document["combinations_finished"] == document["combinations_planned"] == 2
    assert "Partial" not in out and "Partial" not in (tmp_path / "out" / "results.html").read_text()


# --- Ray ------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.ray
def test_ray_gives_the_local_executors_table(tmp_path, ray_address):
    assert sweep([GRID, "--processes", "1", "--out", tmp_path / "local"])[0] == 0
    code, _, daemon = sweep([GRID, "--executor", "ray", "--address", ray_address, "--out", tmp_path / "ray"])
    assert code == 0, daemon.stderr
    assert rows_of(tmp_path / "ray") == rows_of(tmp_path / "local")
    assert "Traceback" not in daemon.stderr


@pytest.mark.e2e
@pytest.mark.ray
def test_a_ray_tasks_runs_log_at_warning_as_a_local_shards_do(tmp_path, ray_address, ray_files):
    """Not a line per fill in the worker's log files, nor built for nothing (Ray's worker, left with
    structlog's defaults, printed every fill: twice the CPU of the local executor's pass)."""
    code, _, daemon = sweep([GRID, "--executor", "ray", "--address", ray_address, "--out", tmp_path])
    assert code == 0, daemon.stderr
    assert sum(row["trades"] for row in rows_of(tmp_path)) > 0  # there were fills to log
    worker_logs = list((ray_files / "session_latest" / "logs").glob("worker-*"))
    assert worker_logs
    assert not [path.name for path in worker_logs if "order_filled" in path.read_text()]


@pytest.mark.e2e
@pytest.mark.ray
def test_a_ray_task_whose_worker_dies_is_retried_once_then_a_failed_row(tmp_path, ray_address):
    """The probe kills its Ray worker on tick 50: always, or only the first time (the marker file
    tells a retry). Killed once: the retry completes; killed every time: a failed row."""
    config = copy_config(tmp_path)
    write_yaml(config / "strategies" / "probed.yaml", {
        "display_name": "probe", "assets": ["BTC/USD"], "timeframe": "1h",
        "workforce": {"opportunity": [{"plugin": "tests.probes:Probe", "params": {"tag": "ray"}}],
                      "execution": [{"plugin": "market_order_executor"}]},
    })
    marker = str(tmp_path / "killed-once")
    path = write_sweep(config, display_name="probe", blueprint="probed", metric="pnl_pct",
                       parameters={"opportunity[0]": {"kill_process_at_tick": [50], "kill_once_file": [None, marker]}})
    code, _, daemon = sweep([path, "--executor", "ray", "--address", ray_address, "--out", tmp_path / "out"])

    assert code == 0, daemon.stderr
    rows = {row["opportunity[0].kill_once_file"]: row for row in rows_of(tmp_path / "out")}
    assert rows[marker]["status"] == "completed" and Path(marker).exists()  # killed, retried, completed
    assert rows[None]["status"] == "failed" and rows[None]["error"].startswith("WorkerCrashedError")
    (failed,) = daemon.events("sweep_task_failed")
    assert failed["strategy_links"] == [f"{rows[None]['combination_id']}@backtest_2023_q1"]


@pytest.mark.e2e
@pytest.mark.slow
def test_on_a_terminal_a_sweep_shows_one_bar_and_no_progress_lines(tmp_path):
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "sweep", str(WALK), "--out", str(tmp_path)], cwd=REPO,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal,
        env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm"},
    )
    os.close(terminal)
    screen = ANSI_CONTROL.sub("", read_until_closed(master))
    os.close(master)
    process.communicate(timeout=50)
    assert process.returncode == 0
    assert BAR * 10 in screen and "sweep dca_walk_forward" in screen
    assert "49/49" in screen  # 9 over the whole range, then 4 windows x (9 + 1 test run)
    assert "sweep_progress" not in screen and '"event": "sweep_finished"' in screen


def test_every_sweep_file_the_docs_name_is_shipped_and_loads():
    """A file the docs show must be in a fresh clone (an ignore rule once kept one out of git)."""
    from services.research.command import load_checked_sweep

    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    named = sorted({name for doc in docs for name in re.findall(r"config/sweeps/[\w.-]+\.yaml", doc.read_text())})
    tracked = subprocess.run(["git", "ls-files", "config/sweeps"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    assert named and set(named) <= set(tracked), set(named) - set(tracked)
    for path in named:
        assert load_checked_sweep(REPO / path, "local").config is not None


def test_a_value_only_some_combinations_refuse_loads_and_one_none_can_use_is_the_files_error(tmp_path):
    """fast_period 80 is refused beside the blueprint's own slow_period (72) but runs beside a swept
    96: the sweep loads (its (80, 26) row will fail); 200 fits no swept slow_period: exit 2 at load."""
    from backend.errors import ConfigError
    from services.research.sweep_file import load_sweep

    config = copy_config(tmp_path)
    usable = write_sweep(config, parameters={"ema_detector": {"fast_period": [12, 80], "slow_period": [26, 96]}})
    loaded = load_sweep(usable)
    assert [c for c in loaded.space.grid() if loaded.refusal(c)] == [
        {("ema_detector", "fast_period"): 80, ("ema_detector", "slow_period"): 26}]

    hopeless = write_sweep(config, parameters={"ema_detector": {"fast_period": [12, 200], "slow_period": [26, 96]}})
    with pytest.raises(ConfigError) as refused:
        load_sweep(hopeless)
    assert refused.value.key == "parameters.ema_detector.fast_period"
    assert refused.value.reason.startswith("200: ") and "smaller than slow_period" in refused.value.reason
