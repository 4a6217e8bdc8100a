"""Indicators: incremental ones (one update per candle, O(1) memory beyond their window) and
functions of a window of candles a worker reads from its run's history."""

import math
from collections import deque
from collections.abc import Collection, Hashable, MutableMapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np


class Ema:
    """Exponential moving average, seeded with the simple average of the first `period` values."""

    def __init__(self, period: int) -> None:
        self.period = period
        self._alpha = 2 / (period + 1)
        self._seed: list[float] = []
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        if self.value is None:
            self._seed.append(x)
            if len(self._seed) == self.period:
                self.value = sum(self._seed) / self.period
                self._seed.clear()
        else:
            self.value = self._alpha * x + (1 - self._alpha) * self.value
        return self.value

    def update_many(self, xs: Sequence[float]) -> list[float | None]:
        """`[self.update(x) for x in xs]`, the same floats, at a fraction of the cost."""
        values: list[float | None] = []
        index, count, value = 0, len(xs), self.value
        while value is None and index < count:
            value = self.update(xs[index])
            values.append(value)
            index += 1
        if value is not None and index < count:
            alpha, keep, append = self._alpha, 1 - self._alpha, values.append
            for x in xs[index:]:
                value = alpha * x + keep * value
                append(value)
            self.value = value
        return values


    def update_shared(self, xs: Sequence[float], memo: MutableMapping[Hashable, Any],
                      series: Hashable) -> list[float | None]:
        """`update_many(xs)`, xs being values of a block that several runs replay, named by series
        (which column, which rows: `("close", start, stop)`): looked up in memo (the block's
        `derived`) by the series, the period and the state before them, and computed there by the
        first run that gets there (an EMA of the same period in the same state over the same values
        is the same floats). The list is shared: read it, never change it."""
        key = ("ema", series, self.period, self.value, tuple(self._seed))
        found = memo.get(key)
        if found is None:
            values = self.update_many(xs)
            memo[key] = (values, self.value, tuple(self._seed))
            return values
        values, self.value, seed = found
        self._seed = list(seed)
        return values


class WilderAtr:
    """Average true range with Wilder's smoothing, seeded with the mean of the first `period`."""

    def __init__(self, period: int) -> None:
        self.period = period
        self._prev_close: float | None = None
        self._seed: list[float] = []
        self.value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        if self._prev_close is None:
            true_range = high - low
        else:
            true_range = max(high - low, abs(high - self._prev_close), abs(low - self._prev_close))
        self._prev_close = close
        if self.value is None:
            self._seed.append(true_range)
            if len(self._seed) == self.period:
                self.value = sum(self._seed) / self.period
        else:
            self.value = (self.value * (self.period - 1) + true_range) / self.period
        return self.value

    def update_many(self, highs: np.ndarray, lows: np.ndarray, closes: np.ndarray) -> list[float | None]:
        """`[self.update(h, l, c) for h, l, c in zip(highs, lows, closes)]` (float64 arrays of
        equal length), the same floats, at a fraction of the cost."""
        values: list[float | None] = []
        index, count, value = 0, len(closes), self.value
        while value is None and index < count:  # seeding: rare, and `update` keeps its list
            value = self.update(float(highs[index]), float(lows[index]), float(closes[index]))
            values.append(value)
            index += 1
        if value is None or index == count:
            return values
        # The true ranges at once: the same subtractions and abs, and each row's largest of the
        # same three floats (equal ones are the same float: a price difference is never -0.0).
        assert self._prev_close is not None, "a value is only set once a candle was seen"
        highs, lows = highs[index:], lows[index:]
        previous = np.concatenate(([self._prev_close], closes[index:-1]))
        true_ranges = np.maximum(highs - lows, np.maximum(np.abs(highs - previous), np.abs(lows - previous)))
        period, keep, append = self.period, self.period - 1, values.append
        for true_range in true_ranges.tolist():
            value = (value * keep + true_range) / period
            append(value)
        self.value, self._prev_close = value, float(closes[-1])
        return values


def return_volatility_pct(closes: Sequence[float]) -> float:
    """Sample standard deviation of the close-to-close returns of closes (at least 3), in percent."""
    return volatility_of_returns_pct([close / previous - 1 for previous, close in pairwise(closes)])


def volatility_of_returns_pct(returns: Collection[float]) -> float:
    """Sample standard deviation of returns (at least 2, oldest first), in percent."""
    count = len(returns)
    mean = sum(returns) / count
    variance = sum([(r - mean) ** 2 for r in returns]) / (count - 1)  # a list: faster than a generator, same sum
    return math.sqrt(variance) * 100


class ReturnVolatility:
    """Sample standard deviation of the last `window` close-to-close returns, in percent."""

    def __init__(self, window: int) -> None:
        self._closes: deque[float] = deque(maxlen=window + 1)

    def update(self, close: float) -> float | None:
        self._closes.append(close)
        if len(self._closes) < (self._closes.maxlen or 0):
            return None
        return return_volatility_pct(self._closes)
