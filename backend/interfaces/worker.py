from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from backend.dtos import DTO, BaseContextDTO
from backend.errors import MissingDTOError
from backend.interfaces.broker import IBroker
from backend.interfaces.context_provider import ITradingContextProvider
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
    account, which sizes, journals and books them) and its candle history. A new service is one
    more field here, not a special case per worker category.
    """

    context: ITradingContextProvider
    broker: IBroker
    ohlcv: IOhlcvProvider


class IWorker(ABC):
    """One step of a strategy's per-tick pipeline.

    The class declares what it reads and writes, so a workforce can be checked before it runs:
    `requires` must have been produced by an earlier worker, `optional` may be absent this tick.
    Its services arrive by constructor injection, as one WorkerServices; a worker holds no
    strategy id. Its params' `history_needed()` declares how many recent candles it reads from
    `ohlcv`.
    """

    plugin_name: ClassVar[str]
    category: ClassVar[WorkerCategory]
    Params: ClassVar[type[WorkerParams]] = WorkerParams
    requires: ClassVar[tuple[type[DTO], ...]] = ()
    optional: ClassVar[tuple[type[DTO], ...]] = ()
    produces: ClassVar[tuple[type[DTO], ...]] = ()

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

    def _base(self, asset: str) -> BaseContextDTO:
        return self.context.get_base_context(asset)

    def _require(self, asset: str, dto_type: type[T]) -> T:
        dto = self.context.find_dto(asset, dto_type)
        if dto is None:
            raise MissingDTOError(self.name, dto_type, asset)
        return dto

    def _optional(self, asset: str, dto_type: type[T]) -> T | None:
        return self.context.find_dto(asset, dto_type)

    def _candle(self, asset: str) -> Candle:
        """The current tick's candle from the history (needs a declared need of at least 1)."""
        return self.ohlcv.latest(asset)
