"""Plans, orders and fills."""

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from backend.dtos.base import DTO


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class TradePlanDTO(DTO):
    side: OrderSide
    quantity: float = Field(gt=0)
    reason: str
    stop_price: float | None = None
    target_price: float | None = None


class OrderDTO(DTO):
    asset: str
    side: OrderSide
    quantity: float = Field(gt=0)
    reference_price: float = Field(gt=0)  # the price the plan was made at
    reason: str


class FillDTO(DTO):
    asset: str
    side: OrderSide
    quantity: float
    price: float
    fee: float
    timestamp: datetime
    order_id: str | None = None  # the exchange's id for live orders
