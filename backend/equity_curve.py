"""The drawdown of an equity curve: one formula for every reader (the ledger, the drawdown
threat and its columnar gate, the performance metrics, the status server).

Invariant: the drawdown of an equity is (1 - equity / top) * 100 %, top being the curve's peak
up to and including that equity (so never negative), and 0.0 while the top is not positive. The
scalar `drawdown_pct`, its loop `deepest_drawdown` and the vector `drawdown_curve` give the same
floats (the same IEEE operations in the same order), so a columnar replay's bulk step agrees
with its ticks to the bit; `equities_holding` adds an account's equity up as `Ledger.equity()`
does, for the same reason.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np


def drawdown_pct(equity: float, peak: float) -> float:
    """The drawdown (%) of equity, peak being the curve's peak before it (or already with it)."""
    top = max(peak, equity)
    return (1 - equity / top) * 100 if top > 0 else 0.0


def deepest_drawdown(cash: float, quantity: float, closes: Iterable[float], peak: float,
                     deepest: float) -> tuple[float, float]:
    """The peak and the deepest drawdown after an account holding cash and quantity of one asset
    went through closes, given both before the first: `equities_holding` and `drawdown_pct` of
    each in turn, the same floats, inlined (a short stretch of a columnar replay: a call per
    close would cost as much as the rest of its candle)."""
    for close in closes:
        equity = cash + (0.0 + quantity * close)  # equities_holding(cash, quantity, close)
        if equity > peak:
            peak = equity
        drawdown = (1 - equity / peak) * 100 if peak > 0 else 0.0  # drawdown_pct(equity, peak)
        if drawdown > deepest:
            deepest = drawdown
    return peak, deepest


def drawdown_curve(equities: np.ndarray, peak: float) -> tuple[np.ndarray, float]:
    """`drawdown_pct` of each of consecutive equities, peak being the curve's before the first,
    and the peak after the last."""
    rows = len(equities)
    tops = np.maximum.accumulate(np.concatenate(([peak], equities)))[1:]
    drawdowns = np.zeros(rows)
    positive = tops > 0
    np.multiply(1 - np.divide(equities, tops, where=positive, out=np.ones(rows)), 100, where=positive, out=drawdowns)
    return drawdowns, float(tops[-1]) if rows else peak


@overload
def equities_holding(cash: float, quantity: float, closes: float) -> float: ...
@overload
def equities_holding(cash: float | np.ndarray, quantity: float | np.ndarray, closes: np.ndarray) -> np.ndarray: ...
def equities_holding(cash: float | np.ndarray, quantity: float | np.ndarray,
                     closes: float | np.ndarray) -> float | np.ndarray:
    """The equity of an account holding cash and quantity of one asset, at the close (or each;
    cash and quantity may be arrays of as many, one per close)."""
    return cash + (0.0 + quantity * closes)  # as `Ledger.equity()` adds it up


@dataclass(frozen=True, slots=True)
class EquityLine:
    """The equity of an account holding cash and quantity of one asset alone over rows of its
    candles (a quiet stretch keeps the holding): `equities_holding` at each row's close, told
    without computing them (a sweep's recorder computes a block's at once)."""

    cash: float
    quantity: float


def row_equities(equities: EquityLine | Sequence[float], closes: np.ndarray) -> Sequence[float]:
    """Each row's equity, given as a line over the rows' closes or as the equities themselves."""
    if isinstance(equities, EquityLine):
        return equities_holding(equities.cash, equities.quantity, closes).tolist()
    return equities
