"""A parameter sweep against vectorbt's broadcast run (issue 19): the EMA-cross blueprint over
(fast, slow) pairs, fast < slow (8 fast periods x 9 slow ones: 70 pairs), on the long series.

- opdaemon: `run-operation sweep` through the real CLI (`--processes`, default one per core), a
  whole process, start-up and the data check included; its in-process sweep time from its own
  `sweep_started` and `sweep_finished` lines.
- opdaemon on Ray: the same command with `--executor ray --address` a local Ray cluster of as many
  CPUs as `--processes`, which the bench starts before its runs and stops after them (its start
  not timed): a Ray task per CPU, each a slice of the pairs run as one pass in a Ray worker.
  Skipped, and said so, when Ray is not installed.
- vectorbt (bench/vectorbt_sweep.py, in a process of its own with an empty numba cache): "cold"
  is the whole process up to the end of its first sweep call (imports, CSV read and numba's
  compilation included), "warm" its second sweep call.

Trades are compared pair by pair: fills and final equity to the cent (vectorbt's against the local
executor's, Ray's against the local executor's).

    python bench/bench_sweep.py [--candles 200000] [--processes N] [--repeat 1]
"""

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import datetime
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from candles import mirrored, sample_rows, write_csv  # noqa: E402
from service_case import data_range  # noqa: E402

FAST = (4, 6, 8, 10, 12, 16, 20, 24)
SLOW = (18, 26, 30, 36, 42, 50, 60, 72, 96)
PAIRS = [(fast, slow) for fast in FAST for slow in SLOW if fast < slow]  # 70

# A local Ray cluster of argv[1] CPUs, its files under argv[2], shut down when stdin closes; prints
# its address after the prefix (Ray prints lines of its own). As tests/conftest.py's ray_address.
_RAY_HEAD = """
import sys, ray
ray.init(num_cpus=int(sys.argv[1]), _temp_dir=sys.argv[2], include_dashboard=False, log_to_driver=False,
         configure_logging=False)
print("ray head at", ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def write_sweep(root: Path, data: Path) -> Path:
    """config/{strategies,environments,sweeps}: ema_cross on data (the whole file, no fee), every pair."""
    config = root / "config"
    for folder in ("strategies", "environments", "sweeps"):
        (config / folder).mkdir(parents=True, exist_ok=True)
    (config / "strategies" / "ema_cross.yaml").write_text((REPO / "config" / "strategies" / "ema_cross.yaml")
                                                          .read_text())
    start, end = data_range(data)
    (config / "environments" / "bench.yaml").write_text(yaml.safe_dump({
        "type": "backtest", "display_name": "bench", "data_file": str(data.resolve()), "symbol": "BTC/USD",
        "timeframe": "1h", "start": start, "end": end, "starting_capital": 10_000, "fee_rate": 0.0,
        "slippage_bps": 0,
    }))
    path = config / "sweeps" / "ema_pairs.yaml"
    path.write_text(yaml.safe_dump({
        "display_name": "EMA cross pairs", "blueprint": "ema_cross", "environments": ["bench"],
        "metric": "pnl_pct", "search": {"method": "grid"},
        "parameters": {"ema_detector": {"fast_period": list(FAST), "slow_period": list(SLOW)}},
        "constraints": ["fast_period < slow_period"],
    }))
    return path


@contextmanager
def local_ray(cpus: int, tmp: Path) -> Iterator[str]:
    """A local Ray cluster's address, for the block; the cluster is gone after it, however the block
    ends: the head's Ray shuts down when its stdin closes, and its process group (the head, Ray's
    processes it started, their workers) is killed if anything of it is left."""
    files = Path(tempfile.mkdtemp(prefix="ray-", dir=tmp))
    head = subprocess.Popen([sys.executable, "-c", _RAY_HEAD, str(cpus), str(files)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"})
    assert head.stdout is not None and head.stdin is not None
    try:
        address = next((line.split()[-1] for line in head.stdout if line.startswith("ray head at ")), None)
        if address is None:
            raise SystemExit("the local Ray head did not start")
        yield address
    finally:
        head.stdin.close()
        with suppress(subprocess.TimeoutExpired):
            head.wait(timeout=60)
        with suppress(ProcessLookupError):  # all of it gone already
            os.killpg(head.pid, signal.SIGKILL)  # the head's own session's group: only what it started
        head.wait()


def run_opdaemon(sweep: Path, out: Path, options: Sequence[str], code: Path = REPO) -> dict:
    """options: the executor's (`--processes N`, or `--executor ray --address A`)."""
    command = [sys.executable, "-m", "services.cli", "sweep", str(sweep), "--out", str(out), *options,
               "--log-level", "info"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=code, check=False,
                          env={**os.environ, "PYTHONPATH": str(code)})
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    moments = {}
    for line in done.stderr.splitlines():
        if '"sweep_started"' in line or '"sweep_finished"' in line:
            event = json.loads(line)
            moments[event["event"]] = datetime.fromisoformat(event["timestamp"])
    rows = json.loads((out / "results.json").read_text())["rows"]
    pairs = {f"{row['ema_detector.fast_period']}/{row['ema_detector.slow_period']}": [row["trades"],
                                                                                       row["final_equity"]]
             for row in rows if row["status"] == "completed"}
    return {"seconds": seconds, "pairs": pairs,
            "sweep_seconds": (moments["sweep_finished"] - moments["sweep_started"]).total_seconds()}


