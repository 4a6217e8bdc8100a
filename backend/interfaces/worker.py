from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from backend.dtos import DTO, BaseContextDTO, PortfolioSnapshotDTO
from backend.errors import MissingDTOError
from backend.interfaces.broker import IBroker
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.context_provider import DtoColumns, DtoRows, ITradingContextProvider
from backend.interfaces.ohlcv_provider import Candle, IOhlcvProvider

T = TypeVar("T", bound=DTO)


class WorkerCategory(StrEnum):
    """Categories in the order they run on every tick."""

    CONTEXT = "context"
    OPPORTUNITY = "opportunity"
    THREAT = "threat"
    PLANNING = "planning"
    EXECUTION = "execution"


class WorkerParams(BaseModel):
    """Base of every worker's params model; unknown keys are config errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def history_needed(self) -> int:
        """Consecutive closed candles per asset the worker so configured needs (none by default):
        at most this many it reads from `ohlcv`, and as many it must see before its output is warm.
        The run keeps the largest need of its workforce, and that is its warm-up length."""
        return 0


@dataclass(frozen=True)
class WorkerServices:
    """What a strategy run hands every one of its workers, as one bundle (constructor injection).

    All of it belongs to that one run: its tick cache, its broker (orders go to the run's own
    account, which sizes, journals and books them), its candle history and the length of its
    candles (the blueprint's timeframe; None where no run's candles are known, and then a worker
    that needs it says so when it is built). A new service is one more field here, not a special
    case per worker category.
    """

    context: ITradingContextProvider
    broker: IBroker
    ohlcv: IOhlcvProvider
    timeframe: timedelta | None = None


class IWorker(ABC):
    """One step of a strategy's per-tick pipeline.

    The class declares what it reads and writes, so a workforce can be checked before it runs:
    `requires` must have been produced by an earlier worker, `optional` may be absent this tick.
    Its services arrive by constructor injection, as one WorkerServices; a worker holds no
    strategy id. Its params' `history_needed()` declares how many recent candles it reads from
    `ohlcv`.

    Columnar replay (backtests). A worker with `columnar = True` also runs on a block of candles
    at once, and a run whose workers all do replays a backtest's blocks that way: every worker's
    `prepare_block`, then, from the block's first row, the rows up to the first one some worker
    names in `next_active_row` are *quiet* (their candles go to the account and the history in
    bulk and each worker's `skip` is told of them), and that *active* row is processed as a tick:
    its context DTOs are taken from the block's columns, the other workers' `process` runs. The
    contract that keeps both replays' trades identical:
    - a context worker's `prepare_block` writes, through `context.set_result_columns`, the DTOs
      its `process` would have written on every row of the block (any DtoColumns of its DTO type;
      a CandleStepWorker does so from the one step `process` runs), and leaves its own state as
      `process` would have left it after the block's last row. Consumers find them by DTO type,
      never by the producer's class. They follow from its params, the candles (the block, and
      the history before it) and the columns of the context workers before it, never from the
      account: runs with the same context workers may be handed one instance's columns (a
      sweep's combinations, services.shared_context), read-only;
    - any other worker is active on every row unless it says otherwise (slower, never wrong). It
      says so in one of two ways. It names its rows: `next_active_row` is never later than the
      first row at or after `start` where its `process` could write a DTO, place an order or
      change its state other than as `skip` will, given the account as it is (it stays so over
      quiet rows, but for the prices); naming a row too early is always safe. Or it declares
      `acts_only_on_signals = True`: on a row no other worker names, its `process` does nothing
      `skip` would not, because it only reacts to the DTOs the other non-context workers write on
      a tick (a planner sizing a signal, an executor) or only restrains them (below); it then
      runs only on the rows the others name;
    - `skip(asset, candles, rows)` brings its state to where `process` on those quiet rows would;
    - a threat only restrains (ThreatAction): a threat worker names only the rows where it would
      raise EXIT_POSITIONS while a position is held. On every other row its signal can only stop
      what another worker would do there, and any row another worker names runs all of them.

    Several assets (a backtest environment of several symbols, whose candles of one open time are
    one frame: see services.tick_cache_manager). A run trading several assets is replayed columnar
    only when every worker also declares `columnar_across_assets = True`: each symbol's block of a
    window is prepared (`prepare_block`) before any other call, then the calls for the assets
    interleave, the gates asked about every asset before each active frame. So what it keeps of a
    block is kept per asset, and its `next_active_row` names rows from its asset's candles and the
    account's cash and position in that asset; one that reads the account's equity (which moves
    with the price of every asset held) does not qualify. Otherwise the run replays tick by tick.
    """

    plugin_name: ClassVar[str]
    category: ClassVar[WorkerCategory]
    Params: ClassVar[type[WorkerParams]] = WorkerParams
    requires: ClassVar[tuple[type[DTO], ...]] = ()
    optional: ClassVar[tuple[type[DTO], ...]] = ()
    produces: ClassVar[tuple[type[DTO], ...]] = ()
    columnar: ClassVar[bool] = False  # implements the columnar replay's contract (class docstring)
    # Its columnar replay holds for a run of several assets too (class docstring).
    columnar_across_assets: ClassVar[bool] = False
    # Never acts on a row unless another worker does (columnar replay: class docstring).
    acts_only_on_signals: ClassVar[bool] = False

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        self.params = params
        self.services = services
        self.context = services.context
        self.ohlcv = services.ohlcv

    @cached_property
    def name(self) -> str:
        """The built-in plugin name; a plugin loaded by import path may leave `plugin_name` out and
        is then named by its import path."""
        worker = type(self)
        return getattr(worker, "plugin_name", None) or f"{worker.__module__}:{worker.__qualname__}"

    @abstractmethod
    def process(self, asset: str) -> None:
        """Run this worker for asset on the current tick."""

    # --- columnar replay (only called when `columnar` is True) -----------------------------------

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:  # noqa: B027 (most have nothing to do)
        """A new block of asset's candles: a context worker writes its columns for it."""

    def next_active_row(self, asset: str, candles: CandleColumns, start: int, portfolio: PortfolioSnapshotDTO) -> int:
        """The first row at or after start on which this worker may act (len(candles): none);
        portfolio: the account now, as it stays over quiet rows, but for the prices. By default
        every row: a worker that names none is active on each (slower, never wrong)."""
        return start

    def skip(self, asset: str, candles: CandleColumns, rows: range) -> None:  # noqa: B027 (stateless by default)
        """rows of the block were quiet: update the state `process` keeps from row to row."""

    def _base(self, asset: str) -> BaseContextDTO:
        return self.context.get_base_context(asset)

    def _require(self, asset: str, dto_type: type[T]) -> T:
        dto = self.context.find_dto(asset, dto_type)
        if dto is None:
            raise MissingDTOError(self.name, dto_type, asset)
        return dto

    def _optional(self, asset: str, dto_type: type[T]) -> T | None:
        return self.context.find_dto(asset, dto_type)

    def _require_columns(self, asset: str, dto_type: type[T]) -> DtoColumns[T]:
        """The current block's columns of a DTO this worker requires (the factory checked at load
        that a columnar worker produces it)."""
        columns = self.context.find_columns(asset, dto_type)
        if columns is None:
            raise MissingDTOError(self.name, dto_type, asset)
        return columns

    def _candle(self, asset: str) -> Candle:
        """The current tick's candle from the history (needs a declared need of at least 1)."""
        return self.ohlcv.latest(asset)


