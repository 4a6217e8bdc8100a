"""The benchmark's candles: the shipped hourly sample, or a long series made from it.

A long series repeats the sample forwards, then backwards in time (each candle's open and close
swapped), and so on: prices stay those of real candles, join without a jump at every seam, and
the series has as many crossings as real data does.
"""

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "kraken_xbtusd_1h_2023q1.csv"
Row = tuple[float, float, float, float, float]  # open, high, low, close, volume


def sample_rows() -> tuple[datetime, list[Row]]:
    with SAMPLE.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    first = datetime.fromisoformat(records[0]["timestamp"])
    rows = [(float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"]), float(r["volume"]))
            for r in records]
    return first, rows


def mirrored(rows: list[Row], count: int) -> list[Row]:
    backwards = [(close, high, low, open_, volume) for open_, high, low, close, volume in reversed(rows)]
    series: list[Row] = []
    while len(series) < count:
        series += rows if len(series) // len(rows) % 2 == 0 else backwards
    return series[:count]


def write_csv(path: Path, first: datetime, rows: list[Row]) -> Path:
    """An hourly candle CSV of rows, from first on."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "open", "high", "low", "close", "volume"])
        for index, (open_, high, low, close, volume) in enumerate(rows):
            moment = (first + timedelta(hours=index)).astimezone(UTC)
            writer.writerow([moment.strftime("%Y-%m-%dT%H:%M:%SZ"), repr(open_), repr(high), repr(low), repr(close),
                             repr(volume)])
    return path
