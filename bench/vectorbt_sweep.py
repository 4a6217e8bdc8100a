"""The EMA-cross sweep in vectorbt, run as a process of its own: `bench_sweep.py` times the whole
process (imports, the CSV read, numba's compilation included: "cold") and this script times its
second sweep call ("warm": everything compiled), then prints one JSON object.

    python bench/vectorbt_sweep.py DATA.csv --fast 4 6 ... --slow 18 26 ...

Semantics matched to opdaemon's `ema_cross` blueprint (see bench/peers.py): SMA-seeded EMAs of
the close (a numba kernel written with vectorbt's IndicatorFactory, the same floats as opdaemon's
`Ema`), one column per (fast, slow) pair with fast < slow, broadcast; a buy when the fast EMA is
below the slow one on the previous candle and above on this one, a sell on the reverse; fills at
the signalling candle's close with all the cash, no fee (`Portfolio.from_signals`, size inf).
"""

import argparse
import json
import time

started = time.perf_counter()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import vectorbt as vbt  # noqa: E402
from numba import njit  # noqa: E402

CASH = 10_000.0


@njit(cache=False)
def sma_seeded_ema_nb(close: np.ndarray, period: int) -> np.ndarray:
    """opdaemon's Ema over each column: the mean of the first `period` closes, then
    alpha * x + (1 - alpha) * previous (NaN while warming up)."""
    out = np.full(close.shape, np.nan)
    alpha = 2 / (period + 1)
    keep = 1 - alpha
    for column in range(close.shape[1]):
        if close.shape[0] < period:
            continue
        total = 0.0
        for row in range(period):
            total += close[row, column]
        value = total / period
        out[period - 1, column] = value
        for row in range(period, close.shape[0]):
            value = alpha * close[row, column] + keep * value
            out[row, column] = value
    return out


SeededEma = vbt.IndicatorFactory(input_names=["close"], param_names=["period"], output_names=["ema"]) \
    .from_apply_func(sma_seeded_ema_nb)


def sweep(close: pd.Series, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Every pair at once: fills and final equity per pair, in pairs' order."""
    fast = SeededEma.run(close, [fast for fast, _ in pairs], short_name="fast").ema.to_numpy()
    slow = SeededEma.run(close, [slow for _, slow in pairs], short_name="slow").ema.to_numpy()
    previous_fast, previous_slow = np.roll(fast, 1, axis=0), np.roll(slow, 1, axis=0)
    previous_fast[0] = previous_slow[0] = np.nan  # NaN compares false: no cross on the first candle
    entries = (previous_fast < previous_slow) & (fast > slow)
    exits = (previous_fast > previous_slow) & (fast < slow)
    columns = pd.MultiIndex.from_tuples(pairs, names=["fast", "slow"])
    portfolio = vbt.Portfolio.from_signals(
        close, pd.DataFrame(entries, index=close.index, columns=columns),
        pd.DataFrame(exits, index=close.index, columns=columns),
        size=np.inf, init_cash=CASH, fees=0.0, freq="1h")
    return portfolio.orders.count().to_numpy(), portfolio.final_value().to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--fast", type=int, nargs="+", required=True)
    parser.add_argument("--slow", type=int, nargs="+", required=True)
    args = parser.parse_args()
    close = pd.read_csv(args.data, index_col="timestamp", parse_dates=True)["close"]
    pairs = [(fast, slow) for fast in args.fast for slow in args.slow if fast < slow]
    first = time.perf_counter()
    sweep(close, pairs)  # numba compiles here
    first_end = time.perf_counter()
    warm = time.perf_counter()
    fills, equities = sweep(close, pairs)
    warm_seconds = time.perf_counter() - warm
    print(json.dumps({
        "first_call_seconds": first_end - first, "first_call_end_seconds": first_end - started,
        "warm_seconds": warm_seconds,
        "in_process_seconds": time.perf_counter() - started,
        "pairs": {f"{fast}/{slow}": [int(count), float(equity)]
                  for (fast, slow), count, equity in zip(pairs, fills, equities, strict=True)},
    }))


if __name__ == "__main__":
    main()
