"""The whole benchmark table in one run: every figure below is measured now, on this machine,
and every ratio compares two figures of this same run.

    python bench/run_all.py [--candles 200000] [--blueprint-candles 50000] [--baseline REV ...]

Rows:
- peers: the EMA(12)/EMA(26) crossover (config/strategies/ema_cross.yaml) through the full
  service, one run, against backtesting.py and backtrader on the same candles (bench/peers.py
  says how the semantics are matched). Trades are compared on the shipped sample and on the long
  series: fills and final equity to the cent. The peers are installed into this interpreter's
  environment when missing (`pip install backtesting backtrader`: pyproject.toml's `bench` extra).
- overhead: a workforce with no computation (one market_order_executor, which finds no plan and
  returns): what the daemon itself costs per candle and run (feed, hand-off, tick cache, account),
  with 1 and 10 runs on one environment.
- resting orders: the blueprints whose orders rest on the venue (ICT/SMC: post-only limit entries
  that expire, a stop-loss and a take-profit per position; smart DCA: post-only limit buys) through
  the full service, one run, replayed columnar and tick by tick on the long series: candles per
  second and the same trades (fills, final equity to the cent).
- shipped blueprints: ICT/SMC and smart DCA through the full service, one run, against the same
  measurement of each `--baseline` git revision (extracted with `git archive` into a temporary
  directory and run with the same script): by default 944a9ad, the seed when issue 9 was taken
  up, and bd06b08, the last revision that replayed every backtest tick by tick.
- several symbols: smart DCA through the full service, one run trading one symbol, then two (one
  account; the second symbol made up from the first, priced as it 37 candles later), replayed
  columnar and tick by tick: candles per second (every symbol's) and the same trades.
- scaling: N links of smart DCA over 1 and min(N, cores) processes (`--processes`), through the
  CLI, against one link in one process (bench/bench_scaling.py).
- startup: per command (`--help`, validate, the backtest demo, a live daemon with two links against
  the local fake Kraken over REST and over websockets), the seconds spent importing, the wall time
  (a live daemon: to its first exchange call) and the peak RSS of a fresh process, the median of
  `--startup-runs`; with `--startup-baseline REV`, the same for that git revision beside this tree
  (bench/bench_startup.py).
- sweep: the EMA-cross blueprint over 70 (fast, slow) pairs through `run-operation sweep`, with
  the local executor and with `--executor ray` on a local Ray cluster the bench starts and stops,
  against vectorbt's broadcast run of the same pairs, cold (its whole process, numba's
  compilation included) and warm (its sweep call), trades compared pair by pair
  (bench/bench_sweep.py). vectorbt is installed when missing, as the peers are.
- memory: 1, 100 and 1,000 runs of ICT/SMC on one environment (the sample's first candles, more than
  the 50 its history keeps): bytes per
  run of its parts (the tick cache's provider between ticks, and what a full tick puts in it,
  candle history, account, workers, the run itself: queue, thread, counters) and the peak RSS of
  the process. "per run" is what a run keeps between ticks.

Each opdaemon case runs in a fresh interpreter (bench/service_case.py). Every timed figure is the
best of `--repeat` runs (default 3), the contenders' runs interleaved, so that the machine's
other load, which only ever slows a run down, weighs on none of them more than on the others.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import TypeVar

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from bench_scaling import scaling  # noqa: E402
from bench_startup import startup  # noqa: E402
from bench_sweep import sweep_rows  # noqa: E402
from candles import SAMPLE, mirrored, sample_rows, write_csv  # noqa: E402

T = TypeVar("T")
# The seed as issue 9 found it (its "today"), and the last revision before the columnar replay.
BASELINES = ["944a9ad", "bd06b08"]
STRATEGIES = REPO / "config" / "strategies"
EMA_CROSS = STRATEGIES / "ema_cross.yaml"
BLUEPRINTS = {"ICT/SMC": STRATEGIES / "ict_smc_strategy.yaml", "smart DCA": STRATEGIES / "smart_dca_btc.yaml"}
SECTIONS = ("peers", "overhead", "orders", "blueprints", "multi", "scaling", "sweep", "startup", "memory")
# The packages each section compares opdaemon with (pyproject.toml's `bench` extra), by import name.
PEERS = {"peers": {"backtesting": "backtesting", "backtrader": "backtrader"}, "sweep": {"vectorbt": "vectorbt"}}
NOT_COLUMNAR = {"plugin": "bench.tick_by_tick:NotColumnar"}
EXECUTOR_ONLY = {
    "display_name": "no computation", "assets": ["BTC/USD"], "timeframe": "1h",
    "workforce": {"execution": [{"plugin": "market_order_executor"}]},
}


def ensure_peers(sections: list[str] | tuple[str, ...]) -> None:
    """pip-install into this interpreter's environment the peers of the sections asked for that
    are missing (the `bench` extra: never a dependency of opdaemon itself)."""
    wanted = {module: package for section in sections for module, package in PEERS.get(section, {}).items()}
    missing = [package for module, package in wanted.items() if importlib.util.find_spec(module) is None]
    if missing:
        print(f"installing {' '.join(missing)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)


def service_case(blueprint: Path, data: Path, runs: int = 1, memory: bool = False,
                 code: Path = REPO, also: dict[str, Path] | None = None) -> dict:
    command = [sys.executable, str(BENCH / "service_case.py"), str(blueprint), str(data), "--runs", str(runs)]
    if memory:
        command.append("--memory")
    for symbol, path in (also or {}).items():
        command += ["--also", f"{symbol}={path}"]
    env = {"PYTHONPATH": str(code), "PATH": ""}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=code, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def baseline_checkout(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def best(measure: "Callable[[], T]", seconds: "Callable[[T], float]", repeat: int) -> "T":
    """The fastest of repeat measurements (the machine's other load only ever slows a run down)."""
    return min((measure() for _ in range(repeat)), key=seconds)


def rate(result: dict) -> float:
    return result["candles"] / result["seconds"]


def same(fills: list[int], equities: list[float]) -> str:
    return "yes" if len(set(fills)) == 1 and len({round(e, 2) for e in equities}) == 1 else "NO"


def tick_by_tick(blueprint: Path, tmp: Path) -> Path:
    """A copy of blueprint with a worker that has no columnar replay: the run goes tick by tick."""
    import yaml

    spec = yaml.safe_load(blueprint.read_text())
    spec["workforce"]["execution"] = [*spec["workforce"]["execution"], NOT_COLUMNAR]
    path = tmp / f"{blueprint.stem}_tick_by_tick.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def peers(candles: int, tmp: Path, repeat: int) -> None:
    import pandas as pd
    from peers import frame, run_backtesting, run_backtrader

    ema_cross_by_ticks = tick_by_tick(EMA_CROSS, tmp)

    first, rows = sample_rows()
    print(f"\n## EMA(12)/EMA(26) crossover, one run ({candles:,} hourly candles; trades checked on the sample too)")
    print(f"{'':<26}{'candles/s':>12}{'fills':>8}{'final equity':>16}{'opdaemon is':>14}")
    for label, series in (("shipped sample", rows), ("long series", mirrored(rows, candles))):
        data_file = write_csv(tmp / f"{label.replace(' ', '_')}.csv", first, series) if series is not rows else SAMPLE
        data = frame(pd.Timestamp(first), series)
        measures = {
            "opdaemon (full service)": lambda data_file=data_file: service_case(EMA_CROSS, data_file),
            "  tick by tick": lambda data_file=data_file: service_case(ema_cross_by_ticks, data_file),
            "backtesting.py": lambda data=data: run_backtesting(data),
            "backtrader": lambda data=data: run_backtrader(data),
        }
        runs: dict[str, list] = {name: [] for name in measures}
        for _ in range(repeat):  # interleaved: a busy moment of the machine hits every contender
            for name, measure in measures.items():
                runs[name].append(measure())
        results = {}
        for name in ("opdaemon (full service)", "  tick by tick"):
            ours = min(runs[name], key=lambda result: result["seconds"])
            results[name] = (ours["seconds"], ours["trades"], ours["final_equity"])
        results |= {name: min(runs[name]) for name in ("backtesting.py", "backtrader")}
        ours_rate = len(series) / results["opdaemon (full service)"][0]
        print(f"{label} ({len(series):,} candles)")
        for name, (seconds, fills, equity) in results.items():
            speed = len(series) / seconds
            ratio = "" if name.startswith(("opdaemon", " ")) else f"{ours_rate / speed:.2f}x"
            print(f"  {name:<24}{speed:>12,.0f}{fills:>8}{equity:>16,.2f}{ratio:>14}")
        print(f"  identical trades (fills, final equity to the cent): "
              f"{same([r[1] for r in results.values()], [r[2] for r in results.values()])}")


def overhead(candles: int, tmp: Path, repeat: int) -> None:
    import yaml

    first, rows = sample_rows()
    data_file = write_csv(tmp / "overhead.csv", first, mirrored(rows, candles))
    blueprint = tmp / "executor_only.yaml"
    blueprint.write_text(yaml.safe_dump(EXECUTOR_ONLY))
    by_ticks = tick_by_tick(blueprint, tmp)
    print(f"\n## Daemon overhead: no computation in the workforce ({candles:,} candles)")
    print(f"{'':<26}{'µs per candle per run':^30}")
    print(f"{'runs on one environment':<26}{'columnar':>15}{'tick by tick':>15}")
    for runs in (1, 10):
        cells = []
        for path in (blueprint, by_ticks):
            result = best(lambda runs=runs, path=path: service_case(path, data_file, runs=runs), lambda r: r["seconds"],
                          repeat)
            cells.append(result["seconds"] / result["candles"] / runs * 1e6)
        print(f"  {runs:<24}{cells[0]:>15.2f}{cells[1]:>15.2f}")


def resting_orders(candles: int, tmp: Path, repeat: int) -> None:
    first, rows = sample_rows()
    data_file = write_csv(tmp / "resting_orders.csv", first, mirrored(rows, candles))
    print(f"\n## Orders resting on the venue, one run, full service ({candles:,} candles)")
    print(f"{'':<14}{'candles/s columnar':>20}{'tick by tick':>14}{'columnar is':>13}{'fills':>8}{'same trades':>13}")
    for name, path in BLUEPRINTS.items():
        contenders = (path, tick_by_tick(path, tmp))
        runs: list[list[dict]] = [[], []]
        for _ in range(repeat):  # interleaved
            for index, blueprint in enumerate(contenders):
                runs[index].append(service_case(blueprint, data_file))
        columnar, by_ticks = (min(results, key=lambda r: r["seconds"]) for results in runs)
        same_trades = same([columnar["trades"], by_ticks["trades"]],
                           [columnar["final_equity"], by_ticks["final_equity"]])
        print(f"  {name:<12}{rate(columnar):>20,.0f}{rate(by_ticks):>14,.0f}{rate(columnar) / rate(by_ticks):>12.1f}x"
              f"{columnar['trades']:>8}{same_trades:>13}")


def multi_asset(candles: int, tmp: Path, repeat: int) -> None:
    """Smart DCA on one symbol, then on two (a second made up from the first, priced as it 37
    candles later and scaled: its own signals), one run and one account, columnar and tick by tick."""
    first, rows = sample_rows()
    series = mirrored(rows, candles)
    data_file = write_csv(tmp / "multi_btc.csv", first, series)
    lagged = series[37:] + series[:37]
    other = write_csv(tmp / "multi_eth.csv", first, [(*(price * 0.075 for price in row[:4]), row[4])
                                                      for row in lagged])
    path = BLUEPRINTS["smart DCA"]
    print(f"\n## Several symbols, smart DCA, one run, full service ({candles:,} candles per symbol)")
    print(f"{'':<14}{'candles/s columnar':>20}{'tick by tick':>14}{'columnar is':>13}{'fills':>8}{'same trades':>13}")
    for label, also in (("1 symbol", None), ("2 symbols", {"ETH/USD": other})):
        contenders = (path, tick_by_tick(path, tmp))
        runs: list[list[dict]] = [[], []]
        for _ in range(repeat):  # interleaved
            for index, blueprint in enumerate(contenders):
                runs[index].append(service_case(blueprint, data_file, also=also))
        columnar, by_ticks = (min(results, key=lambda r: r["seconds"]) for results in runs)
        same_trades = same([columnar["trades"], by_ticks["trades"]],
                           [columnar["final_equity"], by_ticks["final_equity"]])
        print(f"  {label:<12}{rate(columnar):>20,.0f}{rate(by_ticks):>14,.0f}{rate(columnar) / rate(by_ticks):>12.1f}x"
              f"{columnar['trades']:>8}{same_trades:>13}")


def blueprints(candles: int, baselines: list[str], tmp: Path, repeat: int) -> None:
    first, rows = sample_rows()
    data_file = write_csv(tmp / "blueprints.csv", first, mirrored(rows, candles))
    codes = {revision: baseline_checkout(revision, tmp / f"baseline_{index}")
             for index, revision in enumerate(baselines)}
    print(f"\n## Shipped blueprints, one run, full service ({candles:,} candles)")
    print(f"{'':<14}{'revision':<12}{'candles/s':>12}{'now is':>10}{'same trades':>14}")
    for name, path in BLUEPRINTS.items():
        results: dict[str, list[dict]] = {"now": [], **{revision: [] for revision in baselines}}
        for _ in range(repeat):  # interleaved
            for revision, code in codes.items():
                results[revision].append(service_case(path, data_file, code=code))
            results["now"].append(service_case(path, data_file))
        fastest = {revision: min(runs, key=lambda r: r["seconds"]) for revision, runs in results.items()}
        now = fastest["now"]
        print(f"  {name:<12}{'this tree':<12}{rate(now):>12,.0f}")
        for revision in baselines:
            before = fastest[revision]
            same_trades = same([before["trades"], now["trades"]], [before["final_equity"], now["final_equity"]])
            print(f"  {'':<12}{revision:<12}{rate(before):>12,.0f}{rate(now) / rate(before):>9.2f}x{same_trades:>14}")


def memory(candles: int, tmp: Path) -> None:
    first, rows = sample_rows()
    data_file = write_csv(tmp / "memory.csv", first, rows[:candles])
    print(f"\n## Memory, ICT/SMC on one environment (the first {candles:,} candles of the shipped sample)")
    print(f"{'runs':>6}{'provider':>10}{'full cache':>12}{'history':>10}{'account':>10}{'workers':>10}{'run':>10}"
          f"{'per run':>10}{'peak RSS':>12}")
    for runs in (1, 100, 1000):
        result = service_case(BLUEPRINTS["ICT/SMC"], data_file, runs=runs, memory=True)
        parts = result["per_run_bytes"]
        print(f"{runs:>6}{parts['provider']:>10,}{parts['cache']:>12,}{parts['history']:>10,}{parts['account']:>10,}"
              f"{parts['workers']:>10,}{parts['run']:>10,}{sum(parts.values()) - parts['cache']:>10,}"
              f"{result['max_rss_bytes'] / 2**20:>10.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=200_000, help="the long series of the peer comparison")
    parser.add_argument("--blueprint-candles", type=int, default=50_000, help="candles of the shipped blueprints' rows")
    parser.add_argument("--overhead-candles", type=int, default=100_000)
    parser.add_argument("--orders-candles", type=int, default=50_000, help="candles of the resting orders' rows")
    parser.add_argument("--multi-candles", type=int, default=50_000, help="candles per symbol, several-symbol rows")
    parser.add_argument("--memory-candles", type=int, default=600, help="candles of the memory rows (history: 50)")
    parser.add_argument("--baseline", action="append", help="git revision the shipped blueprints are compared with "
                        f"(repeatable; default: {' and '.join(BASELINES)})")
    parser.add_argument("--repeat", type=int, default=3, help="timed figures are the best of this many runs")
    parser.add_argument("--scaling-candles", type=int, default=500_000, help="candles per link of the scaling rows")
    parser.add_argument("--startup-runs", type=int, default=5, help="start-up figures are the median of this many")
    parser.add_argument("--startup-baseline", help="git revision measured beside this tree in the start-up rows")
    parser.add_argument("--sweep-candles", type=int, default=200_000, help="candles of the sweep row")
    parser.add_argument("--sweep-processes", type=int, default=os.cpu_count() or 1,
                        help="run-operation sweep --processes and the local Ray cluster's CPUs (default: cores)")
    parser.add_argument("--only", choices=SECTIONS, action="append")
    args = parser.parse_args()
    only = args.only or SECTIONS
    ensure_peers(only)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "peers" in only:
            peers(args.candles, tmp, args.repeat)
        if "overhead" in only:
            overhead(args.overhead_candles, tmp, args.repeat)
        if "orders" in only:
            resting_orders(args.orders_candles, tmp, args.repeat)
        if "multi" in only:
            multi_asset(args.multi_candles, tmp, args.repeat)
        if "blueprints" in only:
            blueprints(args.blueprint_candles, args.baseline or BASELINES, tmp, args.repeat)
        if "scaling" in only:
            scaling(args.scaling_candles, tmp)
        if "startup" in only:
            baseline = args.startup_baseline
            codes = {"this tree": REPO, **({baseline: baseline_checkout(baseline, tmp / "startup_baseline")}
                                           if baseline else {})}
            startup(args.startup_runs, 2.0, codes)
        if "sweep" in only:
            sweep_rows(args.sweep_candles, tmp, args.sweep_processes, args.repeat)
        if "memory" in only:
            memory(args.memory_candles, tmp)


if __name__ == "__main__":
    main()
