"""Backtest data files: rows per second of the reader and its peak memory as the file grows.

Generates minute candles (a seeded random walk, Kraken's number format) as a CSV file and the
same data as Parquet in a temporary directory, then measures in this one run:
- a plain `csv.reader` loop over the CSV (no parsing of the cells): the baseline, 1.00x;
- the check pass (`read_candle_file`: parse + every check, once per file), a replay of every
  candle as the backtest source iterates them (`CandleFile.blocks`: parse + check again, then
  row by row as Python values, once per environment) and both together, for the CSV and the
  Parquet file, as rows/s and as a ratio to the baseline;
- a replay by `BacktestSource.blocks`, a RawTick made of each row (as a row-by-row replay
  does), of the first `--tick-rows` rows;
- every case `--rounds` times, interleaved, keeping each case's best round;
- peak RSS (VmHWM, Linux) of a fresh process that checks and replays a file of 1M rows, then
  one of `--rows`: constant memory shows as the same figure.

    python bench/bench_csv.py [--rows 5000000] [--tick-rows 300000] [--rounds 3]
"""

import argparse
import csv
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

from backend.config.schema import BacktestEnvironment
from backend.market_data.backtest_source import BacktestSource
from backend.market_data.candle_file import CandleFile, read_candle_file
from backend.market_data.raw_tick import ticks_of

START = datetime(2020, 1, 1, tzinfo=UTC)
TIMEFRAME = "1m"
CHUNK = 200_000  # rows generated at a time
CHECK, REPLAY = "check pass (parse + every check)", "replay (parse + check + every candle)"


def write_csv(path: Path, rows: int) -> None:
    random = np.random.default_rng(7)
    close = 20_000.0
    with path.open("w") as handle:
        handle.write("timestamp,open,high,low,close,volume\n")
        for first in range(0, rows, CHUNK):
            count = min(CHUNK, rows - first)
            closes = np.maximum(close + np.cumsum(random.normal(0, 5, count)), 100).round(1)
            opens = np.concatenate(([close], closes[:-1]))
            highs = (np.maximum(opens, closes) + random.exponential(3, count)).round(1)
            lows = (np.minimum(opens, closes) - random.exponential(3, count)).round(1)
            volumes = random.exponential(2, count).round(8)
            times = np.datetime_as_string(
                np.datetime64("2020-01-01T00:00:00") + np.arange(first, first + count) * np.timedelta64(60, "s"),
            )
            handle.writelines(
                f"{t}Z,{o},{h},{lo},{c},{v}\n"
                for t, o, h, lo, c, v in zip(times.tolist(), opens.tolist(), highs.tolist(), lows.tolist(),
                                             closes.tolist(), volumes.tolist(), strict=True)
            )
            close = float(closes[-1])


def write_parquet(csv_path: Path, path: Path) -> None:
    """The same rows, typed (timestamps as timestamps), converted a block at a time."""
    reader = arrow_csv.open_csv(csv_path, convert_options=arrow_csv.ConvertOptions(
        column_types={"timestamp": pa.timestamp("s", "UTC")}))
    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def csv_reader_loop(path: Path) -> int:
    rows = 0
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for _ in reader:
            rows += 1
    return rows


def check_pass(path: Path) -> int:
    return len(read_candle_file(path, TIMEFRAME))


def replay(candles: CandleFile) -> int:
    """Every candle of a checked file as Python values, the way `ticks_of` gets them."""
    rows = 0
    for block in candles.blocks(range(len(candles))):
        for _ in zip(block.open_times.tolist(), block.opens.tolist(), block.highs.tolist(), block.lows.tolist(),
                     block.closes.tolist(), block.volumes.tolist(), block.missing_before.tolist(), strict=True):
            rows += 1
    return rows


def ticks(candles: CandleFile, rows: int) -> int:
    """The first `rows` candles of a checked file as a row-by-row replay gets them: a RawTick each."""
    end = datetime.fromtimestamp(START.timestamp() + rows * 60, UTC)
    environment = BacktestEnvironment(type="backtest", display_name="bench", data_file=candles.path,
                                      symbol="BTC/USD", timeframe=TIMEFRAME, start=START, end=end,
                                      starting_capital=1000, fee_rate=0)
    return sum(1 for block in BacktestSource(environment, candles).blocks(threading.Event()) for _ in ticks_of(block))


