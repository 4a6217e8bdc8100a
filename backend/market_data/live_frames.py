"""A live environment's closed candles of several symbols, handed on as frames: the candles of one
open time together, as a backtest of the same symbols hands them on (backend.interfaces.candle_window).

Invariants: every candle added is handed on exactly once, in open-time order per symbol. The
candles of one open time wait until every symbol has reached it (its source handled a candle of
that open time or a later one: a symbol without one there has a gap) and then go on together, in
the environment's symbol order; a frame still waiting `patience` seconds after its first candle
arrived goes on with the candles it has (a symbol whose candle comes later hands it on alone, as
a frame of its own). Frames go in open-time order: none is held back by a later one. With one
symbol every candle is its own frame, handed on as it arrives (a block of one row, as before).
"""

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

from backend.market_data.raw_tick import RawTick


class FrameAssembly:
    def __init__(self, symbols: Sequence[str], patience: float) -> None:
        self._order = {symbol: index for index, symbol in enumerate(symbols)}
        self._patience = patience
        self._waiting: dict[datetime, tuple[float, list[RawTick]]] = {}  # open time -> (first arrival, candles)

    def add(self, tick: RawTick) -> None:
        _, candles = self._waiting.setdefault(tick.timestamp, (time.monotonic(), []))
        candles.append(tick)

    def ready(self, reached: Mapping[str, datetime]) -> Iterator[list[RawTick]]:
        """The frames that can go on, oldest first, given where each symbol's source has got to
        (reached: the latest open time it handled, candle or gap; a symbol not in it has none yet)."""
        now = time.monotonic()
        for open_time in sorted(self._waiting):
            arrived, candles = self._waiting[open_time]
            complete = all(symbol in reached and reached[symbol] >= open_time for symbol in self._order)
            if not complete and now - arrived < self._patience:
                return  # a later frame waits for this one: it arrived later, for the same symbol
            del self._waiting[open_time]
            yield sorted(candles, key=lambda tick: self._order[tick.symbol])
