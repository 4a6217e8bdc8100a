from pydantic import BaseModel, ConfigDict


class DTO(BaseModel):
    """Immutable value written once per tick into a strategy's tick cache."""

    model_config = ConfigDict(frozen=True, extra="forbid")