def rate(work: Callable[[], int]) -> float:
    started = time.perf_counter()
    rows = work()
    return rows / (time.perf_counter() - started)


def peak_rss_mb(path: Path) -> tuple[float, float]:
    """(peak RSS after imports, peak RSS after a check pass and a replay) of a fresh process, in MB."""
    finished = subprocess.run([sys.executable, __file__, "--measure-rss", str(path)],
                              capture_output=True, text=True, check=True)
    before, after = finished.stdout.split()
    return float(before), float(after)


def measure_rss(path: Path) -> None:
    before = _peak_rss_mb()
    replay(read_candle_file(path, TIMEFRAME))
    print(before, _peak_rss_mb())


def _peak_rss_mb() -> float:
    """VmHWM: unlike getrusage's ru_maxrss, not inherited from the parent across fork and exec."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--tick-rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3, help="each case is timed this often; the best is shown")
    parser.add_argument("--measure-rss", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_rss:
        measure_rss(args.measure_rss)
        return
    with tempfile.TemporaryDirectory() as folder:
        files: dict[str, dict[int, Path]] = {"CSV": {}, "Parquet": {}}
        for rows in sorted({1_000_000, args.rows}):
            files["CSV"][rows] = Path(folder, f"candles_{rows}.csv")
            write_csv(files["CSV"][rows], rows)
            files["Parquet"][rows] = files["CSV"][rows].with_suffix(".parquet")
            write_parquet(files["CSV"][rows], files["Parquet"][rows])
        big_csv, big_parquet = files["CSV"][args.rows], files["Parquet"][args.rows]
        print(f"{args.rows:,} rows of 1m candles: CSV {big_csv.stat().st_size / 1e6:.0f} MB, "
              f"Parquet {big_parquet.stat().st_size / 1e6:.0f} MB\n")
        tick_rows = min(args.tick_rows, args.rows)
        checked = {path: read_candle_file(path, TIMEFRAME) for path in (big_csv, big_parquet)}
        baseline_label = "csv.reader loop over the CSV (baseline)"
        work: dict[str, Callable[[], int]] = {baseline_label: lambda: csv_reader_loop(big_csv)}
        for kind, path in (("CSV", big_csv), ("Parquet", big_parquet)):
            work[f"{kind}: {CHECK}"] = lambda path=path: check_pass(path)
            work[f"{kind}: {REPLAY}"] = lambda path=path: replay(checked[path])
        work[f"CSV: BacktestSource.blocks, RawTick per row ({tick_rows:,} rows)"] = lambda: ticks(
            checked[big_csv], tick_rows)
        # Rounds interleave the cases, so a busy spell of the machine hits them all; best round kept.
        best = dict.fromkeys(work, 0.0)
        for _ in range(args.rounds):
            for label, run in work.items():
                best[label] = max(best[label], rate(run))
        table = list(best.items())
        for position, kind in ((3, "CSV"), (6, "Parquet")):
            check, replayed = best[f"{kind}: {CHECK}"], best[f"{kind}: {REPLAY}"]
            table.insert(position, (f"{kind}: both, as a one-environment backtest", 1 / (1 / check + 1 / replayed)))
        print(f"{'':62} {'rows/s':>12} {'x csv.reader':>13}")
        for label, rows_per_second in table:
            print(f"{label:62} {rows_per_second:12,.0f} {rows_per_second / best[baseline_label]:12.2f}x")
        print("\npeak RSS of a fresh process checking and replaying the file (after imports -> peak):")
        for kind, by_rows in files.items():
            figures = ", ".join(f"{rows:,} rows {before:.0f} -> {after:.0f} MB"
                                for rows, (before, after) in ((r, peak_rss_mb(p)) for r, p in by_rows.items()))
            print(f"  {kind:8} {figures}")
        extra_rows = args.rows - 1_000_000
        print(f"  (holding the rows, 7 values of 8 bytes each, would add {extra_rows * 56 / 1e6:.0f} MB "
              f"from the smaller file to the larger)")


if __name__ == "__main__":
    main()
