"""`run-operation check PATH`: the checks a user runs on the blueprints of an operation's backtest
links, on the links' own data (services.plugin_testing's replays, shipped for plugin authors):

- replay: the link's candles replayed tick by tick and columnar, cut into blocks of random sizes
  (seeded): every context worker's columns on every row, every other worker's DTOs on every row,
  then the fills, the account, its cursors and history, how many orders ended how, and the
  threats' lines must be the same;
- look-ahead: a context worker's output at a row must not change when the rows after it are
  removed (only a columnar `prepare_block` is ever shown later candles);
- recursive: once warm, a context worker's output must not depend on how much history came before:
  run from the first row and from a later one, the outputs agree from RECURSIVE_SETTLE warm-ups
  after the later start on (recursive indicators such as EMAs forget their seed geometrically;
  floats to RECURSIVE_REL_TOL).

Invariant: the checks only read; each finds at most one problem per link (the first, in time),
named by the blueprint file, the worker's key and plugin, the candle's time and row, and the DTO
field that differs. Nothing here contacts an exchange or writes a file.
"""

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from structlog.testing import capture_logs

from backend.config import BacktestEnvironment, LoadedOperation, ResolvedLink
from backend.dtos import DTO
from backend.interfaces import IWorker, WorkerCategory
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.candle_window import CandleWindow
from backend.market_data.candle_checks import timeframe_seconds
from backend.market_data.raw_tick import columns_of, ticks_of
from backend.market_data.resample import Resampler
from services.execution_environments import ExecutionEnvironments
from services.operation_service import settings_of
from services.plugin_testing import (
    Collect,
    Replay,
    dtos_by_columns,
    dtos_by_tick,
    entry_block_lines,
    first_context_difference,
    joined,
    random_sizes,
    split,
)

log = structlog.get_logger(__name__)

LOOKAHEAD_CUTS = 40  # rows whose output is recomputed on the candles up to them
RECURSIVE_SETTLE = 20  # warm-ups after a later start from which its outputs must agree
RECURSIVE_REL_TOL = 1e-6
REPLAYS = ("tick by tick", "columnar")

WorkerSpecs = list[tuple[type[IWorker], dict]]
Dtos = dict[type[DTO], DTO]


@dataclass(frozen=True)
class Worker:
    """A built worker as its blueprint names it."""

    key: str  # workforce.<category>[<index>]
    plugin: str  # as the blueprint names it
    instance: IWorker

    @property
    def label(self) -> str:
        return f"{self.key} ({self.plugin})"


@dataclass(frozen=True)
class LinkCheck:
    """One backtest link to check: its blueprint's workers, on its candles at its timeframe."""

    link: ResolvedLink
    candles: CandleColumns
    seed: int

    def replay(self, watch: bool = False) -> Replay:
        environment = self.link.environment
        return Replay(blueprint_file=self.link.blueprint_file, rules=environment.fill_rules,
                      starting_capital=environment.starting_capital, symbol=self.candles.symbol,
                      watchers=[(Collect, {})] if watch else ())

    def workers(self, replay: Replay) -> list[Worker]:
        workforce = self.link.blueprint.workforce
        specs = [(f"workforce.{category.value}[{index}]", spec.plugin) for category in WorkerCategory
                 for index, spec in enumerate(getattr(workforce, category.value))]
        return [Worker(key, plugin, worker) for (key, plugin), worker in zip(specs, replay.workers, strict=False)]

    def context(self) -> tuple[list[Worker], WorkerSpecs]:
        """The context workers, and their classes and params (to build them again)."""
        workers = [worker for worker in self.workers(self.replay()) if worker.key.startswith("workforce.context")]
        return workers, [(type(w.instance), w.instance.params.model_dump()) for w in workers]

    def at(self, row: int) -> str:
        return f"at {self.candles.open_time(row):%Y-%m-%dT%H:%M} (row {row})"


def link_candles(link: ResolvedLink, environments: ExecutionEnvironments) -> list[CandleColumns]:
    """The candles a backtest link's run gets, one block per symbol of its environment: its range,
    resampled to the blueprint's timeframe when that is longer (as the environment feed does); a
    symbol with no complete bar has none."""
    environment = link.environment
    assert isinstance(environment, BacktestEnvironment)
    source = environments.tick_source(environment)
    with capture_logs():  # the data's gaps: `validate` and a run report them
        blocks = list(source.blocks(threading.Event()))
    found = []
    for index, symbol in enumerate(environment.symbols):
        candles = joined(symbol, [block.columns[index] if isinstance(block, CandleWindow) else block
                                  for block in blocks])
        if timeframe_seconds(link.blueprint.timeframe) != timeframe_seconds(environment.timeframe):
            resampler = Resampler(environment.timeframe, link.blueprint.timeframe)
            bars = [bar for tick in ticks_of(candles) for bar in resampler.add(tick)]
            if not bars:
                continue
            candles = columns_of(bars)
        found.append(candles)
    return found


