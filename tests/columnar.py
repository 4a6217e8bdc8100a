"""Checks that a backtest's columnar replay is the tick-by-tick one, for any workforce: the
same DTOs a context worker writes on every row, the same fills and the same account, whatever
the blocks' sizes and wherever the data has holes."""

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import cycle, pairwise
from pathlib import Path

import numpy as np
from structlog.testing import capture_logs

from backend.config import StrategyBlueprint
from backend.config.loader import load_yaml_model
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import (
    DTO,
    AccountState,
    EmaDTO,
    FillDTO,
    OpportunitySignalDTO,
    OrderSide,
    ThreatSignalDTO,
)
from backend.interfaces import Candle, CandleStepWorker, IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.candle_file import read_candle_file
from backend.market_data.raw_tick import ticks_of
from backend.portfolio import Ledger, StrategyAccount
from backend.workers.context.ema_detector import EmaDetector, EmaDetectorParams
from backend.workers.indicators import Ema
from backend.workers.opportunity.ema_cross_opportunity import EmaCrossOpportunity
from services.tick_cache_manager import TickCacheManager
from services.worker_factory import WorkerFactory
from tests.helpers import simulated_account

REPO = Path(__file__).resolve().parent.parent
SAMPLE_1H = REPO / "data" / "kraken_xbtusd_1h_2023q1.csv"
HOUR = 3600


def sample_candles(path: Path = SAMPLE_1H, timeframe: str = "1h") -> CandleColumns:
    """Every candle of a data file, as one block."""
    candle_file = read_candle_file(path, timeframe)
    blocks = list(candle_file.blocks(range(len(candle_file))))
    column = lambda name: np.concatenate([getattr(block, name) for block in blocks])  # noqa: E731
    missing = column("missing_before")
    missing[0] = 0
    return CandleColumns("BTC/USD", column("open_times"), column("opens"), column("highs"), column("lows"),
                         column("closes"), column("volumes"), missing)


