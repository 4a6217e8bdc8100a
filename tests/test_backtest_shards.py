"""Backtest links spread over processes (`--processes N`): the same results as one process, log
lines and files as in one process, a killed shard reported as its links' failure while the other
shards complete, config errors before any start, and a stop that reaches every shard."""

import signal
import time
from pathlib import Path

import pytest

from tests.daemon import Daemon, write_hourly_csv
from tests.helpers import REPO, backtest_environment, blueprint, write_config_tree
from tests.probes import probe_blueprint

pytestmark = pytest.mark.e2e

DEMO = REPO / "config" / "operations" / "backtest_demo.yaml"
END_2050 = "2050-01-01T00:00:00Z"


def run(args: list, module: str = "services.cli", timeout: float = 40) -> tuple[int, str, Daemon]:
    daemon = Daemon(args, module=module)
    code, out = daemon.finish(timeout=timeout)
    return code, out, daemon


def dca(interval_bars: int) -> dict:
    opportunity = {"plugin": "dca_schedule_opportunity", "params": {"interval_bars": interval_bars}}
    return blueprint({"opportunity": [opportunity], "planning": [{"plugin": "position_sizer"}]})


def three_links(tmp_path: Path, candles: int = 3000, **blueprints: dict) -> Path:
    write_hourly_csv(tmp_path / "data" / "ticks.csv", candles)
    blueprints = blueprints or {"a": dca(6), "b": dca(12), "c": dca(24)}
    return write_config_tree(tmp_path, [(name, "bt") for name in blueprints], blueprints,
                             {"bt": backtest_environment(end=END_2050)})


def test_the_demo_over_two_processes_gives_the_summaries_of_one_process(tmp_path):
    one_code, one_out, _ = run([DEMO])
    code, out, daemon = run([DEMO, "--processes", "2", "--log-dir", tmp_path / "logs"])

    assert (one_code, code) == (0, 0)
    assert out == one_out  # every figure of every run, in the file's link order
    (started,) = daemon.events("backtest_shards_started")
    assert started["shards"] == [["ict_smc_strategy@backtest_2023_q1"], ["smart_dca_btc@backtest_2023_q1"]]
    for link in ("ict_smc_strategy@backtest_2023_q1", "smart_dca_btc@backtest_2023_q1"):
        lines = (tmp_path / "logs" / f"{link}.jsonl").read_text().splitlines()
        assert any('"event": "order_filled"' in line for line in lines)
        assert all(link in line for line in lines)  # the shard's lines reached the parent's log files
    summaries = daemon.events("strategy_summary")
    assert sorted(s["strategy_link"] for s in summaries) == sorted(
        ["ict_smc_strategy@backtest_2023_q1", "smart_dca_btc@backtest_2023_q1"])
    assert "Traceback" not in daemon.stderr


def test_more_links_than_processes_are_dealt_round_robin_with_identical_results(tmp_path):
    path = three_links(tmp_path)
    _, one_out, _ = run([path, "--processes", "1"])
    code, out, daemon = run([path, "--processes", "2"])
    assert code == 0 and out == one_out
    (started,) = daemon.events("backtest_shards_started")
    assert started["shards"] == [["a@bt", "c@bt"], ["b@bt"]]


def test_a_killed_shard_fails_its_links_and_the_other_shard_completes(tmp_path):
    path = three_links(tmp_path, killed=probe_blueprint("killed", kill_process_at_tick=5), good=dca(6))
    code, out, daemon = run([path, "--processes", "2"], module="tests.probe_cli")

    assert code == 1, daemon.stderr
    assert "== good@bt [completed]" in out and "ticks processed       3000" in out
    assert "== killed@bt [failed]" in out
    assert "error: shard process killed by SIGKILL" in out
    (failed,) = daemon.events("backtest_shard_failed")
    assert failed["strategy_links"] == ["killed@bt"]
    assert "Traceback" not in daemon.stderr


def test_a_bad_data_file_in_one_shard_stops_every_shard_before_any_tick(tmp_path):
    write_hourly_csv(tmp_path / "data" / "ticks.csv", 100)
    bad = tmp_path / "data" / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,1,1\n"
                   "2024-01-01T01:00:00Z,1,2,1.5,1,1\n")  # low above open and close
    path = write_config_tree(tmp_path, [("a", "good"), ("b", "bad")], {"a": dca(6), "b": dca(6)},
                             {"good": backtest_environment(end=END_2050),
                              "bad": backtest_environment("../../data/bad.csv", end=END_2050)})
    code, _, daemon = run([path, "--processes", "2"])

    assert code == 2, daemon.stderr
    assert f"run-operation: config error: {bad}: line 3:" in daemon.stderr
    assert not daemon.events("strategy_run_started")  # nothing ran, in either shard
    assert "Traceback" not in daemon.stderr


def test_sighup_is_refused_and_sigterm_stops_every_shard_leaving_no_process_behind(tmp_path):
    path = three_links(tmp_path, 200_000, a=probe_blueprint("a", sleep_seconds=0.001),
                       b=probe_blueprint("b", sleep_seconds=0.001))
    daemon = Daemon([path, "--processes", "2"], module="tests.probe_cli")
    daemon.wait_for_event("backtest_shards_started")
    shards = [int(pid) for pid in Path(f"/proc/{daemon.process.pid}/task/{daemon.process.pid}/children")
              .read_text().split()]
    daemon.signal(signal.SIGHUP)  # not reloaded, and neither the daemon nor a shard dies of it
    assert "not reloaded" in daemon.wait_for_event("operation_reload_rejected")["reason"]
    time.sleep(0.5)
    daemon.signal(signal.SIGTERM)
    code, out = daemon.finish(timeout=20)

    assert code == 0, daemon.stderr
    assert "== a@bt [stopped]" in out and "== b@bt [stopped]" in out
    assert len(shards) == 2
    for pid in shards:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie_of_nobody(pid)
    assert "Traceback" not in daemon.stderr


def _is_zombie_of_nobody(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_report_over_two_processes_has_the_files_of_one_process(tmp_path):
    one_code, _, _ = run([DEMO, "--report", tmp_path / "one"])
    code, out, daemon = run([DEMO, "--processes", "2", "--report", tmp_path / "two"])

    assert (one_code, code) == (0, 0), daemon.stderr
    assert daemon.events("backtest_shards_started")
    assert f"Report: {tmp_path / 'two' / 'report.html'}" in out
    for link in ("ict_smc_strategy@backtest_2023_q1", "smart_dca_btc@backtest_2023_q1"):
        for name in ("trades.csv", "orders.csv", "equity.csv", "summary.json"):
            assert (tmp_path / "two" / link / name).read_bytes() == (tmp_path / "one" / link / name).read_bytes()
    (written,) = daemon.events("report_written")
    assert written["strategy_links"] == ["ict_smc_strategy@backtest_2023_q1", "smart_dca_btc@backtest_2023_q1"]


def test_processes_with_the_status_server_stay_in_one_process_and_say_so():
    daemon = Daemon([DEMO, "--processes", "2", "--http", "127.0.0.1:0"])
    code, _ = daemon.finish(timeout=40)
    assert code == 0, daemon.stderr
    (ignored,) = daemon.events("option_ignored")
    assert ignored["option"] == "--processes" and "--http" in ignored["reason"]
    assert not daemon.events("backtest_shards_started")
