"""A parameter sweep against vectorbt's broadcast run (issue 19): the EMA-cross blueprint over
(fast, slow) pairs, fast < slow (8 fast periods x 9 slow ones: 70 pairs), on the long series.

- opdaemon: `run-operation sweep` through the real CLI (`--processes`, default one per core), a
  whole process, start-up and the data check included; its in-process sweep time from its own
  `sweep_started` and `sweep_finished` lines.
- vectorbt (bench/vectorbt_sweep.py, in a process of its own with an empty numba cache): "cold"
  is the whole process up to the end of its first sweep call (imports, CSV read and numba's
  compilation included), "warm" its second sweep call.

Trades are compared pair by pair: fills and final equity to the cent.

    python bench/bench_sweep.py [--candles 200000] [--processes N] [--repeat 1]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
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


def run_opdaemon(sweep: Path, out: Path, processes: int, code: Path = REPO) -> dict:
    command = [sys.executable, "-m", "services.cli", "sweep", str(sweep), "--out", str(out),
               "--processes", str(processes), "--log-level", "info"]
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
    """Print the rows: each side's best of `repeat` runs, the two sides' runs interleaved."""
    first, rows = sample_rows()
    data = write_csv(tmp / "sweep.csv", first, mirrored(rows, candles))
    sweep = write_sweep(tmp / "sweep_tree", data)
    ours_runs, theirs_runs = [], []
    for _ in range(repeat):  # interleaved: a busy moment of the machine hits both
        ours_runs.append(run_opdaemon(sweep, tmp / "sweep_out", processes))
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
    print(f"  {'vectorbt: process to first result (cold)':<42}{theirs['cold_seconds']:>10.2f}"
          f"{theirs['cold_seconds'] / whole:>13.2f}x")
    print(f"  {'vectorbt: its sweep call, compiled (warm)':<42}{theirs['warm_seconds']:>10.2f}"
          f"{theirs['warm_seconds'] / whole:>13.2f}x")
    print(f"  targets: opdaemon's process at most vectorbt's cold process (>= 1.00x): "
          f"{'met' if whole <= theirs['cold_seconds'] else 'NOT met'}; within 3x of its warm call (>= 0.33x): "
          f"{'met' if whole <= 3 * theirs['warm_seconds'] else 'NOT met'}")
    print(f"  identical trades (fills, final equity to the cent): {agreeing} of {len(theirs['pairs'])} pairs"
          + (f"; differing: {', '.join(differing[:5])}" if differing else ""))
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
