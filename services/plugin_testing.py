"""A worker plugin's test kit: its workers on a few candles with a strategy run's real parts (tick
cache, candle history, an account with simulated fills, the tick manager), tick by tick or as a
backtest's columnar replay, and the checks that both replays agree.

Invariant: a Replay is one strategy run's pipeline exactly as a backtest builds it, and nothing
here changes what a worker sees: the checks compare the two replays the daemon itself uses.
`run-operation new-plugin` writes a test on it, `run-operation check` runs it on an operation's
backtest links (services.blueprint_check); the daemon's own tests use it too.
"""

import threading
from collections.abc import Callable, Container, Iterable, MutableMapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import cycle, pairwise
from pathlib import Path
from typing import Any

import numpy as np
from structlog.testing import capture_logs

from backend.config import StrategyBlueprint
from backend.config.loader import load_yaml_model
from backend.core.ohlcv_provider import OhlcvProvider
from backend.core.trading_context_provider import TradingContextProvider
from backend.dtos import DTO, AccountState, FillDTO
from backend.interfaces import Candle, IWorker, WorkerCategory, WorkerParams, WorkerServices
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.candle_window import Candles, CandleWindow
from backend.market_data.candle_file import read_candle_file
from backend.market_data.timeframes import timeframe_length
from backend.portfolio import Ledger, SimulatedGateway, StrategyAccount
from backend.portfolio.fill_rules import FillRules
from services.tick_cache_manager import TickCacheManager
from services.worker_factory import WorkerFactory

SAMPLE_NAME = "kraken_xbtusd_1h_2023q1.csv"  # the bundled sample (data/README.md)


def bundled_sample() -> Path:
    """The bundled sample's path: beside the package in a checkout (an editable install), else in
    the current folder's data/ (the Docker image, whose package is installed apart from /app/data)."""
    beside_package = Path(__file__).resolve().parents[1] / "data" / SAMPLE_NAME
    in_current_folder = Path.cwd() / "data" / SAMPLE_NAME
    return beside_package if beside_package.is_file() or not in_current_folder.is_file() else in_current_folder


SAMPLE_1H = bundled_sample()
SYMBOL = "BTC/USD"
HOUR = 3600


def candles_from_closes(closes: Sequence[float], start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
                        symbol: str = SYMBOL) -> CandleColumns:
    """Hourly candles with these closes, each opening at the close before it (the first at its
    own close), high and low the larger and smaller of the two."""
    close = np.asarray(closes, dtype=np.float64)
    opens = np.concatenate((close[:1], close[:-1]))
    open_times = int(start.timestamp()) + HOUR * np.arange(len(close), dtype=np.int64)
    return CandleColumns(symbol, open_times, opens, np.maximum(opens, close), np.minimum(opens, close), close,
                         np.ones(len(close)), np.zeros(len(close), dtype=np.int64))


def sample_candles(path: Path = SAMPLE_1H, timeframe: str = "1h", symbol: str = SYMBOL) -> CandleColumns:
    """Every candle of a data file, as one block."""
    candle_file = read_candle_file(path, timeframe)
    return joined(symbol, candle_file.blocks(range(len(candle_file))))


def joined(symbol: str, blocks: Iterable[Any]) -> CandleColumns:
    """Consecutive blocks of candles (CandleColumns or a data file's blocks) as one, without a
    hole before its first row."""
    return replace(CandleColumns.concatenated(list(blocks)), symbol=symbol).with_missing_before_first(0)


def random_sizes(seed: int = 1, count: int = 2000) -> list[int]:
    """Block sizes from 1 to 5,000 candles, small ones often (every boundary case is near an edge)."""
    random = np.random.default_rng(seed)
    return [int(random.choice([1, 2, 3, int(random.integers(4, 100)), int(random.integers(100, 5000))]))
            for _ in range(count)]



def split(candles: CandleColumns, sizes: Iterable[int]) -> list[CandleColumns]:
    """candles cut into consecutive blocks of the given sizes, repeated as needed."""
    return [candles.rows(start, stop) for start, stop in pairwise(split_points(len(candles), sizes))]


def split_points(rows: int, sizes: Iterable[int]) -> list[int]:
    """Where rows are cut into consecutive parts of the given sizes (repeated as needed): 0, ..., rows."""
    cuts = [0]
    for size in cycle(sizes):
        if cuts[-1] + size >= rows:
            break
        cuts.append(cuts[-1] + size)
    cuts.append(rows)
    return cuts


