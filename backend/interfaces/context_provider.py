from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

from backend.dtos import DTO, BaseContextDTO

T = TypeVar("T", bound=DTO)


class DtoColumns(ABC, Generic[T]):
    """One DTO type's values over the rows of a block of candles (a backtest's columnar replay):
    what a context worker would have written into the tick cache on each of those rows.

    Consumers find them by the DTO type (`find_columns(asset, EmaDTO)`) and read them through
    this interface only, never through the producer's class: any producer of the DTO will do."""

    dto_type: type[T]

    @abstractmethod
    def at(self, row: int) -> T | None:
        """The DTO the worker would have written on row (None: it would have written none)."""

    def __len__(self) -> int:
        """The block's rows: the default `values` needs it (DtoRows and the shipped columns say it)."""
        raise TypeError(f"{type(self).__name__} does not say how many rows it has (define __len__)")

    def values(self, field: str, dtype: type = float) -> np.ndarray:
        """The field of every row's DTO as a numpy array of dtype (float: None becomes NaN; object:
        the values themselves), row by row through `at` over `len(self)` rows. A producer may give
        the fields its consumers read in bulk faster; the values must be the same."""
        dtos = (self.at(row) for row in range(len(self)))
        found = (None if dto is None else getattr(dto, field) for dto in dtos)
        if dtype is object:
            return np.fromiter(found, dtype=object, count=len(self))
        return np.array(list(found), dtype=dtype)


class DtoRows(DtoColumns[T]):
    """The DTO of every row of a block as a plain list: the columns of a worker whose block method
    runs its step on every row."""

    def __init__(self, dto_type: type[T], dtos: Sequence[T | None]) -> None:
        self.dto_type = dto_type
        self._dtos = dtos

    def at(self, row: int) -> T | None:
        return self._dtos[row]

    def __len__(self) -> int:
        return len(self._dtos)


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
    def set_result_columns(self, asset: str, columns: DtoColumns) -> None:
        """A context worker's output over the current block of asset's candles, its DTO type's."""

    @abstractmethod
    def find_columns(self, asset: str, dto_type: type[T]) -> DtoColumns[T] | None:
        """The current block's columns of that DTO type for asset, or None."""

    @abstractmethod
    def block_columns(self, asset: str) -> Sequence[DtoColumns]:
        """Every column set of the current block of asset (the run builds a row's DTOs from them)."""

    @abstractmethod
    def clear_block(self) -> None:
        """End the block: drop every column set."""