def run_vectorbt(data: Path, tmp: Path) -> dict:
    command = [sys.executable, str(BENCH / "vectorbt_sweep.py"), str(data),
               "--fast", *map(str, FAST), "--slow", *map(str, SLOW)]
    cache = tempfile.mkdtemp(prefix="numba-cache-", dir=tmp)  # empty: numba compiles, as on a first run
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "NUMBA_CACHE_DIR": cache})
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.splitlines()[-1])
    # The process up to the end of its first call: what a one-shot vectorbt script costs.
    result["cold_seconds"] = seconds - (result["in_process_seconds"] - result["first_call_end_seconds"])
    return result


def compare(ours: dict[str, list], theirs: dict[str, list]) -> tuple[int, list[str]]:
    """Pairs whose fills and final equity (to the cent) agree, and those that differ."""
    differing = [pair for pair in theirs
                 if pair not in ours or ours[pair][0] != theirs[pair][0]
                 or round(ours[pair][1], 2) != round(theirs[pair][1], 2)]
    return len(theirs) - len(differing), differing


def sweep_rows(candles: int, tmp: Path, processes: int, repeat: int = 1) -> None:
    """Print the rows: each contender's best of `repeat` runs, their runs interleaved."""
    first, rows = sample_rows()
    data = write_csv(tmp / "sweep.csv", first, mirrored(rows, candles))
    sweep = write_sweep(tmp / "sweep_tree", data)
    with_ray = importlib.util.find_spec("ray") is not None
    ours_runs, ray_runs, theirs_runs = [], [], []
    started = time.perf_counter()
    with local_ray(processes, tmp) if with_ray else nullcontext() as address:
        ray_start = time.perf_counter() - started
        for _ in range(repeat):  # interleaved: a busy moment of the machine hits each
            ours_runs.append(run_opdaemon(sweep, tmp / "sweep_out", ["--processes", str(processes)]))
            if address is not None:
                ray_runs.append(run_opdaemon(sweep, tmp / "sweep_ray_out", ["--executor", "ray", "--address", address]))
            theirs_runs.append(run_vectorbt(data, tmp))
    ours = min(ours_runs, key=lambda run: run["seconds"])
    theirs = min(theirs_runs, key=lambda run: run["cold_seconds"])
    theirs["warm_seconds"] = min(run["warm_seconds"] for run in theirs_runs)
    agreeing, differing = compare(ours["pairs"], theirs["pairs"])
    print(f"\n## Parameter sweep: EMA cross, {len(PAIRS)} (fast, slow) pairs, {candles:,} hourly candles, "
          f"{processes} processes (best of {repeat})")
    print(f"{'':<44}{'seconds':>10}{'opdaemon is':>14}")
    whole = ours["seconds"]
    print(f"  {'opdaemon: run-operation sweep (process)':<42}{whole:>10.2f}")
    print(f"  {'  of which the sweep itself':<42}{ours['sweep_seconds']:>10.2f}")
    if ray_runs:
        on_ray = min(ray_runs, key=lambda run: run["seconds"])
        print(f"  {'opdaemon: --executor ray (process)':<42}{on_ray['seconds']:>10.2f}")
        print(f"  {'  of which the sweep itself':<42}{on_ray['sweep_seconds']:>10.2f}")
    print(f"  {'vectorbt: process to first result (cold)':<42}{theirs['cold_seconds']:>10.2f}"
          f"{theirs['cold_seconds'] / whole:>13.2f}x")
    print(f"  {'vectorbt: its sweep call, compiled (warm)':<42}{theirs['warm_seconds']:>10.2f}"
          f"{theirs['warm_seconds'] / whole:>13.2f}x")
    print(f"  targets: opdaemon's process at most vectorbt's cold process (>= 1.00x): "
          f"{'met' if whole <= theirs['cold_seconds'] else 'NOT met'}; within 3x of its warm call (>= 0.33x): "
          f"{'met' if whole <= 3 * theirs['warm_seconds'] else 'NOT met'}")
    print(f"  identical trades (fills, final equity to the cent): {agreeing} of {len(theirs['pairs'])} pairs"
          + (f"; differing: {', '.join(differing[:5])}" if differing else ""))
    if ray_runs:
        tasks = min(processes, len(PAIRS))  # a task per CPU, the pairs dealt round-robin
        sizes = sorted({len(PAIRS[start::tasks]) for start in range(tasks)})
        same, other = compare(on_ray["pairs"], ours["pairs"])
        print(f"  Ray: a local cluster of {processes} CPUs (started in {ray_start:.1f} s, not counted), {tasks} tasks "
              f"of {' or '.join(map(str, sizes))} pairs; its process is "
              f"{on_ray['seconds'] / whole:.2f}x the local executor's; identical trades to the local executor's: "
              f"{same} of {len(ours['pairs'])} pairs" + (f"; differing: {', '.join(other[:5])}" if other else ""))
    else:
        print("  Ray: skipped (not installed: pip install 'opdaemon[ray]')")
    example = "12/26"
    if example in theirs["pairs"] and example in ours["pairs"]:
        print(f"  e.g. EMA(12)/EMA(26): opdaemon {ours['pairs'][example][0]} fills, "
              f"{ours['pairs'][example][1]:,.2f}; vectorbt {theirs['pairs'][example][0]} fills, "
              f"{theirs['pairs'][example][1]:,.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candles", type=int, default=200_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1, help="each side's figure is the best of this many runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep_rows(args.candles, Path(tmp), args.processes, args.repeat)


if __name__ == "__main__":
    main()