def windows(symbols_candles: Sequence[CandleColumns], sizes: Iterable[int]) -> list[CandleWindow]:
    """Candles of several symbols (one block each) cut into consecutive windows, each spanning the
    next of sizes (repeated as needed) open times of them all."""
    times = np.unique(np.concatenate([candles.open_times for candles in symbols_candles]))
    bounds = [int(times[cut]) for cut in (split_points(len(times), sizes)[:-1])] + [int(times[-1]) + 1]
    return [CandleWindow(tuple(candles.rows(*np.searchsorted(candles.open_times, (low, high)).tolist())
                               for candles in symbols_candles))
            for low, high in pairwise(bounds)]


class Replay:
    """One strategy run's real parts (tick cache, history, account with simulated fills, tick
    manager) around a workforce: a blueprint file's, or workers given as classes and params;
    `watchers` (classes and params) run after it on every tick, to see what it left in the cache."""

    def __init__(self, workers: Sequence[IWorker] | None = None, *, blueprint_file: Path | None = None,
                 rules: FillRules | None = None, fee_rate: float | None = None, starting_capital: float = 10_000,
                 worker_specs: Sequence[tuple[type[IWorker], dict]] = (),
                 watchers: Sequence[tuple[type[IWorker], dict]] = (), symbol: str = SYMBOL,
                 symbols: Sequence[str] = ()) -> None:
        """rules: how orders fill (default: Kraken's entry-tier fees, no slippage); fee_rate: instead
        of rules, both fees this rate (as an environment's `fee_rate`); symbols: the assets traded
        (one account for them all), when not the one symbol."""
        if fee_rate is not None:
            if rules is not None:
                raise TypeError("Replay takes rules or fee_rate (both fees), not both")
            rules = FillRules(maker_fee_rate=fee_rate, taker_fee_rate=fee_rate)
        self.symbols = list(symbols) or [symbol]
        self.context = TradingContextProvider()
        self.ledger = Ledger(starting_capital)
        self.account = StrategyAccount(self.ledger, SimulatedGateway(rules or FillRules()))
        self.fills: list[FillDTO] = []
        self.entry_block_lines: list[dict] = []  # what the threats said (assert_same_trades)
        self.account.on_fill = self.fills.append
        if blueprint_file is not None:
            blueprint = load_yaml_model(StrategyBlueprint, blueprint_file)
            factory = WorkerFactory()
            self.history = OhlcvProvider(factory.history_needed(blueprint, blueprint_file))
            services = WorkerServices(self.context, self.account, self.history, timeframe_length(blueprint.timeframe))
            self.workers = factory.build(blueprint, blueprint_file, services)
        else:
            validated = [(cls, cls.Params(**params)) for cls, params in worker_specs]
            self.history = OhlcvProvider(max([p.history_needed() for _, p in validated], default=0))
            services = WorkerServices(self.context, self.account, self.history, timedelta(seconds=HOUR))
            self.workers = [cls(params, services) for cls, params in validated]
        self.workers += [cls(cls.Params(**params), services) for cls, params in watchers]
        self.manager = TickCacheManager(self.context, self.history, self.workers, self.account, self.symbols)

    def by_ticks(self, candles: Candles) -> "Replay":
        """Frame by frame (a block of one symbol: row by row), each row a tick (the reference of `by_blocks`)."""
        self.manager.process(candles, threading.Event(), columnar=False)
        return self

    def by_blocks(self, blocks: Iterable[Candles]) -> "Replay":
        for block in blocks:
            assert self.manager.why_not_columnar(block) is None, self.manager.why_not_columnar(block)
            assert self.manager.process(block, threading.Event()).rows == len(block)
        return self

    def outcome(self) -> tuple[list[dict], AccountState, dict, dict[str, tuple[Candle, ...]], dict[str, int]]:
        """What must not depend on the replay: fills (but their random order ids), the account,
        the cursors, the history's last candles and how many orders ended how (filled, expired,
        rejected, canceled, ...)."""
        fills = [fill.model_dump(exclude={"order_id"}) for fill in self.fills]
        capacity = self.history.capacity
        history = {symbol: tuple(self.history.history(symbol, capacity)) if capacity else () for symbol in self.symbols}
        return fills, self.ledger.state, self.account.cursors, history, dict(self.account.order_outcomes)