class CandleStepWorker(IWorker):
    """A context worker written as one step per candle, columnar by construction: `step` gives the
    DTO of a candle (of its one produced type; None: none) and moves the state it keeps to after
    that candle; `process` runs it on the tick's candle, `prepare_block` on every row of a block
    (into DtoRows). Both replays then agree without a word more. The price: a Candle built per row,
    about a microsecond; a worker that needs more speed writes its own `prepare_block`.

    Its params must declare a `history_needed()` of at least 1 (the tick's candle is read from
    the history), which its constructor checks."""

    category = WorkerCategory.CONTEXT
    columnar = True
    columnar_across_assets = True  # its columns are its steps, asset by asset, as tick by tick

    def __init__(self, params: WorkerParams, services: WorkerServices) -> None:
        super().__init__(params, services)
        if params.history_needed() < 1:
            raise ValueError("a CandleStepWorker's params must declare a history_needed() of at least 1")

    @abstractmethod
    def step(self, asset: str, candle: Candle) -> DTO | None:
        """The DTO of asset's next candle; the state kept from candle to candle moves past it."""

    def process(self, asset: str) -> None:
        dto = self.step(asset, self._candle(asset))
        if dto is not None:
            self.context.set_result_dto(asset, dto)

    def prepare_block(self, asset: str, candles: CandleColumns) -> None:
        dtos = [self.step(asset, candles.candle(row)) for row in range(len(candles))]
        self.context.set_result_columns(asset, DtoRows(self.produces[0], dtos))
