"""Never stuck, never silently wrong: hung workers, closed pipes and signals at any moment, in
real processes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.daemon import Daemon, child_pid, write_hourly_csv
from tests.helpers import REPO, backtest_environment, blueprint, write_config_tree
from tests.probes import probe_blueprint

pytestmark = pytest.mark.e2e

END_2050 = "2050-01-01T00:00:00Z"


def dca_blueprint() -> dict:
    return blueprint({"opportunity": [{"plugin": "dca_schedule_opportunity"}],
                      "planning": [{"plugin": "position_sizer"}]})


def long_backtest(tmp_path, ticks: int = 200_000, **operation_settings):
    """One DCA link over `ticks` hourly candles: long enough to be signalled while it runs."""
    write_hourly_csv(tmp_path / "data" / "ticks.csv", ticks)
    return write_config_tree(tmp_path, [("dca", "bt")], {"dca": dca_blueprint()},
                             {"bt": backtest_environment(end=END_2050)}, operation_settings=operation_settings)


# --- stalls --------------------------------------------------------------------------------


def test_a_hung_worker_is_declared_stalled_and_its_neighbour_completes(tmp_path):
    write_hourly_csv(tmp_path / "data" / "ticks.csv", 3000)
    blueprints = {"hung": probe_blueprint("hung", hang_at_tick=3), "good": probe_blueprint("good")}
    path = write_config_tree(tmp_path, [("hung", "bt"), ("good", "bt")], blueprints,
                             {"bt": backtest_environment(end=END_2050)},
                             operation_settings={"stall_timeout_seconds": 0.5})
    daemon = Daemon([path], module="tests.probe_cli")
    code, out = daemon.finish(timeout=30)

    assert code == 1, daemon.stderr
    assert "== good@bt [completed]" in out  # 3000 ticks, 3x the hung run's queue: it never waited
    assert "ticks processed       3000" in out
    assert "== hung@bt [stalled]" in out
    assert "error: stalled: worker 'probe' spent more than 0.5 s on one tick (tick 2024-01-01T02:00:00+00:00)" in out
    (stalled,) = daemon.events("strategy_run_stalled")
    assert (stalled["strategy_link"], stalled["worker"], stalled["tick_time"]) == (
        "hung@bt", "probe", "2024-01-01T02:00:00+00:00")
    summaries = {e["strategy_link"]: e for e in daemon.events("strategy_summary")}
    assert summaries["hung@bt"]["status"] == "stalled" and summaries["hung@bt"]["ticks_processed"] == 2
    assert "Traceback" not in daemon.stderr


def test_sigterm_ends_within_the_shutdown_bound_whatever_a_worker_does(tmp_path):
    write_hourly_csv(tmp_path / "data" / "ticks.csv", 200_000)
    blueprints = {"hung": probe_blueprint("hung", hang_at_tick=2), "good": probe_blueprint("good")}
    path = write_config_tree(tmp_path, [("hung", "bt"), ("good", "bt")], blueprints,
                             {"bt": backtest_environment(end=END_2050)},
                             operation_settings={"stall_timeout_seconds": 600, "shutdown_timeout_seconds": 1})
    daemon = Daemon([path], module="tests.probe_cli")
    daemon.wait_for_event("probe_hanging")
    sent = daemon.signal(signal.SIGTERM)
    code, out = daemon.finish(timeout=30)

    assert time.monotonic() - sent < 15  # 1 s shutdown bound + the interpreter's exit, not the hung worker
    assert code == 1  # a run had to be abandoned
    assert "== hung@bt [stalled]" in out and "within 1 s of the stop request" in out
    assert "== good@bt [stopped]" in out
    assert {e["strategy_link"] for e in daemon.events("strategy_summary")} == {"hung@bt", "good@bt"}
    assert "Traceback" not in daemon.stderr


# --- closed pipes --------------------------------------------------------------------------


def test_a_closed_log_pipe_stops_the_daemon_promptly(tmp_path):
    """`run-operation … 2>&1 >/dev/null | head -1`: the reader goes away after one line."""
    path = long_backtest(tmp_path)
    out_file = tmp_path / "stdout.txt"
    with out_file.open("w") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "services.cli", str(path)], cwd=REPO,
                                   stdout=stdout, stderr=subprocess.PIPE,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        assert process.stderr.readline().startswith(b"{")
        process.stderr.close()  # what head does when it has its line
        closed = time.monotonic()
        code = process.wait(timeout=30)

    assert time.monotonic() - closed < 20
    assert code == 1
    assert "== dca@bt [stopped]" in out_file.read_text()  # not completed: stopped; summaries still reach stdout


def test_a_closed_stdout_does_not_turn_the_end_into_a_traceback(tmp_path):
    """`run-operation … | head -1`: stdout is gone when the summaries are printed."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails with EPIPE
    daemon = Daemon([long_backtest(tmp_path, ticks=500)], stdout=write_end)
    os.close(write_end)
    code, _ = daemon.finish(timeout=30)

    assert code == 0
    assert daemon.events("operation_finished")
    assert "Traceback" not in daemon.stderr and "Exception ignored" not in daemon.stderr


