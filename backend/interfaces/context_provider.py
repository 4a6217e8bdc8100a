from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TypeVar

from backend.dtos import DTO, BaseContextDTO

T = TypeVar("T", bound=DTO)


class ITradingContextProvider(ABC):
    """The tick cache of ONE strategy run. It knows nothing of strategies: isolation comes from
    every strategy run owning its own instance."""

    @abstractmethod
    def start_new_tick(self, base_context: BaseContextDTO) -> None:
        """Open a tick for base_context.asset; earlier DTOs of that asset are dropped."""

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

    @abstractmethod
    def clear(self) -> None:
        """End the tick: drop every cached DTO."""
