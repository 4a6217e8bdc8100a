from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar

from backend.dtos import DTO, BaseContextDTO

T = TypeVar("T", bound=DTO)
C = TypeVar("C", bound="DtoColumns")


class DtoColumns(ABC):
    """One DTO type's values over the rows of a block of candles (a backtest's columnar replay):
    what a context worker would have written into the tick cache on each of those rows."""

    dto_type: type[DTO]

    @abstractmethod
    def at(self, row: int) -> DTO | None:
        """The DTO the worker would have written on row (None: it would have written none)."""


class ITradingContextProvider(ABC):
    """The tick cache of ONE strategy run. It knows nothing of strategies: isolation comes from
    every strategy run owning its own instance."""

    @abstractmethod
    def start_new_tick(self, base_context: BaseContextDTO) -> None:
        """Open a tick for base_context.asset; earlier DTOs of that asset are dropped."""

    def start_new_tick_lazily(self, asset: str, base_context: Callable[[], BaseContextDTO]) -> None:
        """`start_new_tick(base_context())`, except that a provider may call base_context only
        when a worker first asks for it (it must then give the same DTO whenever it is called
        within the tick)."""
        self.start_new_tick(base_context())

    @abstractmethod
    def get_base_context(self, asset: str) -> BaseContextDTO: ...

    @abstractmethod
    def get_required_dtos(
        self, asset: str, dto_types: Sequence[type[DTO]], requester: str
    ) -> dict[type[DTO], DTO]:
        """The DTOs of the given types; raises MissingDTOError naming requester and type."""

    @abstractmethod
    def set_result_dto(self, asset: str, dto: DTO) -> None: ...

    @abstractmethod
    def has_dto(self, asset: str, dto_type: type[DTO]) -> bool: ...

    def find_dto(self, asset: str, dto_type: type[T]) -> T | None:
        """The DTO of that type this tick, or None: `has_dto` and `get_required_dtos` in one
        look-up (a provider may override it with a faster one)."""
        if not self.has_dto(asset, dto_type):
            return None
        return self.get_required_dtos(asset, [dto_type], "find_dto")[dto_type]  # type: ignore[return-value]

    @abstractmethod
    def clear(self) -> None:
        """End the tick: drop every cached DTO."""

    # --- a block of candles (a backtest's columnar replay, see IWorker.columnar) ---------------

    @abstractmethod
    def set_result_columns(self, asset: str, columns: "DtoColumns") -> None:
        """A context worker's output over the current block of asset's candles."""

    @abstractmethod
    def find_columns(self, asset: str, columns_type: type[C]) -> C | None:
        """The current block's columns of that type for asset, or None."""

    @abstractmethod
    def block_columns(self, asset: str) -> Sequence["DtoColumns"]:
        """Every column set of the current block of asset (the run builds a row's DTOs from them)."""

    @abstractmethod
    def clear_block(self) -> None:
        """End the block: drop every column set."""
