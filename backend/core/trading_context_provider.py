from collections.abc import Callable, Sequence
from typing import TypeVar

from backend.dtos import DTO, BaseContextDTO
from backend.errors import MissingDTOError
from backend.interfaces import ITradingContextProvider
from backend.interfaces.context_provider import DtoColumns

T = TypeVar("T", bound=DTO)


class TradingContextProvider(ITradingContextProvider):
    """In-memory tick cache: {asset: {DTO type: DTO}} for the current tick only, and, during a
    backtest's columnar replay, {asset: {DTO type: DtoColumns}} for the current block.

    Used by one strategy run's thread only, so it needs no lock.
    """

    def __init__(self) -> None:
        self._base: dict[str, BaseContextDTO | Callable[[], BaseContextDTO]] = {}  # a DTO, or what builds it
        self._cache: dict[str, dict[type[DTO], DTO]] = {}
        self._columns: dict[str, dict[type[DTO], DtoColumns]] = {}

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

    def set_result_columns(self, asset: str, columns: DtoColumns) -> None:
        self._columns.setdefault(asset, {})[columns.dto_type] = columns

    def find_columns(self, asset: str, dto_type: type[T]) -> DtoColumns[T] | None:
        return self._columns.get(asset, {}).get(dto_type)

    def block_columns(self, asset: str) -> Sequence[DtoColumns]:
        return list(self._columns.get(asset, {}).values())

    def clear_block(self) -> None:
        self._columns.clear()
