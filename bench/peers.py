"""The same EMA(12)/EMA(26) crossover in backtesting.py and backtrader, on the same candles.

Semantics matched to opdaemon's `ema_cross` blueprint so that the trades are the same, not just
similar: long only, always in or out; a cross is the fast EMA below the slow one on the previous
candle and above it on this one (and the reverse); orders fill at the close of the candle that
signalled (backtesting.py `trade_on_close`, backtrader cheat-on-close); buys spend all the cash,
no fee, no slippage. The EMAs are SMA-seeded, as opdaemon's: backtesting.py gets them from
`self.I` over opdaemon's own indicator (computed once before the loop, as backtesting.py's
indicators are), backtrader computes its built-in EMA (the same recursion). backtesting.py trades
whole units only, so it runs as `FractionalBacktest` with a unit of 1e-12 BTC (the cash left over
is below a millionth of a cent). Final equity is cash plus the open position at the last close;
fills count entries and exits.

Each function returns (seconds of the run, fills, final equity); loading the DataFrame is not timed.
"""

import math
import warnings

import numpy as np
import pandas as pd

from backend.workers.indicators import Ema

FAST, SLOW, CASH = 12, 26, 10_000.0


def frame(first: pd.Timestamp, rows: list[tuple[float, float, float, float, float]]) -> pd.DataFrame:
    index = pd.date_range(first.tz_localize(None) if first.tzinfo else first, periods=len(rows), freq="h")
    return pd.DataFrame(rows, columns=["Open", "High", "Low", "Close", "Volume"], index=index)


def all_in(cash: float, price: float) -> float:
    """opdaemon's all-in buy without a fee: the most the cash pays for at price, never more."""
    size = cash / price
    while size > 0 and size * price > cash:
        size = math.nextafter(size, 0.0)
    return size


def ema_series(closes: np.ndarray, period: int) -> np.ndarray:
    ema = Ema(period)
    return np.array([np.nan if (value := ema.update(float(close))) is None else value for close in closes])


def run_backtesting(data: pd.DataFrame) -> tuple[float, int, float]:
    import time

    import backtesting.backtesting
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest, crossover

    # No progress bar (when tqdm is installed): it writes to the table's terminal and costs time.
    backtesting.backtesting._tqdm = lambda sequence, **_: sequence  # type: ignore[attr-defined]

    closes = data.Close.to_numpy()

    class EmaCross(Strategy):
        def init(self) -> None:
            self.fast = self.I(ema_series, closes, FAST)
            self.slow = self.I(ema_series, closes, SLOW)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                if not self.position:
                    self.buy()
            elif crossover(self.slow, self.fast) and self.position:
                self.position.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backtest = FractionalBacktest(data, EmaCross, cash=CASH, commission=0, trade_on_close=True,
                                      fractional_unit=1e-12, finalize_trades=False)
        started = time.perf_counter()
        stats = backtest.run()
        seconds = time.perf_counter() - started
    open_trades = len(stats._strategy.trades)
    return seconds, 2 * len(stats["_trades"]) + open_trades, float(stats["Equity Final [$]"])


def run_backtrader(data: pd.DataFrame) -> tuple[float, int, float]:
    import time

    import backtrader as bt

    class EmaCross(bt.Strategy):
        def __init__(self) -> None:
            self.fast = bt.ind.EMA(self.data.close, period=FAST)
            self.slow = bt.ind.EMA(self.data.close, period=SLOW)
            self.fills = 0

        def notify_order(self, order: bt.Order) -> None:
            self.fills += order.status == order.Completed

        def next(self) -> None:
            fast, slow = self.fast, self.slow
            if fast[-1] < slow[-1] and fast[0] > slow[0]:
                if not self.position:
                    self.buy(size=all_in(self.broker.getcash(), self.data.close[0]))
            elif fast[-1] > slow[-1] and fast[0] < slow[0] and self.position:
                self.close()

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=data))
    cerebro.addstrategy(EmaCross)
    cerebro.broker.setcash(CASH)
    cerebro.broker.set_coc(True)
    started = time.perf_counter()
    (strategy,) = cerebro.run()
    seconds = time.perf_counter() - started
    return seconds, strategy.fills, float(cerebro.broker.getvalue())
