import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from types import MappingProxyType
from typing import NamedTuple, Protocol

import numpy as np
import structlog

from backend.core.ohlcv_provider import OhlcvProvider
from backend.dtos import DTO, BaseContextDTO, OpportunitySignalDTO, OrderSide
from backend.equity_curve import EquityLine, row_equities
from backend.errors import OperatorOrderError
from backend.interfaces import ITradingContextProvider, IWorker, WorkerCategory
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.candle_window import Candles, CandleWindow
from backend.interfaces.context_provider import DtoColumns
from backend.market_data import RawTick
from backend.market_data.raw_tick import FrameRow, tick_at, tick_frames
from backend.portfolio import StrategyAccount
from backend.portfolio.ledger import PortfolioValues, portfolio_snapshot

log = structlog.get_logger(__name__)

# A row of a frame the account has opened: its candles, the row, its tick, and whether it is traded.
_OpenRow = tuple[CandleColumns, int, RawTick, bool]
NO_DTOS: Mapping[str, Iterable[DTO]] = MappingProxyType({})

# What an operator's forced entry puts in the tick cache before the workers run.
FORCED_ENTRY = OpportunitySignalDTO(side=OrderSide.BUY, reason="force_entry by the operator")


class TickRecorder(Protocol):
    """Told of every processed candle once the account has closed it (`--report`, a sweep)."""

    def closed(self, candles: CandleColumns, rows: range, equities: EquityLine | Sequence[float],
               account: StrategyAccount) -> None:
        """Rows of a block the account has closed (a tick: one row; in a columnar replay, also
        a stretch on which no worker acted), with the account's equity at each row's close (the
        same floats `ledger.equity()` gave after each, tick by tick), or the line they are on
        (`row_equities` gives them); the account is as it closed the last of them."""


class SharedColumns(Protocol):
    """A context worker computed once for several runs (services.shared_context)."""

    def columns(self, candles: CandleColumns) -> Sequence[DtoColumns]:
        """Its columns of the block: what the run's own instance would have written."""


class Replayed(NamedTuple):
    """What `process` did with a block: its first `rows` rows gone through (the rest left on a
    stop), of which `processed` were processed (a row of an asset the run does not trade, or one
    it processed before a restart, is not)."""

    rows: int
    processed: int


class ReplayProgress:
    """The rows of a block replayed row by row so far, and how many of them were processed."""

    __slots__ = ("processed", "rows")

    def __init__(self) -> None:
        self.rows = self.processed = 0