def check_operation(operation: LoadedOperation, seed: int) -> Iterator[str]:
    """Every problem with the blueprints of the operation's backtest links, one line each, starting
    `<blueprint file>: `, on each symbol of the link's environment in turn (its workers run per
    asset); a link of a live or paper environment is skipped (logged)."""
    environments = ExecutionEnvironments(threading.Event())
    for link in operation.links:
        if not isinstance(link.environment, BacktestEnvironment):
            log.info("check_link_skipped", strategy_link=link.link_id, reason="a live or paper environment")
            continue
        with settings_of(link.environment_file, operation.timerange):
            symbols_candles = link_candles(link, environments)
        if not symbols_candles:
            log.info("check_link_skipped", strategy_link=link.link_id, reason="no complete bar in the range")
            continue
        for candles in symbols_candles:
            log.info("check_link_started", strategy_link=link.link_id, blueprint=str(link.blueprint_file),
                     symbol=candles.symbol, candles=len(candles), timeframe=link.blueprint.timeframe)
            started = time.monotonic()
            problems = list(check_link(LinkCheck(link, candles, seed)))
            log.info("check_link_finished", strategy_link=link.link_id, symbol=candles.symbol,
                     problems=len(problems), seconds=round(time.monotonic() - started, 1))
            yield from (f"{link.blueprint_file}: {problem}" for problem in problems)


def check_link(check: LinkCheck) -> Iterator[str]:
    """Each check's problem with the link's blueprint, one line each (a plugin that raises is one)."""
    for name, run in (("replay", replay_problem), ("look-ahead", lookahead_problem), ("recursive", recursive_problem)):
        try:
            problem = run(check)
        except Exception as exc:  # the plugin's own code: reported, never a traceback
            problem = f"{name}: a worker raised {type(exc).__name__}: {exc}"
        if problem is not None:
            yield problem


def replay_problem(check: LinkCheck) -> str | None:
    """The first row where the columnar replay differs from the tick-by-tick one, with its worker."""
    sizes = random_sizes(check.seed)
    why_not = check.replay().manager.why_not_columnar(check.candles)
    if why_not is not None:  # a backtest of it replays tick by tick, as the check would: nothing to compare
        log.info("check_replay_skipped", strategy_link=check.link.link_id, reason=why_not)
        return None
    context, specs = check.context()
    difference = first_context_difference(specs, check.candles, sizes)
    if difference is not None:
        row, ticked_dtos, columnar_dtos = difference
        found = _first_difference(context, ticked_dtos, columnar_dtos)
        assert found is not None
        return _diverged(found, check.at(row))
    with capture_logs() as tick_lines:
        by_ticks = check.replay(watch=True).by_ticks(check.candles)
    with capture_logs() as block_lines:
        by_blocks = check.replay(watch=True).by_blocks(split(check.candles, sizes))
    workers = check.workers(by_ticks)
    ticked, columnar = by_ticks.workers[-1], by_blocks.workers[-1]
    assert isinstance(ticked, Collect) and isinstance(columnar, Collect)
    active = dict(zip(columnar.times, columnar.seen, strict=True))
    # What a worker must name its row for: any DTO but a context worker's (in the columns) or a
    # threat's (it only restrains what another worker does on a row that one names).
    acting = {dto_type for worker in workers if worker.instance.category not in (WorkerCategory.CONTEXT,
                                                                                   WorkerCategory.THREAT)
              for dto_type in worker.instance.produces}
    for row, (candle_time, dtos) in enumerate(zip(ticked.times, ticked.seen, strict=True)):
        if candle_time in active:
            found = _first_difference(workers, dtos, active[candle_time])
            if found is not None:
                return _diverged(found, check.at(row))
            continue
        written = [dto_type for dto_type in dtos if dto_type in acting]
        if written:
            producer = _producer(workers, written[0])
            assert producer is not None
            return (f"{producer.label}: columnar replay differs from tick by tick {check.at(row)}: "
                    f"{written[0].__name__} written tick by tick on a row no worker named (next_active_row)")
    outcome, outcome_by_blocks = by_ticks.outcome(), by_blocks.outcome()
    parts = ("fills", "account", "cursors", "candle history", "orders by outcome")
    for name, ticked_part, columnar_part in zip(parts, outcome, outcome_by_blocks, strict=True):
        if ticked_part != columnar_part:
            return f"columnar replay differs from tick by tick: the {name}: {_describe(ticked_part, columnar_part)}"
    if entry_block_lines(tick_lines) != entry_block_lines(block_lines):
        return "columnar replay differs from tick by tick: the threats' entries_blocked/entries_unblocked lines"
    return None


