"""How the simulator (backtests and paper trading) fills orders: fees, slippage and the limit rule.

Kraken's default spot fees: 0.16 % maker (an order that rested on the book), 0.26 % taker (market
orders and triggered stops), the entry tier of https://www.kraken.com/features/fee-schedule.
"""

from dataclasses import dataclass
from typing import Literal

KRAKEN_MAKER_FEE_RATE = 0.0016
KRAKEN_TAKER_FEE_RATE = 0.0026


@dataclass(frozen=True)
class FillRules:
    maker_fee_rate: float = KRAKEN_MAKER_FEE_RATE
    taker_fee_rate: float = KRAKEN_TAKER_FEE_RATE
    slippage_bps: float = 0.0  # against market orders and triggered stops, never against a limit
    # A resting limit fills when the candle trades through its price ("through": strictly beyond),
    # or as soon as it touches it ("touch").
    limit_fill: Literal["touch", "through"] = "through"
