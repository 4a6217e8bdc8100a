"""ccxt.pro's Kraken client, subclassed for one websocket connection each: the candle stream
(`market_data: websocket`, streaming.py) and the authenticated executions channel (executions.py).

Invariant: imported only where a connection is made, never at the top of a module: ccxt.pro and
ccxt's async client, which a daemon on REST alone never needs (Kraken's alone: lazy_ccxt.py).
"""

import asyncio
from collections.abc import Callable
from typing import Any

import ccxt.pro

from backend.venues.kraken.market_data import Candle


class StreamClient(ccxt.pro.kraken):
    """ccxt.pro's Kraken client for one connection, telling when candles arrive.

    ccxt resolves a watch only when one is pending as a message is handled, so a message coming
    right between two watches would wait for the next one to be seen; `candles_changed` stays set
    until read. `connections` counts dials: a watch issued after the connection was lost redials
    on its own, without the backfill a new connection needs.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.candles_changed = asyncio.Event()
        self.connections = 0
        self.message_sent: float | None = None  # the last candle message's own timestamp (epoch seconds)

    def on_connected(self, client: Any, message: Any = None) -> None:
        super().on_connected(client, message)
        self.connections += 1

    def handle_ohlcv(self, client: Any, message: dict) -> None:
        super().handle_ohlcv(client, message)
        sent_ms = self.parse8601(message.get("timestamp"))
        self.message_sent = sent_ms / 1000 if sent_ms is not None else None
        self.candles_changed.set()

    def cached_candles(self, symbol: str, timeframe: str) -> list[Candle]:
        """Every candle of this connection, one per open time (the latest version), in arrival order."""
        return list(self.ohlcvs.get(symbol, {}).get(timeframe, []))


class ExecutionsClient(ccxt.pro.kraken):
    """ccxt.pro's Kraken for one connection of the executions channel. Every executions message goes
    to `heard` as it is handled, whether or not a watch is pending (ccxt hands an update to
    watch_orders only while one waits, and a trade message only to watch_my_trades); the token
    comes from `token` (blocking: run off the loop), asked once per connection."""

    def __init__(self, config: dict[str, Any], token: Callable[[], str],
                 heard: Callable[[list[dict], bool], None]) -> None:
        super().__init__(config)
        self._token_source = token
        self._token: str | None = None
        self._heard_reports = heard

    async def authenticate(self, params: dict | None = None) -> str:
        if self._token is None:
            self._token = await asyncio.to_thread(self._token_source)
        return self._token

    def handle_message(self, client: Any, message: Any) -> None:
        if isinstance(message, dict) and message.get("channel") == "executions":
            self._heard_reports([r for r in message.get("data") or [] if isinstance(r, dict)],
                                message.get("type") == "snapshot")
        super().handle_message(client, message)