def lookahead_problem(check: LinkCheck) -> str | None:
    """A context worker whose columns at a row change when the rows after it are removed."""
    context, specs = check.context()
    if not all(cls.columnar for cls, _ in specs):
        return None  # replayed tick by tick, a worker is never shown a later candle
    last = len(check.candles) - 1
    if last < 1:
        return None
    cuts = sorted({int(row) for row in np.random.default_rng(check.seed).integers(0, last, LOOKAHEAD_CUTS)})
    whole = dtos_by_columns(specs, [check.candles], set(cuts))
    for row, complete in zip(cuts, whole, strict=True):
        (cut,) = dtos_by_columns(specs, [check.candles.rows(0, row + 1)], {row})
        found = _first_difference(context, complete, cut, ("with them", "without"))
        if found is not None:
            return (f"look-ahead: {found.worker}: {found.what} {check.at(row)} changes when later rows are removed: "
                    f"{found.detail}")
    return None


def recursive_problem(check: LinkCheck) -> str | None:
    """A context worker whose warm output depends on how much history came before its start."""
    context, specs = check.context()
    if not specs:
        return None
    by_rows: Callable[[CandleColumns], list[Dtos]] = (
        (lambda candles: dtos_by_columns(specs, [candles])) if all(cls.columnar for cls, _ in specs)
        else (lambda candles: dtos_by_tick(specs, candles)))
    warm_up = max(1, *(cls.Params(**params).history_needed() for cls, params in specs))
    candles = check.candles
    whole = by_rows(candles)
    for start in (len(candles) // 4, len(candles) // 2):
        later = by_rows(candles.rows(start, len(candles)))
        for row in range(start + RECURSIVE_SETTLE * warm_up, len(candles)):
            found = _first_difference(context, whole[row], later[row - start], ("from the first row", "from the later"),
                                      _close)
            if found is not None:
                return (f"recursive: {found.worker}: {found.what} {check.at(row)} changes when the run starts "
                        f"{start} rows earlier (compared from {RECURSIVE_SETTLE} warm-ups of {warm_up} candles "
                        f"after the later start): {found.detail}")
    return None


def _producer(workers: Sequence[Worker], dto_type: type[DTO]) -> Worker | None:
    return next((worker for worker in workers if dto_type in type(worker.instance).produces), None)


@dataclass(frozen=True)
class Difference:
    worker: str  # the label of the worker writing the DTO
    what: str  # Type.field, or Type
    detail: str


def _first_difference(workers: Sequence[Worker], ticked: Dtos, other: Dtos, sides: tuple[str, str] = REPLAYS,
                      close_enough: Callable[[Any, Any], bool] = lambda a, b: a == b) -> Difference | None:
    """The first DTO (in the workers' run order) that differs, with its first field that does;
    sides: what ticked and other are, as the detail says."""
    order = {dto_type: index for index, worker in enumerate(workers) for dto_type in type(worker.instance).produces}
    for dto_type in sorted(ticked.keys() | other.keys(), key=lambda t: (order.get(t, len(order)), t.__name__)):
        first, second = ticked.get(dto_type), other.get(dto_type)
        if first is not None and second is not None and close_enough(first, second):
            continue
        producer = _producer(workers, dto_type)
        worker = producer.label if producer is not None else "the account"
        if first is None or second is None:
            return Difference(worker, dto_type.__name__, _describe(first, second, sides))
        field = next(name for name in type(first).model_fields
                     if not close_enough(getattr(first, name), getattr(second, name)))
        return Difference(worker, f"{dto_type.__name__}.{field}",
                          _describe(getattr(first, field), getattr(second, field), sides))
    return None


def _diverged(found: Difference, at: str) -> str:
    return f"{found.worker}: columnar replay differs from tick by tick {at}: {found.what}: {found.detail}"


def _describe(first: object, second: object, sides: tuple[str, str] = REPLAYS) -> str:
    if isinstance(first, list) and isinstance(second, list):
        index = next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
                     min(len(first), len(second)))
        return (f"{len(first)} {sides[0]}, {len(second)} {sides[1]}; the first that differs, #{index + 1}: "
                f"{_describe(_nth(first, index), _nth(second, index), sides)}")
    return f"{first!r} {sides[0]}, {second!r} {sides[1]}"


def _nth(items: list, index: int) -> object:
    return items[index] if index < len(items) else None


def _close(first: object, second: object) -> bool:
    """Equal, floats to RECURSIVE_REL_TOL (in DTOs, recursively)."""
    if isinstance(first, float) and isinstance(second, float):
        return math.isclose(first, second, rel_tol=RECURSIVE_REL_TOL, abs_tol=1e-12)
    if isinstance(first, DTO) and isinstance(second, DTO) and type(first) is type(second):
        return all(_close(getattr(first, name), getattr(second, name)) for name in type(first).model_fields)
    return first == second
