"""The base of every tick-cache DTO.

Invariant: a DTO built with `DTO(...)` is validated by pydantic (for values from outside: config,
exchange, files); `Model.trusted(...)` builds the same immutable model without validation, for
values the daemon computed itself on the hot path, and fills in the field defaults the same way.
"""

from collections.abc import Callable
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict

_new = object.__new__
# The setters of the slots every model instance has (what object.__setattr__ would find by name on
# each call: `trusted` is called about ten times per active tick).
_set_values, _set_fields_set, _set_extra, _set_private = (
    BaseModel.__dict__[slot].__set__
    for slot in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
)


class DTO(BaseModel):
    """Immutable value of the tick path: a RAW_TICK, or what a worker writes once per tick into
    its strategy's tick cache."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Per class, filled in when pydantic has built it: the defaults `trusted` fills in (values,
    # and factories called per instance), the fields-set every trusted instance shares (a
    # frozen model never changes it), and how many fields there are (a call that names them all,
    # as most on the hot path do, has no default to fill in).
    _trusted_defaults: ClassVar[dict[str, Any]] = {}
    _trusted_factories: ClassVar[dict[str, Callable[[], Any]]] = {}
    _trusted_fields_set: ClassVar[set[str]] = set()
    _trusted_field_count: ClassVar[int] = 0

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        optional = {name: field for name, field in cls.model_fields.items() if not field.is_required()}
        cls._trusted_defaults = {
            name: field.default for name, field in optional.items() if field.default_factory is None
        }
        cls._trusted_factories = {
            name: field.default_factory for name, field in optional.items()  # type: ignore[misc]
            if field.default_factory is not None
        }
        cls._trusted_fields_set = set(cls.model_fields)
        cls._trusted_field_count = len(cls.model_fields)

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """The model from values already of the right types (a float where a float is declared,
        a DTO where a DTO is), without pydantic's validation: about half the cost per tick.
        Never for data from outside the process."""
        if len(values) != cls._trusted_field_count:  # some left to their defaults
            values = {**cls._trusted_defaults, **values}
            for name, factory in cls._trusted_factories.items():
                if name not in values:
                    values[name] = factory()
        dto = _new(cls)
        _set_values(dto, values)
        _set_fields_set(dto, cls._trusted_fields_set)
        _set_extra(dto, None)
        _set_private(dto, None)
        return dto
