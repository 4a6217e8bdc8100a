from collections.abc import Callable, Sequence
from typing import TypeVar

from backend.dtos import DTO, BaseContextDTO
from backend.errors import MissingDTOError
from backend.interfaces import ITradingContextProvider

T = TypeVar("T", bound=DTO)


class TradingContextProvider(ITradingContextProvider):
    """In-memory tick cache: {asset: {DTO type: DTO}} for the current tick only.

    Used by one strategy run's thread only, so it needs no lock.
    """

    def __init__(self) -> None:
        self._base: dict[str, BaseContextDTO | Callable[[], BaseContextDTO]] = {}  # a DTO, or what builds it
        self._cache: dict[str, dict[type[DTO], DTO]] = {}

    def start_new_tick(self, base_context: BaseContextDTO) -> None:
        self._base[base_context.asset] = base_context
        self._cache[base_context.asset] = {}

    def start_new_tick_lazily(self, asset: str, base_context: Callable[[], BaseContextDTO]) -> None:
        # Many ticks of many strategies never look at it: built on the first get_base_context.
        self._base[asset] = base_context
        self._cache[asset] = {}

    def get_base_context(self, asset: str) -> BaseContextDTO:
        try:
            base = self._base[asset]
        except KeyError:
            raise RuntimeError(f"no tick is open for {asset}") from None
        if not isinstance(base, BaseContextDTO):
            base = self._base[asset] = base()
        return base

    def get_required_dtos(
        self, asset: str, dto_types: Sequence[type[DTO]], requester: str
    ) -> dict[type[DTO], DTO]:
        cached = self._cache.get(asset, {})
        for dto_type in dto_types:
            if dto_type not in cached:
                raise MissingDTOError(requester, dto_type, asset)
        return {dto_type: cached[dto_type] for dto_type in dto_types}

    def find_dto(self, asset: str, dto_type: type[T]) -> T | None:
        cached = self._cache.get(asset)
        return None if cached is None else cached.get(dto_type)  # type: ignore[return-value]

    def set_result_dto(self, asset: str, dto: DTO) -> None:
        try:
            self._cache[asset][type(dto)] = dto
        except KeyError:
            raise RuntimeError(f"no tick is open for {asset}") from None

    def has_dto(self, asset: str, dto_type: type[DTO]) -> bool:
        return dto_type in self._cache.get(asset, {})

    def clear(self) -> None:
        self._base.clear()
        self._cache.clear()
