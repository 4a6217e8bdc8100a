"""The files `run-operation new-plugin` writes, per worker category: a worker module and its test
(string.Template texts: `$name` the plugin's module name, `$class_name` its class), and the
workforce of the blueprint that uses it (`PLUGIN` marks the new worker's place).

Invariant: every worker implements the columnar contract (IWorker) by its safe default, which
holds whatever `process` does: the context worker is a CandleStepWorker (one `step` for both
replays); an opportunity or threat worker keeps IWorker's default `next_active_row`, every row,
so each candle is a tick on which `process` runs as it would tick by tick; a planner or an
executor declares `acts_only_on_signals` (it only reacts to the signals and plans of the tick).
Every test passes on the worker as written.
"""

from typing import Any

PLUGIN = "PLUGIN"  # in a WORKFORCE: the new worker, with its default params

_HOW_TO_RUN_TESTS = "(from the folder above plugins/: PYTHONPATH=. python -m pytest tests/)"

_GATE_NOTE = '''Columnar replay (backtests): IWorker's default `next_active_row` names every row, the safe
default: every candle is a tick on which `process` runs, as tick by tick, so the contract holds
whatever `process` does. For faster backtests define `next_active_row` to return the first row at
or after `start` where `process` could act, from the block's columns (`candles.closes` ...; see
backend/workers/ for examples), and keep the test that compares both replays passing.'''

_SIGNALS_NOTE = '''Columnar replay (backtests): `acts_only_on_signals = True` says it acts only on what the
other workers write on the tick (their signals and plans): it runs on the rows they name, as tick
by tick, and no other.'''

OPPORTUNITY = f'''"""$name: a buy signal when the close breaks above the highest high of the previous `lookback`
candles, with a stop `stop_pct` below the close.

Written by `run-operation new-plugin $name --category opportunity`: change `process` and the
params to your idea; tests/test_$name.py checks it on a few candles.

{_GATE_NOTE}
"""

from backend.dtos import OpportunitySignalDTO, OrderSide
from backend.interfaces import IWorker, WorkerCategory, WorkerParams, since_last_gap
from pydantic import Field


class ${{class_name}}Params(WorkerParams):
    lookback: int = Field(default=24, ge=1)  # candles whose highest high the close must clear
    stop_pct: float = Field(default=2.0, gt=0, lt=100)  # the signal's stop, below the close

    def history_needed(self) -> int:
        return self.lookback + 1  # the previous `lookback` candles and the current one


class $class_name(IWorker):
    """A buy signal on a close above the highest high of the previous `lookback` candles."""

    category = WorkerCategory.OPPORTUNITY
    Params = ${{class_name}}Params
    produces = (OpportunitySignalDTO,)
    columnar = True
    params: ${{class_name}}Params

    def process(self, asset: str) -> None:
        window = since_last_gap(self.ohlcv.history(asset, self.params.lookback + 1))
        if len(window) <= self.params.lookback:
            return  # warming up, or too soon after a hole in the data
        *previous, current = window
        ceiling = max(candle.high for candle in previous)
        if current.close <= ceiling:
            return
        self.context.set_result_dto(asset, OpportunitySignalDTO(
            side=OrderSide.BUY,
            reason=f"close {{current.close:.2f}} above the {{self.params.lookback}}-candle high {{ceiling:.2f}}",
            stop_price=current.close * (1 - self.params.stop_pct / 100),
        ))

'''

OPPORTUNITY_TEST = f'''"""Tests of plugins/$name.py {_HOW_TO_RUN_TESTS}."""

from pathlib import Path

import pytest
from backend.dtos import OpportunitySignalDTO
from services.plugin_testing import Replay, assert_same_trades, candles_from_closes, dtos_by_tick, sample_candles

from plugins.$name import $class_name

BLUEPRINT = Path(__file__).resolve().parents[1] / "config" / "strategies" / "$name.yaml"


def test_it_signals_each_close_above_the_recent_high():
    # Each candle opens at the close before it: the highs are 100, 101, 101, 102, 102, 104.
    candles = candles_from_closes([100, 101, 100, 102, 101, 104])
    ticks = dtos_by_tick([($class_name, {{"lookback": 3, "stop_pct": 2}})], candles)
    signals = {{row: tick[OpportunitySignalDTO] for row, tick in enumerate(ticks) if OpportunitySignalDTO in tick}}
    assert list(signals) == [3, 5]  # 102 clears 101, 101 does not clear 102, 104 does
    assert signals[5].stop_price == pytest.approx(104 * 0.98)


def test_its_blueprint_trades_the_same_replayed_columnar_as_tick_by_tick():
    replay = assert_same_trades(lambda: Replay(blueprint_file=BLUEPRINT), sample_candles(), sizes=[1, 7, 500])
    assert replay.fills  # the bundled sample has breakouts: the blueprint trades
'''

