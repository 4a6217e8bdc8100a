"""Signals at the very start and the very end of a real `run-operation` process: the handlers come
before every heavy import, so Ctrl-C, SIGTERM (also as PID 1, in a container) and a second signal
behave as the README says from the first moment to the last; a backtest never imports ccxt."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import Daemon, child_pid
from tests.helpers import REPO

pytestmark = pytest.mark.e2e

DEMO = "config/operations/backtest_demo.yaml"
HEAVY_MODULES = ("structlog", "pydantic", "yaml", "numpy", "pyarrow", "ccxt", "aiohttp", "rich", "matplotlib")
UNSHARE_PID_1 = ("unshare", "--pid", "--fork", "--kill-child")


def python(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def handlers_installed(pid: int, timeout: float = 10) -> None:
    """Returns as soon as pid catches SIGHUP (the last of the daemon's three handlers installed)."""
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        caught = next(line for line in status.read_text().splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & (1 << (signal.SIGHUP - 1)):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} installed no SIGHUP handler within {timeout} s")


def test_the_signal_handlers_come_before_every_heavy_import():
    snapshot = python(
        "import signal, sys\n"
        "install = signal.signal\n"
        "def spy(signum, handler):\n"
        "    if signum == signal.SIGTERM:\n"
        "        print(' '.join(sorted(name for name in sys.modules if '.' not in name)))\n"
        "    return install(signum, handler)\n"
        "signal.signal = spy\n"
        "sys.argv = ['run-operation', '--version']\n"
        "from services.cli import main\n"
        "main()\n")
    loaded = set(snapshot.stdout.splitlines()[0].split())
    assert loaded.isdisjoint(HEAVY_MODULES), sorted(loaded & set(HEAVY_MODULES))


def test_a_backtest_and_its_validation_never_import_ccxt():
    outcome = python(
        "import json, sys\n"
        "from services.cli import main\n"
        f"codes = [main(['validate', {DEMO!r}]), main([{DEMO!r}, '--log-level', 'error'])]\n"
        "print(json.dumps({'codes': codes, 'ccxt': sorted(m for m in sys.modules if m.startswith('ccxt'))[:3]}))\n")
    assert json.loads(outcome.stdout.splitlines()[-1]) == {"codes": [0, 0], "ccxt": []}, outcome.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("pid_1", [False, True], ids=["process", "pid_1"])
def test_a_signal_as_soon_as_the_handlers_are_in_place_ends_the_start_cleanly(signum, pid_1):
    daemon = Daemon([DEMO], prefix=UNSHARE_PID_1 if pid_1 else ())
    target = child_pid(daemon.process.pid) if pid_1 else daemon.process.pid
    handlers_installed(target)
    daemon.signal(signum, pid=target)
    code, out = daemon.finish(timeout=10)

    assert code == 0, daemon.stderr
    assert f"run-operation: {signal.Signals(signum).name} received while loading; nothing was started" in daemon.stderr
    assert "Traceback" not in daemon.stderr and out == ""


@pytest.mark.parametrize("command", [["validate", DEMO], ["sweep", "config/sweeps/dca_grid.yaml"],
                                     [DEMO, "--print-config"]], ids=["validate", "sweep", "print_config"])
def test_every_command_ends_cleanly_on_a_signal_as_soon_as_the_handlers_are_in_place(command, tmp_path):
    daemon = Daemon([*command, *(["--out", tmp_path] if command[0] == "sweep" else [])])
    handlers_installed(daemon.process.pid)
    daemon.signal(signal.SIGTERM)
    code, out = daemon.finish(timeout=10)

    assert code == 0, daemon.stderr
    assert "run-operation: SIGTERM received while loading; nothing was started" in daemon.stderr
    assert "Traceback" not in daemon.stderr and out == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_a_fifth_of_a_second_after_start_ends_the_daemon_cleanly(signum):
    daemon = Daemon([DEMO])
    time.sleep(max(0.0, 0.2 - (time.monotonic() - daemon.started)))  # a loaded machine may take longer to spawn it
    daemon.signal(signum)
    code, out = daemon.finish(timeout=10)

    assert code == 0, daemon.stderr
    assert "received while loading; nothing was started" in daemon.stderr or "[stopped]" in out
    assert "Traceback" not in daemon.stderr


def test_a_second_signal_while_loading_exits_1_at_once():
    daemon = Daemon([DEMO])
    handlers_installed(daemon.process.pid)
    daemon.signal(signal.SIGINT)
    daemon.signal(signal.SIGTERM)
    code, _ = daemon.finish(timeout=10)

    assert code == 1, daemon.stderr
    assert "run-operation: SIGTERM again, exiting at once" in daemon.stderr
    assert "Traceback" not in daemon.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_after_the_command_returned_does_not_kill_the_exiting_process(signum):
    """The entry point's handlers stay until the process exits: the signal is only logged."""
    outcome = python(
        "import os, signal, sys, time\n"
        f"sys.argv = ['run-operation', 'validate', {DEMO!r}]\n"
        "from services.cli import main\n"
        "code = main()\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "time.sleep(0.1)\n"
        "print('exiting with', code)\n")
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.splitlines()[-1] == "exiting with 0"
    assert f'"signal": "{signal.Signals(signum).name}", "event": "signal_received"' in outcome.stderr
    assert "Traceback" not in outcome.stderr
