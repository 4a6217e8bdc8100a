"""A real `run-operation` process for end-to-end tests: pipes, signals, its log lines as JSON."""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers import REPO


class Daemon:
    """`python -m MODULE ARGS` (services.cli or tests.probe_cli) with stderr read line by line;
    env: variables set (or overridden) on top of this process's environment."""

    def __init__(self, args: Sequence[str], module: str = "services.cli",
                 prefix: Sequence[str] = (), stdout: int | None = subprocess.PIPE,
                 env: Mapping[str, str] | None = None) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", module, *map(str, args)], cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        )
        self.stderr_lines: list[str] = []
        self._new_line = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._stdout: list[str] = []
        self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_reader.start()

    def _read_stdout(self) -> None:
        if self.process.stdout is not None:
            self._stdout.append(self.process.stdout.read())

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        try:
            for line in self.process.stderr:
                with self._new_line:
                    self.stderr_lines.append(line)
                    self._new_line.notify_all()
        except ValueError:  # the test closed our end on purpose
            pass
        with self._new_line:
            self._new_line.notify_all()

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 20) -> str:
        """The first stderr line matching predicate; fails the test if none comes in time."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._new_line:
            while True:
                for line in self.stderr_lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.stderr_lines)
                if not self._reader.is_alive() or time.monotonic() > deadline:
                    raise AssertionError(f"no such line within {timeout}s; stderr:\n{self.stderr}")
                self._new_line.wait(0.05)

    def wait_for_event(self, event: str, timeout: float = 20) -> dict:
        return json.loads(self.wait_for_line(lambda line: f'"event": "{event}"' in line, timeout))

    def signal(self, signum: int, pid: int | None = None) -> float:
        """Send signum (to pid, default the process); returns the monotonic time it was sent."""
        os.kill(pid or self.process.pid, signum)
        return time.monotonic()

    def finish(self, timeout: float = 20) -> tuple[int, str]:
        """Wait for the exit; (exit code, stdout)."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self._reader.join(5)
        self._stdout_reader.join(5)
        return self.process.returncode, "".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def events(self, name: str | None = None) -> list[dict]:
        parsed = [json.loads(line) for line in self.stderr_lines if line.startswith("{")]
        return [e for e in parsed if name is None or e["event"] == name]


def wait_until(condition: Callable[[], object], what: str, timeout: float = 20, daemon: Daemon | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if daemon is not None and daemon.process.poll() is not None:
            raise AssertionError(f"the daemon exited ({daemon.process.returncode}) before: {what}\n{daemon.stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}" + (f"\n{daemon.stderr}" if daemon else ""))
        time.sleep(0.01)


def child_pid(pid: int, timeout: float = 5) -> int:
    """The first child of pid (e.g. the PID-1 process `unshare --fork` starts)."""
    deadline = time.monotonic() + timeout
    children = Path(f"/proc/{pid}/task/{pid}/children")
    while time.monotonic() < deadline:
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.01)
    raise AssertionError(f"process {pid} started no child")


def write_hourly_csv(path: Path, count: int, start_epoch: int = 1_704_067_200) -> Path:
    """count hourly candles from 2024-01-01 (fast: no models), a sine-ish path of valid rows."""
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(count):
        moment = datetime.fromtimestamp(start_epoch + i * 3600, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        close = 100 + (i % 50)
        lines.append(f"{moment},{close},{close + 1},{close - 1},{close},1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