def long_series_with_holes(repeats: int = 8, holes: int = 40, seed: int = 7) -> CandleColumns:
    """The sample played forwards, then backwards (open and close swapped), `repeats` times, on a
    continuous hourly grid, then `holes` random stretches of 1 to 30 candles taken out."""
    sample = sample_candles()
    parts = []
    for index in range(repeats):
        if index % 2 == 0:
            parts.append((sample.opens, sample.highs, sample.lows, sample.closes, sample.volumes))
        else:
            parts.append((sample.closes[::-1], sample.highs[::-1], sample.lows[::-1], sample.opens[::-1],
                          sample.volumes[::-1]))
    opens, highs, lows, closes, volumes = (np.concatenate(column) for column in zip(*parts, strict=True))
    keep = np.ones(len(opens), dtype=bool)
    random = np.random.default_rng(seed)
    for start in random.integers(100, len(opens) - 100, holes):
        keep[start:start + random.integers(1, 31)] = False
    open_times = (1_700_000_000 // HOUR + np.arange(len(opens)))[keep] * HOUR
    missing = np.concatenate(([0], np.diff(open_times) // HOUR - 1))
    return CandleColumns("BTC/USD", open_times, opens[keep], highs[keep], lows[keep], closes[keep], volumes[keep],
                         missing)


def rows(candles: CandleColumns, start: int, stop: int) -> CandleColumns:
    part = slice(start, stop)
    return CandleColumns(candles.symbol, candles.open_times[part], candles.opens[part], candles.highs[part],
                         candles.lows[part], candles.closes[part], candles.volumes[part], candles.missing_before[part])


def split(candles: CandleColumns, sizes: Iterable[int]) -> list[CandleColumns]:
    """candles cut into consecutive blocks of the given sizes, repeated as needed."""
    cuts = [0]
    for size in cycle(sizes):
        if cuts[-1] + size >= len(candles):
            break
        cuts.append(cuts[-1] + size)
    cuts.append(len(candles))
    return [rows(candles, start, stop) for start, stop in pairwise(cuts)]


def random_sizes(seed: int = 1) -> list[int]:
    """Block sizes from 1 to 5,000 candles, small ones often (every boundary case is near an edge)."""
    random = np.random.default_rng(seed)
    return [int(random.choice([1, 2, 3, random.integers(4, 100), random.integers(100, 5000)])) for _ in range(2000)]


class Replay:
    """One strategy run's real parts (tick cache, history, account with simulated fills, tick
    manager) around a workforce: a shipped blueprint's, or workers given as classes and params;
    `watchers` (classes and params) run after it on every tick, to see what it left in the cache."""

    def __init__(self, workers: Sequence[IWorker] | None = None, *, blueprint_file: Path | None = None,
                 fee_rate: float = 0.0026, starting_capital: float = 10_000,
                 worker_specs: Sequence[tuple[type[IWorker], dict]] = (),
                 watchers: Sequence[tuple[type[IWorker], dict]] = ()) -> None:
        self.context = TradingContextProvider()
        self.ledger = Ledger(starting_capital)
        self.account: StrategyAccount = simulated_account(self.ledger, fee_rate)
        self.fills: list[FillDTO] = []
        self.entry_block_lines: list[dict] = []  # what the threats said (assert_same_trades)
        self.account.on_fill = self.fills.append
        if blueprint_file is not None:
            blueprint = load_yaml_model(StrategyBlueprint, blueprint_file)
            factory = WorkerFactory()
            self.history = OhlcvProvider(factory.history_needed(blueprint, blueprint_file))
            services = WorkerServices(self.context, self.account, self.history)
            self.workers = factory.build(blueprint, blueprint_file, services)
        else:
            validated = [(cls, cls.Params(**params)) for cls, params in worker_specs]
            self.history = OhlcvProvider(max([p.history_needed() for _, p in validated], default=0))
            services = WorkerServices(self.context, self.account, self.history)
            self.workers = [cls(params, services) for cls, params in validated]
        self.workers += [cls(cls.Params(**params), services) for cls, params in watchers]
        self.manager = TickCacheManager(self.context, self.history, self.workers, self.account, ["BTC/USD"])

    def by_ticks(self, candles: CandleColumns) -> "Replay":
        for tick in ticks_of(candles):
            self.manager.process(tick)
        return self

    def by_blocks(self, blocks: Iterable[CandleColumns]) -> "Replay":
        for block in blocks:
            assert self.manager.why_not_columnar(block) is None
            assert self.manager.process_block(block, threading.Event()) == len(block)
        return self

    def outcome(self) -> tuple[list[dict], AccountState, dict, tuple[Candle, ...]]:
        """What must not depend on the replay: fills (but their random order ids), the account,
        the cursors and the history's last candles."""
        fills = [fill.model_dump(exclude={"order_id"}) for fill in self.fills]
        history = tuple(self.history.history("BTC/USD", self.history.capacity)) if self.history.capacity else ()
        return fills, self.ledger.state, self.account.cursors, history


def assert_same_trades(make: Callable[[], "Replay"], candles: CandleColumns, sizes: Iterable[int]) -> Replay:
    """Replay candles tick by tick and by blocks of sizes with two fresh Replays from make: the
    same fills, account, cursors and history, and the same lines from the threats (kept in
    `entry_block_lines`). Returns the columnar one."""
    with capture_logs() as tick_lines:
        by_ticks = make().by_ticks(candles)
    with capture_logs() as block_lines:
        by_blocks = make().by_blocks(split(candles, sizes))
    assert by_blocks.outcome() == by_ticks.outcome()
    by_blocks.entry_block_lines = entry_block_lines(block_lines)
    assert by_blocks.entry_block_lines == entry_block_lines(tick_lines)
    return by_blocks


def entry_block_lines(lines: list[dict]) -> list[dict]:
    """The threats' `entries_blocked` / `entries_unblocked` lines, in order."""
    return [line for line in lines if line["event"] in ("entries_blocked", "entries_unblocked")]


class NotColumnar(IWorker):
    """Does nothing, and has no columnar replay: a workforce with it is replayed tick by tick."""

    category = WorkerCategory.EXECUTION

    def process(self, asset: str) -> None:
        pass


class Vandal(IWorker):
    """A columnar context worker with a bug: it writes into the block every run of its
    environment shares."""

    category = WorkerCategory.CONTEXT
    columnar = True

    def process(self, asset: str) -> None:
        pass

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        candles.closes[-1] = 1.0


class SlowPrepare(IWorker):
    """A columnar context worker that takes 0.5 ms per candle of a block: slow, not stuck."""

    category = WorkerCategory.CONTEXT
    columnar = True

    def process(self, asset: str) -> None:
        pass

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        time.sleep(len(candles) / 2000)


class StuckAtTheEnd(IWorker):
    """A columnar context worker that never returns from the block holding the candle of
    2023-03-31 23:00 (the shipped sample's last): stuck."""

    category = WorkerCategory.CONTEXT
    columnar = True

    def process(self, asset: str) -> None:
        pass

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        if candles.open_time(len(candles) - 1) == datetime(2023, 3, 31, 23, tzinfo=UTC):
            time.sleep(3600)


class _Collect(IWorker):
    """Copies every DTO in the tick cache after the context workers (not columnar: per tick only)."""

    plugin_name = "collect"
    category = WorkerCategory.OPPORTUNITY
    Params = WorkerParams
    seen: list[dict[type[DTO], DTO]]

    def process(self, asset: str) -> None:
        self.seen.append(dict(self.context._cache[asset]))  # type: ignore[attr-defined]


def assert_same_context(worker_specs: Sequence[tuple[type[IWorker], dict]], candles: CandleColumns,
                        sizes: Iterable[int]) -> None:
    """Context workers: the DTOs their columns give on every row are those they write tick by tick."""
    by_ticks = Replay(worker_specs=[*worker_specs, (_Collect, {})])
    collector = by_ticks.workers[-1]
    assert isinstance(collector, _Collect)
    collector.seen = []
    by_ticks.by_ticks(candles)
    columnar = Replay(worker_specs=worker_specs)
    row = 0
    for block in split(candles, sizes):
        for worker in columnar.workers:
            worker.prepare_block("BTC/USD", block)
        columns = columnar.context.block_columns("BTC/USD")
        for index in range(len(block)):
            from_columns = {c.dto_type: dto for c in columns if (dto := c.at(index)) is not None}
            assert from_columns == collector.seen[row], f"row {row}"
            row += 1
        columnar.context.clear_block()
    assert row == len(candles)


class EntryBlockedWitness(IWorker):
    """Counts the ticks on which a buy signal met a threat while flat: entries a threat blocked
    (per tick only: not columnar)."""

    category = WorkerCategory.PLANNING
    Params = WorkerParams
    optional = (OpportunitySignalDTO, ThreatSignalDTO)

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self.blocked = 0

    def process(self, asset: str) -> None:
        signal = self._optional(asset, OpportunitySignalDTO)
        flat = self._base(asset).portfolio.position_qty <= 0
        if flat and signal is not None and signal.side is OrderSide.BUY and self._optional(asset, ThreatSignalDTO):
            self.blocked += 1


class ListedEma(CandleStepWorker):
    """The EMA detector as a plugin might write it, one step per candle: its columns are a plain
    list of the DTOs (no EmaColumns), so consumers must find them by DTO type."""

    Params = EmaDetectorParams
    produces = (EmaDTO,)
    params: EmaDetectorParams

    def __init__(self, params: EmaDetectorParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self._emas: dict[str, tuple[Ema, Ema]] = {}

    def step(self, asset: str, candle: Candle) -> EmaDTO:
        if asset not in self._emas or candle.missing_before:
            self._emas[asset] = (Ema(self.params.fast_period), Ema(self.params.slow_period))
        fast, slow = self._emas[asset]
        return EmaDTO.trusted(fast_period=self.params.fast_period, slow_period=self.params.slow_period,
                              fast=fast.update(candle.close), slow=slow.update(candle.close))


class TickByTickEma(EmaDetector):
    """The EMA detector without its columnar replay."""

    columnar = False


class ColumnarWithoutColumns(EmaDetector):
    """Says it is columnar but writes no columns: a consumer would find none."""

    prepare_block = IWorker.prepare_block


class GatedButOnlyOnSignals(EmaCrossOpportunity):
    """Declares it acts only on others' signals, yet names rows of its own: which one is meant?"""

    acts_only_on_signals = True