class Collect(IWorker):
    """Copies every DTO in the tick cache after the workers before it, with the candle's time
    (`seen`, `times`). Columnar, naming no row of its own (it only watches): in a columnar replay it
    sees the active rows only."""

    plugin_name = "collect"
    category = WorkerCategory.EXECUTION
    Params = WorkerParams
    columnar = True
    columnar_across_assets = True
    acts_only_on_signals = True  # a watcher: never makes a row active

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        self.seen: list[dict[type[DTO], DTO]] = []
        self.times: list[datetime] = []

    def process(self, asset: str) -> None:
        self.seen.append(dict(self.context._cache[asset]))  # type: ignore[attr-defined]
        self.times.append(self._base(asset).timestamp)


def dtos_by_tick(worker_specs: Sequence[tuple[type[IWorker], dict]],
                 candles: CandleColumns) -> list[dict[type[DTO], DTO]]:
    """The workers (classes and params) run tick by tick on candles: per tick, every DTO they
    wrote into the tick cache, by type."""
    replay = Replay(worker_specs=worker_specs, watchers=[(Collect, {})], symbol=candles.symbol).by_ticks(candles)
    collector = replay.workers[-1]
    assert isinstance(collector, Collect)
    return collector.seen


def dtos_by_columns(worker_specs: Sequence[tuple[type[IWorker], dict]], blocks: Iterable[CandleColumns],
                    rows: Container[int] | None = None) -> list[dict[type[DTO], DTO]]:
    """Columnar context workers (classes and params) prepared on consecutive blocks: per row of
    them all (or of those in `rows` only), the DTOs their columns give."""
    replay = Replay(worker_specs=worker_specs)
    found: list[dict[type[DTO], DTO]] = []
    first = 0
    for block in blocks:
        for worker in replay.workers:
            worker.prepare_block(block.symbol, block)
        columns = replay.context.block_columns(block.symbol)
        found += [{c.dto_type: dto for c in columns if (dto := c.at(index)) is not None}
                  for index in range(len(block)) if rows is None or first + index in rows]
        first += len(block)
        replay.context.clear_block()
    return found


def first_context_difference(worker_specs: Sequence[tuple[type[IWorker], dict]], candles: CandleColumns,
                             sizes: Iterable[int]) -> tuple[int, dict[type[DTO], DTO], dict[type[DTO], DTO]] | None:
    """The first row where context workers' columns, on candles cut into blocks of sizes, give
    other DTOs than they write tick by tick: (row, DTOs tick by tick, DTOs from the columns)."""
    by_ticks = dtos_by_tick(worker_specs, candles)
    by_columns = dtos_by_columns(worker_specs, split(candles, sizes))
    assert len(by_columns) == len(by_ticks) == len(candles)
    pairs = enumerate(zip(by_ticks, by_columns, strict=True))
    return next(((row, ticked, columnar) for row, (ticked, columnar) in pairs if ticked != columnar), None)


def assert_same_trades(make: Callable[[], Replay], candles: Candles, sizes: Iterable[int]) -> Replay:
    """Replay candles (one symbol's, or a window of several symbols') tick by tick and by blocks of
    sizes (windows spanning sizes open times) with two fresh Replays from make: the same fills,
    account, cursors and history, and the same lines from the threats (kept in
    `entry_block_lines`; of several assets, each asset's in the same order: a columnar replay
    gives a quiet stretch's lines asset by asset). Returns the columnar one."""
    with capture_logs() as tick_lines:
        by_ticks = make().by_ticks(candles)
    blocks = windows(candles.columns, sizes) if isinstance(candles, CandleWindow) else split(candles, sizes)
    with capture_logs() as block_lines:
        by_blocks = make().by_blocks(blocks)
    assert by_blocks.outcome() == by_ticks.outcome()
    by_blocks.entry_block_lines = entry_block_lines(block_lines)
    by_asset = lambda lines: sorted(lines, key=lambda line: line["asset"])  # noqa: E731 (stable: in order per asset)
    assert by_asset(by_blocks.entry_block_lines) == by_asset(entry_block_lines(tick_lines))
    return by_blocks


def entry_block_lines(lines: Sequence[MutableMapping[str, Any]]) -> list[dict]:
    """The threats' `entries_blocked` / `entries_unblocked` lines, in order."""
    return [dict(line) for line in lines if line["event"] in ("entries_blocked", "entries_unblocked")]


def assert_same_context(worker_specs: Sequence[tuple[type[IWorker], dict]], candles: CandleColumns,
                        sizes: Iterable[int]) -> None:
    """Context workers: the DTOs their columns give on every row are those they write tick by tick."""
    difference = first_context_difference(worker_specs, candles, sizes)
    assert difference is None, f"row {difference[0]}: tick by tick {difference[1]}, columnar {difference[2]}"
