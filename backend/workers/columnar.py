"""Helpers for the columnar replay's gates (IWorker.next_active_row)."""

from collections.abc import Callable

import numpy as np


def first_row_where(test: Callable[[int, int], np.ndarray], start: int, stop: int, first_chunk: int = 64) -> int:
    """The first row in [start, stop) for which test is true (stop: none), where test(lo, hi)
    gives the bool array of rows [lo, hi). It is called on consecutive ranges from start on, each
    twice as long as the one before, until a row is found: a gate called on every active row
    then costs about as much as the rows up to its answer, not as the rest of the block. A test
    that carries state from range to range (a running peak) gets the ranges in order."""
    low, size = start, first_chunk
    while low < stop:
        high = min(low + size, stop)
        hits = np.flatnonzero(test(low, high))
        if len(hits):
            return low + int(hits[0])
        low, size = high, size * 2
    return stop
