"""Simulated fills for backtests and paper trading: the same orders a venue takes, filled by stated
rules on closed candles (README, "How orders fill in backtests and paper trading").

Invariants: a market order fills in the call that sends it, at the reference price moved against
it by the slippage, with the taker fee, or never (one journaled but not filled, because the process
died in between, was never executed and settles as rejected); a resting order fills only on a
candle after the one it was placed on, by `fill_on` (identical in a columnar and a tick-by-tick
replay, which `next_event_row` keeps by naming every row on which an order could fill, trigger
or expire); of a position's protective orders (a stop and a take-profit) at most one fills per
candle, the stop when both were reached, unless finer candles tell which was reached first; a
trailing stop's peak (a sell; a buy's trough) starts at its reference price and is raised by a
candle's high only after that candle did not fill it (inside a candle, the order of its high and low
is unknown: its own high never tightens the stop within it), on every candle polled or passed
quietly (`passed_quietly`), so both replays see the same peaks. The market's rules (`market_rules`:
lot, tick, minimum order and cost) are applied by the account before an order gets here, exactly as
before an order goes to a venue: the simulator fills an order's quantity and prices as they are.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from backend.dtos import OrderSide, OrderStatus, OrderType, TimeInForce
from backend.dtos.execution import Price, trailing_trigger
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.ohlcv_provider import Candle
from backend.interfaces.order_gateway import IOrderGateway, OrderOutcome, OrderRequest
from backend.market_data.detail_candles import Intrabar
from backend.market_data.market_rules import NO_RULES, MarketRules
from backend.portfolio.fill_rules import FillRules

STOPS = (OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT)


@dataclass
class _Resting:
    request: OrderRequest
    triggered: bool = False  # a *_limit order whose trigger was reached: a limit now
    extreme: float = field(init=False)  # a trailing stop's peak (a sell) or trough (a buy) so far

    def __post_init__(self) -> None:
        self.extreme = self.request.reference_price

    def trigger_at(self, extreme: Price) -> Price:
        """A trailing stop's trigger at this peak (trough), or these."""
        request = self.request
        return trailing_trigger(request.side, extreme, request.trailing_offset, request.trailing_offset_pct)

    def trail(self, high: float, low: float) -> None:
        """A candle that did not fill the trailing stop moves its peak (trough) by its high (low)."""
        self.extreme = max(self.extreme, high) if self.request.side is OrderSide.SELL else min(self.extreme, low)


def _triggered_at(request: OrderRequest, opens: float, high: float, low: float) -> float | None:
    """Where a trigger order's trigger is reached on a candle (its open when it gaps through), or None.
    A sell stop and a buy take-profit wait for the price to fall to the trigger; the others to rise."""
    trigger = request.trigger_price
    assert trigger is not None
    falling = (request.order_type in STOPS) == (request.side is OrderSide.SELL)
    if falling:
        return opens if opens <= trigger else (trigger if low <= trigger else None)
    return opens if opens >= trigger else (trigger if high >= trigger else None)