class TickCacheManager:
    """One frame's lifecycle for one strategy (a frame: the candles of one open time, one per
    asset; a block of one symbol gives frames of one candle): record the candles in the run's
    history, open them in the account (every asset of the frame marked before any worker runs)
    and in the cache, run the context workers on each asset, then each other worker on every
    asset of the frame in turn, clear the cache and close the frame.

    Every processed candle (warm-up ones too) is in the history before the first worker runs, so a
    worker's `history(asset, n)` always ends with the current tick. `history_needed` is the run's
    warm-up need: the candles its workforce must see before its indicators are warm.

    `current_worker` names the worker running now and `current_step` what it works on (for the
    stall watchdog: a candle, or a columnar step over many); after `abandon()` no further worker
    runs, so a run given up on never places an order late.

    Candles come as blocks (a live candle: a block of one row; a backtest of several symbols: a
    CandleWindow) through one entry, `process`, which decides per block (`why_not_columnar`): a
    block is replayed columnar when every worker implements the columnar contract (IWorker; for
    a run of several assets, across assets too), none of its rows is warm-up and the account
    keeps nothing per candle (a backtest's): the same DTOs on the rows where a worker acts, the
    same trades, account and recorded equity as frame by frame, at a fraction of the cost;
    otherwise frame by frame, each row a tick.
    """

    def __init__(
        self,
        context: ITradingContextProvider,
        history: OhlcvProvider,
        workforce: Sequence[IWorker],
        account: StrategyAccount,
        assets: Sequence[str],
    ) -> None:
        self._context = context
        self._history = history
        self._workforce = list(workforce)
        self._acting_workers = [w for w in workforce if w.category is not WorkerCategory.CONTEXT]
        # Each worker with whether it is a context one (which also runs on a warm-up tick).
        self._workforce_steps = [(worker, worker.category is WorkerCategory.CONTEXT) for worker in workforce]
        self._acting_steps = [(worker, False) for worker in self._acting_workers]
        self._not_columnar = [worker.name for worker in workforce if not worker.columnar]
        self._not_across_assets = [worker.name for worker in workforce if not worker.columnar_across_assets]
        # The workers that may act on a row by themselves (by default on every row), and those that
        # keep state across quiet rows (the others keep IWorker's default: nothing to do).
        self._gates = [w for w in self._acting_workers if not w.acts_only_on_signals]
        self._skippers = [w for w in self._acting_workers if type(w).skip is not IWorker.skip]
        # Context workers computed once for several runs (`share`): their columns, by worker.
        self._shared: dict[IWorker, SharedColumns] = {}
        self.account = account
        self._assets = frozenset(assets)
        self.current_worker: str | None = None
        # What the run is doing now, for the stall watchdog, as one reference: the open time of the
        # (first) candle, since when (time.monotonic()), and how many candles the step covers.
        self._current_step: tuple[datetime | int, float, int] | None = None  # the time: or its epoch seconds
        self._abandoned = False
        self._forced_entries: set[str] = set()  # assets whose next traded candle carries an operator's entry
        self._open: dict[str, tuple[RawTick, PortfolioValues]] = {}  # per asset, the frame being processed
        self._base_builders: dict[str, Callable[[], BaseContextDTO]] = {}  # _base_context_of's
        self.recorder: TickRecorder | None = None
        # The last long block's replay (mode, why not columnar), logged on the first and when it changes.
        self._replay: tuple[str, str | None] | None = None
        # The rows of the block being replayed row by row (or the last) done so far: read by the
        # run when a worker raised, and by the watchdog when it gives up on the run.
        self.progress = ReplayProgress()

    @property
    def current_step(self) -> tuple[datetime, float, int] | None:
        step = self._current_step
        if step is None:
            return None
        when, since, candles = step
        return when if isinstance(when, datetime) else datetime.fromtimestamp(when, UTC), since, candles

    def _build_base_context(self, symbol: str) -> BaseContextDTO:
        """The open frame's base context of symbol (built once per tick, by the tick cache, on first use)."""
        tick, portfolio = self._open[symbol]
        return BaseContextDTO.trusted(
            asset=tick.symbol,
            timestamp=tick.timestamp,
            open=tick.open,
            high=tick.high,
            low=tick.low,
            close=tick.close,
            volume=tick.volume,
            portfolio=portfolio_snapshot(portfolio),
        )

    @property
    def history_needed(self) -> int:
        return self._history.capacity

    @property
    def workforce(self) -> list[IWorker]:
        return list(self._workforce)

    def share(self, worker: IWorker, source: SharedColumns) -> None:
        """From now on, a context worker's output is source's columns (a block columnar, a row's
        DTOs tick by tick) instead of its own: computed once for several runs. Before the first block."""
        self._shared[worker] = source
        self._workforce_steps = [(step, context) for step, context in self._workforce_steps if step is not worker]

    def abandon(self) -> None:
        self._abandoned = True

    def process(self, candles: Candles, stop: threading.Event, columnar: bool = True) -> Replayed:
        """Replay a block of candles (or a window of several symbols'), columnar when
        `why_not_columnar` allows, else frame by frame (a frame: the candles of one open time;
        a block of one symbol: each row), only until stop is set (checked between frames, or
        between columnar steps). columnar=False: frame by frame whatever the workforce (the
        reference a columnar replay is checked against). While it replays frame by frame, and
        after a worker raised, `progress` tells what it has done (its rows in frame order)."""
        self.progress = progress = ReplayProgress()
        why_not = self.why_not_columnar(candles) if columnar else "row by row asked for"
        if len(candles) > 1:  # a backtest's block (a live run's candles come one at a time)
            replay = ("tick_by_tick" if why_not else "columnar", why_not)
            if replay != self._replay:
                self._replay = replay
                log.info("backtest_replay", mode=replay[0], reason=why_not)
        if why_not is None:
            return self._process_columnar(candles, stop)
        for frame in tick_frames(candles):
            if stop.is_set() or self._abandoned:
                break
            progress.processed += self._process_frame(frame)
            progress.rows += len(frame)
        return Replayed(progress.rows, progress.processed)

    def _process_frame(self, frame: Sequence[FrameRow]) -> int:
        """Run the workforce on the frame's ticks (only the context workers on a warm-up tick):
        how many were processed (none of a symbol the strategy does not trade, nor of a candle
        processed before a restart, nor any once the run was abandoned)."""
        opened: list[_OpenRow] = []
        dtos: Mapping[str, Iterable[DTO]] = NO_DTOS
        for candles, row, tick in frame:
            symbol = tick.symbol
            if symbol not in self._assets or self._abandoned:
                continue
            trading = not tick.warmup
            if trading and not self.account.is_new(symbol, tick.timestamp):
                log.warning("candle_already_processed", symbol=symbol, candle_time=tick.timestamp.isoformat())
                continue
            self._history.append(symbol, candles, row, row + 1)
            opened.append((candles, row, tick, trading))
            if self._shared:  # the shared context workers' DTOs of the row, in the workforce's order
                dtos = {**dtos, symbol: [dto for source in self._shared.values() for columns in source.columns(candles)
                                         if (dto := columns.at(row)) is not None]}
            if trading and symbol in self._forced_entries:
                self._forced_entries.discard(symbol)
                log.info("force_entry_signalled", asset=symbol, candle_time=tick.timestamp.isoformat())
                dtos = {**dtos, symbol: [*dtos.get(symbol, ()), FORCED_ENTRY]}
        if not opened or not self._run(opened, self._workforce_steps, dtos):
            return 0
        return len(opened)

    def force_entry(self, asset: str) -> None:
        """An operator's entry: asset's next traded candle starts with a buy opportunity, which the
        link's planners size (and its threats may restrain) as they would any other."""
        if asset not in self._assets:
            raise OperatorOrderError(f"{asset} is not an asset of this strategy ({', '.join(self._assets)})")
        self._forced_entries.add(asset)

    def _run(self, opened: Sequence["_OpenRow"], steps: Sequence[tuple[IWorker, bool]],
             dtos: Mapping[str, Iterable[DTO]] = NO_DTOS) -> bool:
        """A frame (its rows `opened`) around workers (steps: each with whether it is a context
        worker): the account opens every row's tick (marking every asset of the frame before any
        worker sees the account), the cache starts with each asset's dtos, each worker runs on
        every asset of the frame (an acting one only on those traded) in the workforce's order,
        the cache is cleared, the account closes the ticks. False if the run was abandoned
        meanwhile (the frame is then never closed)."""
        context, account, builders = self._context, self.account, self._base_builders
        self._current_step = (opened[0][2].timestamp, time.monotonic(), 1)
        # The account as of the frame's open, taken now and turned into DTOs only if a worker asks.
        open_rows = self._open
        open_rows.clear()
        for _, _, tick, trading in opened:
            symbol = tick.symbol
            open_rows[symbol] = (tick, account.open_tick(tick, trading))
            context.start_new_tick_lazily(symbol, builders.get(symbol) or self._base_context_of(symbol))
            if dtos:
                for dto in dtos.get(symbol, ()):
                    context.set_result_dto(symbol, dto)
        if len(opened) > 1:  # each asset's view of the account once every asset of the frame is marked
            for symbol, (tick, _) in open_rows.items():
                open_rows[symbol] = (tick, account.ledger.snapshot_values(symbol))
        try:
            for worker, context_worker in steps:
                self.current_worker = worker.name
                for _, _, tick, trading in opened:
                    if trading or context_worker:
                        if self._abandoned:
                            return False
                        worker.process(tick.symbol)
        finally:
            self.current_worker = None
            context.clear()
        for _, _, tick, trading in opened:
            account.close_tick(tick.symbol, tick.close, tick.timestamp, trading)
        self._current_step = None  # kept after an error: the failed tick
        if self.recorder is not None:
            equity = (account.ledger.equity(),)
            for candles, row, _, _ in opened:
                self.recorder.closed(candles, range(row, row + 1), equity, account)
        return True

    def _base_context_of(self, symbol: str) -> Callable[[], BaseContextDTO]:
        """What builds symbol's base context of the open frame (made once per symbol)."""
        build = self._base_builders.get(symbol)
        if build is None:
            build = self._base_builders[symbol] = partial(self._build_base_context, symbol)
        return build

    def why_not_columnar(self, candles: Candles) -> str | None:
        """None when `process` may replay this block (or window) columnar; else why its rows go one
        tick at a time."""
        account = self.account
        if self._not_columnar:
            return f"workers without a columnar replay: {', '.join(self._not_columnar)}"
        if len(self._assets) > 1 and self._not_across_assets:
            return f"workers without a columnar replay of several assets: {', '.join(self._not_across_assets)}"
        columns = candles.columns if isinstance(candles, CandleWindow) else (candles,)
        if any(part.warmup.any() for part in columns):
            return "warm-up candles (context workers only)"
        if self._abandoned:
            return "the run was given up on"
        traded = [part for part in columns if len(part) and part.symbol in self._assets]
        if not traded or not all(account.is_new(part.symbol, part.open_time(0)) for part in traded):
            return "candles this run does not trade"
        # A symbol of the window without a candle in it has no order event in it either.
        if not account.can_close_quietly({part.symbol for part in columns}):
            return "the account journals every candle, settles an order or has one of an asset not in these candles"
        return None

    def _process_columnar(self, candles: Candles, stop: threading.Event) -> Replayed:
        """Replay a block (or a window: each symbol's block of one stretch of time) as IWorker's
        columnar contract says (only when `why_not_columnar` is None): every worker prepares each
        symbol's block; then, from where each symbol has got to, every gate names its next active
        row of each symbol; the frames before the earliest of them are quiet (to the account and
        the history in bulk, each worker's `skip` per symbol), and that one is processed as a
        frame of ticks. Stops early once stop is set (between steps, as tick by tick between
        frames). Returns the rows gone through (in frame order) and processed."""
        columns = candles.columns if isinstance(candles, CandleWindow) else (candles,)
        traded = [part for part in columns if len(part) and part.symbol in self._assets]
        try:
            for worker in self._workforce:
                shared = self._shared.get(worker)
                for part in traded:
                    self._step(worker, part, 0)
                    if shared is None:
                        worker.prepare_block(part.symbol, part)
                    else:
                        for produced in shared.columns(part):
                            self._context.set_result_columns(part.symbol, produced)
            starts = [self._replay_alone(traded[0], stop)] if len(traded) == 1 else self._replay_window(traded, stop)
        finally:
            self.current_worker = None
            self._context.clear_block()
        self._current_step = None  # kept after an error: where it failed
        processed = sum(starts)
        if len(columns) == 1:
            return Replayed(processed, processed)
        unfinished = [int(part.open_times[start]) for part, start in zip(traded, starts, strict=True)
                      if start < len(part)]
        if not unfinished:
            return Replayed(len(candles), processed)
        reached = min(unfinished)  # every frame before it is through
        return Replayed(sum(int(np.searchsorted(part.open_times, reached)) for part in columns), processed)

    def _replay_window(self, traded: Sequence[CandleColumns], stop: threading.Event) -> list[int]:
        """The loop of `_process_columnar` over a window's traded symbols: per symbol, the rows done."""
        starts = [0] * len(traded)
        while not self._abandoned and not stop.is_set():
            actives = [self._next_active_row(part, start) for part, start in zip(traded, starts, strict=True)]
            active_time = min((int(part.open_times[row]) for part, row in zip(traded, actives, strict=True)
                               if row < len(part)), default=None)
            # Each symbol's rows before the active frame (all of them when there is none) are quiet.
            stops = [row if active_time is None or (row < len(part) and part.open_times[row] == active_time)
                     else int(np.searchsorted(part.open_times, active_time))
                     for part, row in zip(traded, actives, strict=True)]
            quiet = [(part, range(start, stop_row)) for part, start, stop_row in zip(traded, starts, stops,
                                                                                     strict=True)
                     if stop_row > start]
            if quiet:
                self._close_quietly(quiet)
            if active_time is None:
                starts = stops
                break
            frame = [(part, row) for part, row in zip(traded, stops, strict=True)
                     if row < len(part) and part.open_times[row] == active_time]
            for part, row in frame:
                self._history.append(part.symbol, part, row, row + 1)
            starts = [row + 1 if row < len(part) and part.open_times[row] == active_time else row
                      for part, row in zip(traded, stops, strict=True)]
            self._process_active_frame(frame)
        return starts

    def _replay_alone(self, candles: CandleColumns, stop: threading.Event) -> int:
        """The loop of `_process_columnar` for a block of one traded symbol, whose frames are its
        rows (the window's loop with one part, without its per-symbol lists: an active row of a
        sweep or a backtest costs this loop's steps): the rows done."""
        start, size = 0, len(candles)
        while start < size and not self._abandoned and not stop.is_set():
            row = self._next_active_row(candles, start)
            if row > start:
                self._close_quietly(((candles, range(start, row)),))
            start = row
            if row < size:
                self._history.append(candles.symbol, candles, row, row + 1)
                start = row + 1
                self._process_active_frame(((candles, row),))
        return start

    def _next_active_row(self, candles: CandleColumns, start: int) -> int:
        """The first row of candles at or after start on which an order may fill or a gate acts."""
        symbol = candles.symbol
        if start >= len(candles):
            return start
        portfolio = portfolio_snapshot(self.account.ledger.snapshot_values(symbol))
        active = self.account.next_order_row(symbol, candles, start)  # an order may fill there
        for worker in self._gates:
            self._step(worker, candles, start)
            active = min(active, worker.next_active_row(symbol, candles, start, portfolio))
        return min(active, len(candles))

    def _step(self, worker: IWorker, candles: CandleColumns, start: int) -> None:
        """For the watchdog: worker now works on the block's rows from start on (a vector step
        may take as long as that many ticks)."""
        self.current_worker = worker.name
        # Its epoch seconds: a date-time is made only if the watchdog reads it (`current_step`).
        self._current_step = (int(candles.open_times[start]), time.monotonic(), len(candles) - start)

    def _close_quietly(self, quiet: Sequence[tuple[CandleColumns, range]]) -> None:
        """Rows no worker acts on (each symbol's, of one stretch of time): to the account, the
        history and the recorder in bulk (the recorder's rows in frame order), then the workers' skip."""
        account, recorder = self.account, self.recorder
        equities = account.close_quiet_candles(quiet, equities=recorder is not None)
        if recorder is not None and equities is not None:
            if len(quiet) == 1:
                (candles, rows), (curve,) = quiet[0], equities
                recorder.closed(candles, rows, curve, account)
            else:
                values = [row_equities(curve, candles.closes[rows.start:rows.stop])
                          for (candles, rows), curve in zip(quiet, equities, strict=True)]
                for _, index, row, equity in sorted(
                        (int(candles.open_times[row]), index, row, values[index][row - rows.start])
                        for index, (candles, rows) in enumerate(quiet) for row in rows):
                    recorder.closed(quiet[index][0], range(row, row + 1), (equity,), account)
        for worker in self._skippers:
            for candles, rows in quiet:
                self._step(worker, candles, rows.start)
                worker.skip(candles.symbol, candles, rows)
        for candles, rows in quiet:
            self._history.append(candles.symbol, candles, rows.start, rows.stop)

    def _process_active_frame(self, frame: Sequence[tuple[CandleColumns, int]]) -> None:
        """`process` for the frame's ticks, their context DTOs taken from the blocks' columns."""
        dtos = {}
        for candles, row in frame:
            columns = self._context.block_columns(candles.symbol)
            dtos[candles.symbol] = [dto for dto in (column.at(row) for column in columns) if dto is not None]
        self._run([(candles, row, tick_at(candles, row), True) for candles, row in frame], self._acting_steps, dtos)
