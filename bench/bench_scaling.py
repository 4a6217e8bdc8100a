"""Backtest throughput over processes: N links of the shipped DCA blueprint on one generated
hourly CSV, run by the real CLI (`run-operation OP --processes P`), for N = 1..2C links on a
machine with C cores, each case's throughput (candles x links / wall second) as a ratio of the
one-link, one-process case measured in the same run. The issue's target: N links over C
processes reach at least 0.8 x min(N, C) x the single run.

    python bench/bench_scaling.py [--candles 500000]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.daemon import write_hourly_csv  # noqa: E402 (after the path is set)


def write_operation(root: Path, links: int, data_file: Path, candles: int) -> Path:
    config = root / "config"
    for folder in ("operations", "strategies", "environments"):
        (config / folder).mkdir(parents=True, exist_ok=True)
    environment = {
        "type": "backtest", "display_name": "generated", "data_file": str(data_file), "symbol": "BTC/USD",
        "timeframe": "1h", "start": "2024-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z",
        "starting_capital": 10_000, "fee_rate": 0.001,
    }
    (config / "environments" / "bt.yaml").write_text(yaml.safe_dump(environment))
    blueprint = yaml.safe_load((REPO / "config" / "strategies" / "smart_dca_btc.yaml").read_text())
    for index in range(links):
        (config / "strategies" / f"dca_{index}.yaml").write_text(yaml.safe_dump(blueprint))
    operation = {
        "display_name": f"{links} links", "strategy_links": [
            {"strategy_blueprint_id": f"dca_{index}", "execution_environment_id": "bt", "is_active": True}
            for index in range(links)
        ],
    }
    path = config / "operations" / f"links_{links}.yaml"
    path.write_text(yaml.safe_dump(operation))
    return path


def timed(operation: Path, processes: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "services.cli", str(operation), "--processes", str(processes),
                    "--log-level", "error"], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - started


def scaling(candles: int, root: Path) -> None:
    """Print the table: N links over 1 and min(N, cores) processes, against one link in one process."""
    cores = os.cpu_count() or 1
    data = write_hourly_csv(root / "candles.csv", candles)
    single = timed(write_operation(root, 1, data, candles), 1)
    base_rate = candles / single
    print(f"\nScaling: N links of smart DCA, {candles} hourly candles each, {cores} cores; one link in one "
          f"process: {base_rate:,.0f} candles/s ({single:.2f} s, start-up included)")
    print(f"{'links':>6}{'processes':>11}{'seconds':>10}{'candles/s':>12}{'x one run':>11}{'target':>9}")
    for links in sorted({1, 2, cores, 2 * cores}):
        operation = write_operation(root, links, data, candles)
        for processes in sorted({1, min(links, cores)}):
            seconds = timed(operation, processes)
            ratio = links * candles / seconds / base_rate
            target = 0.8 * min(links, processes)
            print(f"{links:>6}{processes:>11}{seconds:>10.2f}{links * candles / seconds:>12,.0f}"
                  f"{ratio:>10.2f}x{target:>8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candles", type=int, default=500_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="opdaemon-scaling-"))
    try:
        scaling(args.candles, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