CONTEXT = '''"""$name: the mean close of the last `period` candles and the close's distance from it, as a
DTO of the plugin's own (${class_name}DTO) that a later worker reads with
`self._optional(asset, ${class_name}DTO)` (declare it in that worker's `requires` or `optional`).

Written by `run-operation new-plugin $name --category context`: change `step`, the DTO and the
params to your indicator; tests/test_$name.py checks it on a few candles.

Columnar replay (backtests): a CandleStepWorker runs the same `step` on the tick's candle and on
every row of a block, the safe default: both replays give the same DTOs and leave the same state,
whatever `step` computes. A faster, vectorised `prepare_block` (see
backend/workers/context/ema_detector.py) must keep that: the test compares them.
"""

from collections import deque

from backend.dtos import DTO
from backend.interfaces import Candle, CandleStepWorker, WorkerParams, WorkerServices
from pydantic import Field


class ${class_name}DTO(DTO):
    period: int
    average: float | None  # the mean close of the last `period` candles; None while warming up
    distance_pct: float | None  # how far the close is above (+) or below (-) it, in percent


class ${class_name}Params(WorkerParams):
    period: int = Field(default=20, ge=1)

    def history_needed(self) -> int:
        return self.period  # a live start replays this many candles first: the average is warm


class $class_name(CandleStepWorker):
    """The mean close of the last `period` candles (none across a hole in the data)."""

    Params = ${class_name}Params
    produces = (${class_name}DTO,)
    params: ${class_name}Params

    def __init__(self, params: ${class_name}Params, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._closes: dict[str, deque[float]] = {}  # per asset, the last `period` closes

    def step(self, asset: str, candle: Candle) -> ${class_name}DTO:
        """One candle: the state brought forward to it, and its DTO."""
        closes = self._closes.setdefault(asset, deque(maxlen=self.params.period))
        if candle.missing_before:
            closes.clear()  # no average across a hole in the data
        closes.append(candle.close)
        if len(closes) < self.params.period:
            return ${class_name}DTO(period=self.params.period, average=None, distance_pct=None)
        average = sum(closes) / self.params.period
        return ${class_name}DTO(period=self.params.period, average=average,
                                distance_pct=(candle.close / average - 1) * 100)
'''

CONTEXT_TEST = f'''"""Tests of plugins/$name.py {_HOW_TO_RUN_TESTS}."""

import pytest
from services.plugin_testing import assert_same_context, candles_from_closes, dtos_by_tick, sample_candles

from plugins.$name import $class_name, ${{class_name}}DTO


def test_it_averages_the_last_closes_once_it_has_seen_enough():
    ticks = dtos_by_tick([($class_name, {{"period": 3}})], candles_from_closes([1, 2, 3, 4, 8]))
    found = [tick[${{class_name}}DTO] for tick in ticks]
    assert [dto.average for dto in found] == [None, None, 2, 3, 5]
    assert found[4].distance_pct == pytest.approx(60)  # 8 is 60 % above 5


def test_its_columns_are_the_dtos_it_writes_tick_by_tick():
    assert_same_context([($class_name, {{"period": 20}})], sample_candles(), sizes=[1, 7, 500])
'''

THREAT = f'''"""$name: no new entry on a wild candle, one whose range (high - low) is more than
`max_range_pct` of its close (a ThreatSignalDTO asking BLOCK_ENTRIES).

Written by `run-operation new-plugin $name --category threat`: change `process` and the params to
your rule; tests/test_$name.py checks it on a few candles. A threat only restrains: it blocks
entries, or asks EXIT_POSITIONS to sell what is held (see backend.dtos.ThreatAction).

{_GATE_NOTE}
"""

from backend.dtos import ThreatAction, ThreatSignalDTO
from backend.interfaces import IWorker, WorkerCategory, WorkerParams
from pydantic import Field


class ${{class_name}}Params(WorkerParams):
    max_range_pct: float = Field(default=3.0, gt=0)  # a wider candle, relative to its close, blocks entries


class $class_name(IWorker):
    """BLOCK_ENTRIES on a candle wider than `max_range_pct` of its close."""

    category = WorkerCategory.THREAT
    Params = ${{class_name}}Params
    produces = (ThreatSignalDTO,)
    columnar = True
    params: ${{class_name}}Params

    def process(self, asset: str) -> None:
        candle = self._base(asset)
        range_pct = (candle.high - candle.low) / candle.close * 100
        if range_pct > self.params.max_range_pct:
            self.context.set_result_dto(asset, ThreatSignalDTO(
                action=ThreatAction.BLOCK_ENTRIES, reason=f"candle range {{range_pct:.2f}}% of the close",
            ))

'''