class SimulatedGateway(IOrderGateway):
    def __init__(self, rules: FillRules, detail: Intrabar | None = None,
                 market_rules: Callable[[str], MarketRules] | None = None) -> None:
        """market_rules: the venue's rules per asset (a backtest's markets.json, a paper run's live
        markets), by which the account rounds and checks orders; None: no rules (NO_RULES)."""
        self.rules = rules
        self._market_rules = market_rules
        self._known_rules: dict[str, MarketRules] = {}
        self._slippage = rules.slippage_bps / 10_000
        self._detail = detail
        self._book: dict[str, _Resting] = {}  # open orders by client order id
        self._ended: dict[str, OrderOutcome] = {}  # what became of the orders that left the book

    def market_rules(self, asset: str) -> MarketRules:
        if self._market_rules is None:
            return NO_RULES
        if asset not in self._known_rules:
            self._known_rules[asset] = self._market_rules(asset)
        return self._known_rules[asset]

    # --- sizing and fees ---------------------------------------------------------------------------

    def sizing(self, asset: str, side: OrderSide, reference_price: float) -> tuple[float, float]:
        return self._taker_price(side, reference_price), self.rules.taker_fee_rate

    def maker_fee_rate(self, asset: str) -> float:
        return self.rules.maker_fee_rate

    def _taker_price(self, side: OrderSide, price: float) -> float:
        return price * (1 + self._slippage) if side is OrderSide.BUY else price * (1 - self._slippage)

    def _filled(self, request: OrderRequest, price: float, maker: bool) -> OrderOutcome:
        rate = self.rules.maker_fee_rate if maker else self.rules.taker_fee_rate
        outcome = OrderOutcome(OrderStatus.FILLED, request.quantity, price, request.quantity * price * rate)
        if request.resting:  # a market order is never looked up again: it was filled in the call that sent it
            self._end(request.client_order_id, outcome)
        return outcome

    def _end(self, client_order_id: str, outcome: OrderOutcome) -> OrderOutcome:
        self._book.pop(client_order_id, None)
        self._ended[client_order_id] = outcome
        return outcome

    # --- orders --------------------------------------------------------------------------------------

    def execute(self, request: OrderRequest) -> OrderOutcome:
        """A market order fills now; a resting one that would execute at once against the reference
        price (a marketable limit, a trigger already passed) fills now as a taker, a post-only one is
        rejected instead, an IOC one that would not expires; any other rests on the book."""
        reference = request.reference_price
        if request.order_type is OrderType.MARKET:
            return self._filled(request, self._taker_price(request.side, reference), maker=False)
        if request.order_type is OrderType.TRAILING_STOP:  # its trigger starts an offset away from the reference
            self._book[request.client_order_id] = _Resting(request)
            return OrderOutcome(OrderStatus.OPEN)
        if request.order_type.has_trigger:
            if _triggered_at(request, reference, reference, reference) is not None:
                if request.order_type.has_limit:  # triggered at once: a limit from now on
                    request = replace(request, order_type=OrderType.LIMIT, trigger_price=None)
                else:
                    return self._filled(request, self._taker_price(request.side, reference), maker=False)
            elif request.time_in_force is not TimeInForce.IOC:
                self._book[request.client_order_id] = _Resting(request)
                return OrderOutcome(OrderStatus.OPEN)
        limit = request.limit_price
        assert limit is not None
        crosses = reference <= limit if request.side is OrderSide.BUY else reference >= limit
        if crosses and request.post_only:
            return self._end(request.client_order_id, OrderOutcome(
                OrderStatus.REJECTED, reason="post only order: it would have executed at once"))
        if crosses:
            return self._filled(request, reference, maker=False)
        if request.time_in_force is TimeInForce.IOC:
            return self._end(request.client_order_id, OrderOutcome(
                OrderStatus.EXPIRED, reason="immediate or cancel: nothing executed at once"))
        self._book[request.client_order_id] = _Resting(request)
        return OrderOutcome(OrderStatus.OPEN)

    def settle(self, request: OrderRequest) -> OrderOutcome:
        ended = self._ended.get(request.client_order_id)
        if ended is not None:
            return ended
        if request.client_order_id in self._book:
            return OrderOutcome(OrderStatus.OPEN)
        # The candle's cursor was written before the order: that candle is never traded again,
        # so settling as never executed cannot lose a trade that a restart would make.
        return OrderOutcome(OrderStatus.REJECTED, reason="never executed: the daemon stopped between the "
                                                         "order's intent and its simulated fill")

    def cancel(self, request: OrderRequest, exchange_order_id: str | None) -> OrderOutcome:
        if request.client_order_id in self._book:
            return self._end(request.client_order_id, OrderOutcome(OrderStatus.CANCELED, reason="canceled"))
        return self.settle(request)

    def amend(self, request: OrderRequest, exchange_order_id: str | None, amended: OrderRequest) -> OrderOutcome:
        resting = self._book.get(request.client_order_id)
        if resting is None:
            return self.settle(request)
        resting.request = amended
        return OrderOutcome(OrderStatus.OPEN)

    def resume(self, orders: Sequence[tuple[OrderRequest, OrderOutcome]]) -> None:
        """A trailing stop's peak (trough) starts again from its reference price: it is not journaled."""
        for request, _booked in orders:
            if request.resting:
                self._book[request.client_order_id] = _Resting(request)

    # --- candles -------------------------------------------------------------------------------------

    def poll(self, orders: Sequence[tuple[OrderRequest, str | None]], symbol: str,
             candle: Candle) -> list[tuple[str, OrderOutcome]]:
        """The candle's fills and expiries of the book's orders of symbol placed before it."""
        changes: list[tuple[str, OrderOutcome]] = []
        protective_done = False
        for client_order_id, resting in self._due(symbol, candle.open_time):
            request = resting.request
            if request.expires_at is not None and candle.open_time >= request.expires_at:
                changes.append((client_order_id, self._end(client_order_id, OrderOutcome(
                    OrderStatus.EXPIRED, reason=f"good till {request.expires_at.isoformat()}"))))
                continue
            if request.protective:
                if protective_done:
                    continue
                protective_done = self._fill_first_protective(symbol, candle, changes)
                continue
            outcome = self._fill_on(resting, candle.open, candle.high, candle.low)
            if outcome is not None:
                changes.append((client_order_id, outcome))
        return changes

    def _due(self, symbol: str, open_time: datetime) -> list[tuple[str, _Resting]]:
        return [(cid, resting) for cid, resting in self._book.items()
                if resting.request.asset == symbol and (resting.request.placed_at is None
                                                        or resting.request.placed_at < open_time)]

    def _fill_on(self, resting: _Resting, opens: float, high: float, low: float) -> OrderOutcome | None:
        """The order's fill on one candle (or the finer candle of a detail series), if any."""
        request = resting.request
        if request.order_type is OrderType.TRAILING_STOP:
            return self._trail(resting, opens, high, low)
        if request.order_type.has_trigger and not resting.triggered:
            at = _triggered_at(request, opens, high, low)
            if at is None:
                return None
            if not request.order_type.has_limit:
                return self._filled(request, self._taker_price(request.side, at), maker=False)
            resting.triggered = True  # a limit from the next candle on (as Kraken's book takes it)
            return None
        limit = request.limit_price
        assert limit is not None
        through = self.rules.limit_fill == "through"
        if request.side is OrderSide.BUY:
            if opens <= limit:
                return self._filled(request, opens, maker=True)
            return self._filled(request, limit, maker=True) if (low < limit if through else low <= limit) else None
        if opens >= limit:
            return self._filled(request, opens, maker=True)
        return self._filled(request, limit, maker=True) if (high > limit if through else high >= limit) else None

    def _trail(self, resting: _Resting, opens: float, high: float, low: float) -> OrderOutcome | None:
        """A trailing stop on one candle: at the open when the candle opens past its trigger, else at
        the trigger when the candle's range reaches it (taker fee, slippage); else the candle moves
        its peak (trough)."""
        trigger = resting.trigger_at(resting.extreme)
        if resting.request.side is OrderSide.SELL:
            at = opens if opens <= trigger else (trigger if low <= trigger else None)
        else:
            at = opens if opens >= trigger else (trigger if high >= trigger else None)
        if at is None:
            resting.trail(high, low)
            return None
        return self._filled(resting.request, self._taker_price(resting.request.side, at), maker=False)

    def _fill_first_protective(self, symbol: str, candle: Candle, changes: list[tuple[str, OrderOutcome]]) -> bool:
        """Of symbol's protective orders, the one reached first on the candle fills (the stop when
        several were, unless the detail candles inside it tell); the account cancels the others."""
        protective = [(cid, r) for cid, r in self._due(symbol, candle.open_time) if r.request.protective]
        if not protective:
            return False
        protective.sort(key=lambda item: item[1].request.order_type not in STOPS)  # stops first
        steps: Sequence[tuple[float, float, float]] = [(candle.open, candle.high, candle.low)]
        reached = [item for item in protective if self._reachable(item[1], candle.open, candle.high, candle.low)]
        if len(reached) > 1 and self._detail is not None:
            inside = self._detail(candle.open_time)
            if inside is not None:
                steps = list(zip(inside[0].tolist(), inside[1].tolist(), inside[2].tolist(), strict=True))
        for first, high, low in steps:
            for client_order_id, resting in protective:
                outcome = self._fill_on(resting, first, high, low)
                if outcome is not None:
                    changes.append((client_order_id, outcome))
                    return True
        return False

    @staticmethod
    def _reachable(resting: _Resting, opens: float, high: float, low: float) -> bool:
        request = resting.request
        if request.order_type.has_trigger and not resting.triggered:
            return _triggered_at(request, opens, high, low) is not None
        limit = request.limit_price
        assert limit is not None
        return low <= limit if request.side is OrderSide.BUY else high >= limit

    # --- columnar replay -----------------------------------------------------------------------------

    def next_event_row(self, symbol: str, candles: CandleColumns, start: int) -> int:
        """The first row at or after start on which an open order of symbol could fill, trigger or
        expire (len(candles): none); naming one too early is safe, too late never happens."""
        rows = len(candles)
        first = rows
        for resting in self._book.values():
            request = resting.request
            if request.asset != symbol or start >= first:
                continue
            first = min(first, self._first_row(resting, candles, start, first))
        return first

    def passed_quietly(self, symbol: str, candles: CandleColumns, rows: range) -> None:
        """The quiet rows' highs (lows) move the trailing stops' peaks (troughs): none filled there."""
        quiet = slice(rows.start, rows.stop)
        for resting in self._book.values():
            request = resting.request
            if request.asset != symbol or request.order_type is not OrderType.TRAILING_STOP:
                continue
            due = _due_rows(request, candles.open_times[quiet])
            if due.any():
                resting.trail(float(candles.highs[quiet][due].max()), float(candles.lows[quiet][due].min()))

    @staticmethod
    def _first_row(resting: _Resting, candles: CandleColumns, start: int, stop: int) -> int:
        request = resting.request
        times = candles.open_times[start:stop]
        due = _due_rows(request, times)
        lows, highs = candles.lows[start:stop], candles.highs[start:stop]
        if request.order_type is OrderType.TRAILING_STOP:
            hit = _trailing_hits(resting, due, highs, lows)
        else:
            if request.order_type.has_trigger and not resting.triggered:
                price = request.trigger_price
                falling = (request.order_type in STOPS) == (request.side is OrderSide.SELL)
            else:
                price = request.limit_price
                falling = request.side is OrderSide.BUY
            hit = (lows <= price) if falling else (highs >= price)
        if request.expires_at is not None:
            hit |= times >= int(request.expires_at.timestamp())
        candidates = np.flatnonzero(due & hit)
        return start + int(candidates[0]) if len(candidates) else stop


def _due_rows(request: OrderRequest, open_times: np.ndarray) -> np.ndarray:
    """The rows opened after the candle the order was placed on (those it may fill on)."""
    if request.placed_at is None:
        return np.ones(len(open_times), dtype=bool)
    return open_times > int(request.placed_at.timestamp())


def _trailing_hits(resting: _Resting, due: np.ndarray, highs: np.ndarray, lows: np.ndarray) -> np.ndarray:
    """Per row, whether the trailing stop is reached there, its peak (trough) being the running
    maximum (minimum) of its peak now and the highs (lows) of the due rows before: exactly its
    peak when that row is polled, as long as no row before filled it."""
    sell = resting.request.side is OrderSide.SELL
    moves = np.where(due, highs, -np.inf) if sell else np.where(due, lows, np.inf)
    before = np.concatenate(([resting.extreme], moves[:-1]))
    extremes = np.maximum.accumulate(before) if sell else np.minimum.accumulate(before)
    triggers = resting.trigger_at(extremes)
    return (lows <= triggers) if sell else (highs >= triggers)
