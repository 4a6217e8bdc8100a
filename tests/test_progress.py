"""Backtest progress: bars on a terminal (a real pseudo-terminal), log lines elsewhere."""

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.test_cli import DEMO, LINKS

pytestmark = pytest.mark.e2e

ANSI_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BAR = "━"  # what rich draws a bar with


def run_demo(stderr: int, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", DEMO, *flags], cwd=REPO, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=stderr, env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm"},
    )


def read_until_closed(master: int) -> str:
    """Everything the terminal showed, until the daemon (the only other holder of the terminal) exits."""
    output = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        output += chunk
    return output.decode("utf-8", errors="replace")


def test_on_a_terminal_a_backtest_shows_bars_and_no_progress_lines(tmp_path: Path):
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = run_demo(terminal, "--log-dir", str(tmp_path / "logs"))
    os.close(terminal)
    screen = read_until_closed(master)
    os.close(master)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "== smart_dca_btc@backtest_2023_q1 [completed]" in out.decode()

    plain = ANSI_CONTROL.sub("", screen)
    assert BAR * 10 in plain and "backtest_2023_q1" in plain
    assert "2160/2160" in plain and "100%" in plain  # the bar's last state is left on screen
    assert "backtest_progress" not in plain
    # Every log line is still there, whole, as JSON, printed above the bars.
    lines = [line.strip() for line in plain.replace("\r", "\n").split("\n")]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    summaries = [e for e in events if e["event"] == "strategy_summary"]
    assert sorted(e["strategy_link"] for e in summaries) == sorted(LINKS)
    assert any(e["event"] == "operation_finished" for e in events)
    # The log files keep the progress lines the terminal shows as bars.
    daemon_log = [json.loads(line) for line in (tmp_path / "logs" / "daemon.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "backtest_progress" for e in daemon_log) == 10


def test_off_a_terminal_progress_is_logged_and_nothing_is_drawn():
    process = run_demo(subprocess.PIPE)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    text = err.decode()
    assert "\x1b" not in text and BAR not in text
    events = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    progress = [e for e in events if e["event"] == "backtest_progress"]
    assert [e["percent"] for e in progress] == list(range(10, 101, 10))