THREAT_TEST = f'''"""Tests of plugins/$name.py {_HOW_TO_RUN_TESTS}."""

from pathlib import Path

from backend.dtos import ThreatAction, ThreatSignalDTO
from services.plugin_testing import Replay, assert_same_trades, candles_from_closes, dtos_by_tick, sample_candles

from plugins.$name import $class_name

BLUEPRINT = Path(__file__).resolve().parents[1] / "config" / "strategies" / "$name.yaml"


def test_it_blocks_entries_on_a_wild_candle_only():
    # Each candle opens at the close before it: ranges of 0, 0.99, 4.7 and 0.95 % of the close.
    ticks = dtos_by_tick([($class_name, {{"max_range_pct": 3}})], candles_from_closes([100, 101, 106, 105]))
    threats = {{row: tick[ThreatSignalDTO] for row, tick in enumerate(ticks) if ThreatSignalDTO in tick}}
    assert list(threats) == [2]
    assert threats[2].action is ThreatAction.BLOCK_ENTRIES


def test_its_blueprint_trades_the_same_replayed_columnar_as_tick_by_tick():
    replay = assert_same_trades(lambda: Replay(blueprint_file=BLUEPRINT), sample_candles(), sizes=[1, 7, 500])
    assert replay.fills
'''

PLANNING = f'''"""$name: on a buy signal while flat (and no threat raised), buys with `buy_pct` of the cash; on a
sell signal, or a threat asking EXIT_POSITIONS, while holding, sells the whole position.

Written by `run-operation new-plugin $name --category planning`: change `process` and the params
to your sizing; tests/test_$name.py checks it on the bundled sample.

{_SIGNALS_NOTE}
"""

from backend.dtos import (
    OpportunitySignalDTO,
    OrderSide,
    ThreatAction,
    ThreatSignalDTO,
    TradePlanDTO,
)
from backend.interfaces import IWorker, WorkerCategory, WorkerParams
from pydantic import Field


class ${{class_name}}Params(WorkerParams):
    buy_pct: float = Field(default=50.0, gt=0, le=100)  # of the cash, on each buy signal while flat


class $class_name(IWorker):
    """Buys with `buy_pct` of the cash on a buy signal while flat; sells everything on a sell signal
    or an exit threat."""

    category = WorkerCategory.PLANNING
    Params = ${{class_name}}Params
    optional = (OpportunitySignalDTO, ThreatSignalDTO)
    produces = (TradePlanDTO,)
    columnar = True
    acts_only_on_signals = True
    params: ${{class_name}}Params

    def process(self, asset: str) -> None:
        opportunity = self._optional(asset, OpportunitySignalDTO)
        threat = self._optional(asset, ThreatSignalDTO)
        base = self._base(asset)
        portfolio = base.portfolio
        if portfolio.position_qty > 0:
            exit_asked = threat is not None and threat.action is ThreatAction.EXIT_POSITIONS
            if exit_asked or (opportunity is not None and opportunity.side is OrderSide.SELL):
                reason = threat.reason if exit_asked and threat is not None else "sell signal"
                self.context.set_result_dto(asset, TradePlanDTO(
                    side=OrderSide.SELL, quantity=portfolio.position_qty, reason=reason))
        elif opportunity is not None and opportunity.side is OrderSide.BUY and threat is None and portfolio.cash > 0:
            self.context.set_result_dto(asset, TradePlanDTO(
                side=OrderSide.BUY, quantity=portfolio.cash * self.params.buy_pct / 100 / base.close,
                reason=opportunity.reason))

'''

