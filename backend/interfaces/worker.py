from abc import ABC, abstractmethod
from enum import StrEnum
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from backend.dtos import DTO, BaseContextDTO
from backend.interfaces.context_provider import ITradingContextProvider

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


class IWorker(ABC):
    """One step of a strategy's per-tick pipeline.

    The class declares what it reads and writes, so a workforce can be checked before it runs:
    `requires` must have been produced by an earlier worker, `optional` may be absent this tick.
    The tick cache arrives by constructor injection; a worker holds no strategy id.
    """

    plugin_name: ClassVar[str]
    category: ClassVar[WorkerCategory]
    Params: ClassVar[type[WorkerParams]] = WorkerParams
    requires: ClassVar[tuple[type[DTO], ...]] = ()
    optional: ClassVar[tuple[type[DTO], ...]] = ()
    produces: ClassVar[tuple[type[DTO], ...]] = ()

    def __init__(self, params: WorkerParams, context: ITradingContextProvider) -> None:
        self.params = params
        self.context = context

    @property
    def name(self) -> str:
        return self.plugin_name

    @abstractmethod
    def process(self, asset: str) -> None:
        """Run this worker for asset on the current tick."""

    def _base(self, asset: str) -> BaseContextDTO:
        return self.context.get_base_context(asset)

    def _require(self, asset: str, dto_type: type[T]) -> T:
        return self.context.get_required_dtos(asset, [dto_type], self.name)[dto_type]  # type: ignore[return-value]

    def _optional(self, asset: str, dto_type: type[T]) -> T | None:
        return self._require(asset, dto_type) if self.context.has_dto(asset, dto_type) else None
