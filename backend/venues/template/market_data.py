"""The environment's market data: closed candles of its symbols and timeframe, each as a one-row
block (backend.market_data.raw_tick.columns_of; see the Kraken sources).

Invariants (see backend/venues/kraken/market_data.py and streaming.py): a candle is handed out
once it is closed, never while it forms; in time order per symbol; a gap is marked
(missing_before), never filled; `prepare` checks the symbols and the timeframe against the
exchange (SettingError naming the key) before any thread starts.
"""

import threading
from collections.abc import Iterator
from datetime import datetime

from backend.interfaces.candle_columns import CandleColumns
from backend.market_data import TickSource
from backend.venues.template.client import TemplateClient
from backend.venues.template.settings import TemplateSettings


class TemplateMarketData(TickSource):
    def __init__(self, settings: TemplateSettings, client: TemplateClient) -> None:
        self._settings = settings
        self._client = client

    def prepare(self) -> None:
        raise NotImplementedError("check symbols and timeframe; ExchangeUnavailableError when unreachable")

    def resume_after(self, cursors: dict[str, datetime]) -> None:
        raise NotImplementedError("replay the candles closed since each cursor as warm-up")

    def blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        raise NotImplementedError("yield each closed candle as a one-row block until stop is set")
