"""Start-up cost per command (issue 19, "pay only for what is used"): for each command, in fresh
processes, the time its imports take, its wall time and its peak RSS, each the median of
`--runs` runs; with `--code DIR`, the same for another checkout too (e.g. a revision extracted with
`git archive REV | tar -x -C DIR`), the runs of both interleaved.

    python bench/bench_startup.py [--runs 5] [--code DIR]

Commands:
- `run-operation --help`;
- `run-operation validate config/operations/backtest_demo.yaml`;
- the backtest demo, `run-operation config/operations/backtest_demo.yaml` (whole process);
- a live daemon with two links (Kraken, mode live, shipped smart DCA on 1m candles) against the
  local fake Kraken (tests/fake_kraken.py, tests/fake_kraken_ws.py), its market data over REST,
  then over the websocket (with the executions channel): "wall" is the time from the spawn to the
  fake's first request; the daemon then runs until `--live-seconds` (default 2) after it logged
  `operation_started`, so that its RSS is that of a running daemon (warm-up replayed, candles
  polled or streamed), then gets SIGTERM. It runs as tests/fast_cli.py (ccxt's pacing at 1 ms, as
  in the end-to-end tests; the first call is not paced, so its time is the CLI's).

Columns:
- imports: the seconds the process spends importing modules, from `python -X importtime` (the
  sum of the top-level entries' cumulative times, lazy imports included; a run of its own, as the
  option slows the imports down a little);
- wall: the whole process (a live daemon: to its first exchange call);
- peak RSS: the most resident memory the process ever held (VmHWM, read as it exits);
- heavy modules: which of HEAVY the process imported (pandas, pyarrow, matplotlib, optuna, ray,
  rich, numpy, ccxt, ccxt.pro (ccxt's websocket clients), and ccxt.binance: the sign that ccxt
  loaded every exchange it knows, not Kraken's alone).
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fake_kraken import TEST_API_KEY, TEST_API_SECRET, FakeKraken, candle, running_fake_kraken  # noqa: E402
from tests.fake_kraken_ws import running_fake_kraken_ws, ws_candle  # noqa: E402

DEMO = "config/operations/backtest_demo.yaml"
CLI = "services.cli"
# The CLI with ccxt's pacing of Kraken requests at 1 ms instead of 1 s, as the end-to-end tests run it:
# the daemon gets through its start-up calls to the (local) exchange at once. The first call is not paced.
FAST_CLI = "tests.fast_cli"
HEAVY = ("pandas", "pyarrow", "matplotlib", "optuna", "ray", "rich", "numpy", "ccxt", "ccxt.pro", "ccxt.binance")
KEY_ENV, SECRET_ENV = "OPDAEMON_BENCH_KRAKEN_KEY", "OPDAEMON_BENCH_KRAKEN_SECRET"
# As the process exits (whatever path it exits by), prints the HEAVY modules it imported and its
# peak RSS: VmHWM, which, unlike getrusage's ru_maxrss, a child does not inherit from its parent
# across fork and exec (ru_maxrss would show this script's own size as every child's floor).
EXIT_REPORT = ("import atexit, sys; atexit.register(lambda: print("
               f"'heavy:', ' '.join(m for m in {HEAVY!r} if m in sys.modules), "
               "'| VmHWM:', next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1], "
               "file=sys.stderr))")


@dataclass
class Run:
    wall: float
    max_rss_bytes: int
    imports: float
    heavy: str


def live_operation(root: Path, fake: FakeKraken, **settings: object) -> Path:
    """Two links (two blueprints) on one live Kraken environment pointed at the fake (settings:
    the environment's, over REST market data and order updates)."""
    environment = {
        "type": "live", "display_name": "fake kraken", "exchange": "kraken", "symbols": ["BTC/USD"],
        "timeframe": "1m", "mode": "live", "allow_live_orders": True, "api_key_env": KEY_ENV,
        "api_secret_env": SECRET_ENV, "api_url": fake.url, "market_data": "rest", "poll_interval_seconds": 0.2,
        "starting_capital": 10_000, "fee_rate": 0.0026, **settings,
    }
    blueprint = yaml.safe_load((REPO / "config" / "strategies" / "smart_dca_btc.yaml").read_text())
    blueprint["timeframe"] = "1m"
    config = root / "config"
    for folder in ("operations", "strategies", "environments"):
        (config / folder).mkdir(parents=True, exist_ok=True)
    (config / "environments" / "live.yaml").write_text(yaml.safe_dump(environment))
    for name in ("first", "second"):
        (config / "strategies" / f"{name}.yaml").write_text(yaml.safe_dump(blueprint))
    operation = {"display_name": "two live links", "strategy_links": [
        {"strategy_blueprint_id": name, "execution_environment_id": "live", "is_active": True}
        for name in ("first", "second")]}
    path = config / "operations" / f"live_{environment['market_data']}.yaml"
    path.write_text(yaml.safe_dump(operation))
    return path


def spawn(code: Path, module: str, arguments: list[str], importtime: bool, env: dict[str, str]) -> subprocess.Popen:
    flags = ["-X", "importtime"] if importtime else []
    command = [sys.executable, *flags, "-c", f"{EXIT_REPORT}\nimport runpy\nrunpy.run_module({module!r}, "
               "run_name='__main__')", *arguments]
    return subprocess.Popen(command, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={"PYTHONPATH": str(code), "PATH": os.environ.get("PATH", ""), **env})


def import_seconds(stderr: str) -> float:
    """The sum of the top-level entries of -X importtime (each is cumulative over what it imported)."""
    total = 0
    for line in stderr.splitlines():
        if line.startswith("import time:") and not line.startswith("import time: self"):
            _, cumulative, name = line[len("import time:"):].split("|")
            if not name.startswith("  "):  # one space after the bar: imported by no other module
                total += int(cumulative)
    return total / 1e6


class Child:
    """A spawned command whose stderr is read as it comes (a full pipe would block it)."""

    def __init__(self, code: Path, module: str, arguments: list[str], importtime: bool, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.process = spawn(code, module, arguments, importtime, env)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        self._lines.extend(self.process.stderr)

    def logged(self, event: str) -> bool:
        return any(f'"event": "{event}"' in line for line in list(self._lines))

    def wait(self) -> tuple[int, int, str]:
        """(exit code, peak RSS bytes, stderr)."""
        code = self.process.wait()
        self._reader.join()
        stderr = "".join(self._lines)
        return code, int(exit_report(stderr)[1]) * 1024, stderr


def run_command(code: Path, arguments: list[str], importtime: bool) -> tuple[float, int, str]:
    child = Child(code, CLI, arguments, importtime, {})
    code, max_rss, stderr = child.wait()
    wall = time.monotonic() - child.started
    if code != 0:
        raise SystemExit(f"{' '.join(arguments)} exited {code}:\n{messages(stderr)}")
    return wall, max_rss, stderr


def run_live(code: Path, fake: FakeKraken, settings: dict, importtime: bool, live_seconds: float,
             ) -> tuple[float, int, str]:
    """A live daemon (in a fresh config tree and data dir): (seconds from its spawn to its first
    exchange call, peak RSS once it ran live_seconds after logging operation_started, stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        operation = live_operation(Path(tmp), fake, **settings)
        fake.requests.clear()
        credentials = {KEY_ENV: TEST_API_KEY, SECRET_ENV: TEST_API_SECRET}
        child = Child(code, FAST_CLI, [str(operation), "--data-dir", str(Path(tmp) / "data")], importtime,
                      credentials)
        deadline = child.started + 30
        while not child.logged("operation_started") and time.monotonic() < deadline and child.process.poll() is None:
            time.sleep(0.001)
        if not fake.requests or not child.logged("operation_started"):
            child.process.kill()
            raise SystemExit(f"the live daemon did not start within 30 s:\n{messages(child.wait()[2])}")
        first_call = fake.requests[0].at - child.started
        time.sleep(live_seconds)  # running: its candles polled, its links ticking
        child.process.send_signal(signal.SIGTERM)
        exit_code, max_rss, stderr = child.wait()
    if exit_code != 0:
        raise SystemExit(f"the live daemon exited {exit_code}:\n{messages(stderr)}")
    return first_call, max_rss, stderr


def messages(stderr: str) -> str:
    """The last lines of stderr that are not -X importtime's."""
    return "\n".join([line for line in stderr.splitlines() if not line.startswith("import time:")][-20:])


def exit_report(stderr: str) -> tuple[str, str]:
    """(the heavy modules imported, VmHWM in kB) as EXIT_REPORT printed them."""
    lines = [line for line in stderr.splitlines() if line.startswith("heavy:")]
    heavy, _, peak = lines[-1].removeprefix("heavy:").partition("| VmHWM:") if lines else ("?", "", "0")
    return heavy.strip(), peak.strip()


Case = Callable[[Path, bool], tuple[float, int, str]]  # (code, importtime) -> (wall, peak RSS, stderr)


def measure(case: Case, codes: dict[str, Path], runs: int) -> dict[str, Run]:
    """Each code's Run of case: plain runs (wall, RSS), then -X importtime runs, the codes interleaved."""
    plain: dict[str, list] = {label: [] for label in codes}
    timed: dict[str, list] = {label: [] for label in codes}
    for results, importtime in ((plain, False), (timed, True)):
        for _ in range(runs):
            for label, code in codes.items():
                results[label].append(case(code, importtime))
    return {label: Run(wall=statistics.median(r[0] for r in plain[label]),
                       max_rss_bytes=int(statistics.median(r[1] for r in plain[label])),
                       imports=statistics.median(import_seconds(r[2]) for r in timed[label]),
                       heavy=exit_report(plain[label][-1][2])[0]) for label in codes}


def startup(runs: int, live_seconds: float, codes: dict[str, Path]) -> None:
    """Print the table: each command, for each code (label: checkout)."""
    print(f"\n## Start-up per command (fresh processes, median of {runs} runs)")
    print(f"{'command':<40}{'code':<12}{'imports':>9}{'wall':>9}{'peak RSS':>11}   heavy modules imported")
    cases: dict[str, Case] = {
        "run-operation --help": lambda code, importtime: run_command(code, ["--help"], importtime),
        "validate (backtest demo)": lambda code, importtime: run_command(code, ["validate", DEMO], importtime),
        "backtest demo (whole process)": lambda code, importtime: run_command(
            code, [DEMO, "--log-level", "warning"], importtime),
    }
    with running_fake_kraken() as fake, running_fake_kraken_ws(rest=fake) as stream:
        minute = 60
        first = (int(time.time()) // minute - 120) * minute
        fake.set_candles("XXBTZUSD", [candle(first + index * minute, 50_000.0) for index in range(120)])
        stream.send(*(ws_candle("BTC/USD", first + index * minute, 50_000.0) for index in range(120)))
        websocket = {"market_data": "websocket", "ws_url": stream.url, "private_ws_url": stream.url}
        for market_data, settings in (("rest", {}), ("websocket", websocket)):
            cases[f"live, 2 links, {market_data} (to 1st call)"] = partial(
                lambda code, importtime, settings: run_live(code, fake, settings, importtime, live_seconds),
                settings=settings)
        for name, case in cases.items():
            for label, result in measure(case, codes, runs).items():
                print(f"{name:<40}{label:<12}{result.imports:>8.2f}s{result.wall:>8.2f}s"
                      f"{result.max_rss_bytes / 2**20:>8.0f} MB   {result.heavy or '-'}", flush=True)
                name = ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="each figure is the median of this many runs")
    parser.add_argument("--live-seconds", type=float, default=2.0,
                        help="how long the live daemon runs after operation_started")
    parser.add_argument("--code", type=Path, help="another checkout, measured beside this tree")
    args = parser.parse_args()
    other = {args.code.name[:11]: args.code} if args.code else {}
    startup(args.runs, args.live_seconds, {"this tree": REPO, **other})


if __name__ == "__main__":
    main()