# --- signals at any moment -----------------------------------------------------------------


@pytest.fixture
def loading_forever(tmp_path):
    """An operation file that is a FIFO nobody writes to: the daemon blocks while loading it."""
    path = tmp_path / "config" / "operations" / "op.yaml"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_loading_exits_cleanly(loading_forever, signum):
    daemon = Daemon([loading_forever])
    daemon.wait_for_event("operation_loading")
    sent = daemon.signal(signum)
    code, out = daemon.finish(timeout=10)

    assert time.monotonic() - sent < 8  # not blocked on the file (the margin is for a loaded machine)
    assert code == 0
    assert f"{signal.Signals(signum).name} received while loading; nothing was started" in daemon.stderr
    assert "Traceback" not in daemon.stderr and out == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_running_stops_cleanly_with_summaries(tmp_path, signum):
    daemon = Daemon([long_backtest(tmp_path)])
    # The feed reads up to a few blocks of 4,096 candles ahead of the run: at 20 % read, the run
    # has processed some.
    daemon.wait_for_line(lambda line: '"backtest_progress"' in line and json.loads(line)["percent"] >= 20)
    daemon.signal(signum)
    code, out = daemon.finish(timeout=15)

    assert code == 0, daemon.stderr
    assert "== dca@bt [stopped]" in out
    (summary,) = daemon.events("strategy_summary")
    assert 0 < summary["ticks_processed"] < 200_000
    # Every candle the feed read was processed or logged as discarded (but those of a block the
    # feed was still handing over when the run stopped taking any: at most a block's 4,096).
    read = daemon.events("environment_feed_finished")[0]["ticks_sent"]
    discarded = sum(event["ticks"] for event in daemon.events("queued_ticks_discarded"))
    assert 0 <= read - (summary["ticks_processed"] + discarded) <= 4096 and discarded > 0
    assert daemon.events("signal_received")[0]["signal"] == signal.Signals(signum).name
    assert "Traceback" not in daemon.stderr


def test_as_pid_1_sigterm_is_honoured_while_loading(loading_forever):
    """In a container the daemon is PID 1, where a signal without a handler is ignored."""
    daemon = Daemon([loading_forever], prefix=["unshare", "--pid", "--fork", "--kill-child"])
    daemon.wait_for_event("operation_loading")
    sent = daemon.signal(signal.SIGTERM, pid=child_pid(daemon.process.pid))
    code, _ = daemon.finish(timeout=10)

    assert time.monotonic() - sent < 8  # not blocked on the file (the margin is for a loaded machine)
    assert code == 0 and "SIGTERM received while loading" in daemon.stderr


def test_as_pid_1_sigterm_stops_a_running_backtest(tmp_path):
    daemon = Daemon([long_backtest(tmp_path)], prefix=["unshare", "--pid", "--fork", "--kill-child"])
    daemon.wait_for_event("backtest_progress")
    daemon.signal(signal.SIGTERM, pid=child_pid(daemon.process.pid))
    code, out = daemon.finish(timeout=15)

    assert code == 0 and "== dca@bt [stopped]" in out
    (summary,) = daemon.events("strategy_summary")
    assert summary["ticks_processed"] < 200_000  # it stopped, it did not run to the end