PLANNING_TEST = f'''"""Tests of plugins/$name.py {_HOW_TO_RUN_TESTS}."""

from pathlib import Path

import pytest
from services.plugin_testing import Replay, assert_same_trades, sample_candles

BLUEPRINT = Path(__file__).resolve().parents[1] / "config" / "strategies" / "$name.yaml"


def test_it_buys_with_half_the_cash_and_sells_everything():
    replay = Replay(blueprint_file=BLUEPRINT, fee_rate=0).by_ticks(sample_candles())
    buys = [fill for fill in replay.fills if fill.side.value == "buy"]
    sells = [fill for fill in replay.fills if fill.side.value == "sell"]
    assert buys and sells
    assert buys[0].quantity * buys[0].price == pytest.approx(10_000 * 0.5)  # half the starting cash
    assert sells[0].quantity == pytest.approx(buys[0].quantity)  # the whole position


def test_its_blueprint_trades_the_same_replayed_columnar_as_tick_by_tick():
    assert_same_trades(lambda: Replay(blueprint_file=BLUEPRINT), sample_candles(), sizes=[1, 7, 500])
'''

EXECUTION = f'''"""$name: turns the tick's trade plan into a market order at the close, sent to the run's
broker (simulated fills in a backtest or paper trading, the exchange where live orders are allowed).

Written by `run-operation new-plugin $name --category execution`: change `process` to your order
handling; tests/test_$name.py checks it on the bundled sample.

{_SIGNALS_NOTE}
"""

from backend.dtos import FillDTO, OrderDTO, TradePlanDTO
from backend.interfaces import IWorker, WorkerCategory


class $class_name(IWorker):
    """A market order at the close for the tick's trade plan."""

    category = WorkerCategory.EXECUTION
    optional = (TradePlanDTO,)
    produces = (FillDTO,)
    columnar = True
    acts_only_on_signals = True

    def process(self, asset: str) -> None:
        plan = self._optional(asset, TradePlanDTO)
        if plan is None:
            return
        base = self._base(asset)
        order = OrderDTO(asset=asset, side=plan.side, quantity=plan.quantity, reference_price=base.close,
                         reason=plan.reason)
        fill = self.services.broker.submit(order, base.timestamp)  # None: refused (the account logs why)
        if fill is not None:
            self.context.set_result_dto(asset, fill)

'''

EXECUTION_TEST = f'''"""Tests of plugins/$name.py {_HOW_TO_RUN_TESTS}."""

from pathlib import Path

from services.plugin_testing import Replay, assert_same_trades, sample_candles

BLUEPRINT = Path(__file__).resolve().parents[1] / "config" / "strategies" / "$name.yaml"


def test_every_plan_is_filled_at_its_candle_close():
    candles = sample_candles()
    replay = Replay(blueprint_file=BLUEPRINT, fee_rate=0).by_ticks(candles)
    closes = dict(zip(candles.open_times.tolist(), candles.close_values, strict=True))
    assert replay.fills
    for fill in replay.fills:
        assert fill.price == closes[int(fill.timestamp.timestamp())]


def test_its_blueprint_trades_the_same_replayed_columnar_as_tick_by_tick():
    assert_same_trades(lambda: Replay(blueprint_file=BLUEPRINT), sample_candles(), sizes=[1, 7, 500])
'''

# The blueprints: the EMA crossover of config/strategies/ema_cross.yaml around the new worker,
# except for an opportunity worker, which gets the position sizer (its signal carries a stop).
_EMA = {"plugin": "ema_detector", "params": {"fast_period": 12, "slow_period": 26}}
_CROSS = {"plugin": "ema_cross_opportunity"}
_ALL_IN = {"plugin": "all_in_planner"}
_MARKET = {"plugin": "market_order_executor"}
_SIZER = {"plugin": "position_sizer", "params": {"risk_per_trade_pct": 1, "reward_risk_ratio": 2}}
WORKFORCES: dict[str, dict[str, list[Any]]] = {
    "opportunity": {"opportunity": [PLUGIN], "planning": [_SIZER], "execution": [_MARKET]},
    "context": {"context": [_EMA, PLUGIN], "opportunity": [_CROSS], "planning": [_ALL_IN], "execution": [_MARKET]},
    "threat": {"context": [_EMA], "opportunity": [_CROSS], "threat": [PLUGIN], "planning": [_ALL_IN],
               "execution": [_MARKET]},
    "planning": {"context": [_EMA], "opportunity": [_CROSS], "planning": [PLUGIN], "execution": [_MARKET]},
    "execution": {"context": [_EMA], "opportunity": [_CROSS], "planning": [_ALL_IN], "execution": [PLUGIN]},
}

TEMPLATES: dict[str, tuple[str, str]] = {  # category: (worker module, its test)
    "opportunity": (OPPORTUNITY, OPPORTUNITY_TEST),
    "context": (CONTEXT, CONTEXT_TEST),
    "threat": (THREAT, THREAT_TEST),
    "planning": (PLANNING, PLANNING_TEST),
    "execution": (EXECUTION, EXECUTION_TEST),
}
