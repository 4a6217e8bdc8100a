"""One strategy run's report files, written while it runs: `trades.csv` (a row per fill),
`orders.csv` (a row per state an order went through), `equity.csv` (a row per processed tick)
and, once it has ended, `summary.json`.

Invariants: memory does not grow with the run (rows go to the files as they come; the metrics are
a PerformanceTracker; what an order's fills came to is kept only while it is not done); until
`close()` only the run's own thread calls in, and after it every call is a no-op (a run given up
on may still close a tick late); a file that cannot be written never fails the run: recording
stops and `report_write_failed` is logged once; an order's state that carries a fill is written
with that fill (the account tells the fill right after the state).
"""

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

from backend.dtos import FillDTO
from backend.equity_curve import EquityLine, row_equities
from backend.interfaces.broker import OrderView
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data.timeframes import timeframe_seconds
from backend.performance import Performance, PerformanceTracker
from backend.portfolio import Ledger, StrategyAccount
from services.strategy_run import RunSummary
from services.tick_cache_manager import TickCacheManager

log = structlog.get_logger(__name__)

TRADE_COLUMNS = ("time", "symbol", "side", "quantity", "price", "notional", "fee",
                 "position_after", "cash_after", "equity_after", "order_id")
EQUITY_COLUMNS = ("time", "symbol", "close", "position", "cash", "equity", "drawdown_pct")
ORDER_COLUMNS = ("time", "client_order_id", "symbol", "side", "type", "quantity", "limit_price", "trigger_price",
                 "state", "filled_quantity", "average_price", "fee", "protective", "reason", "detail")


class RunRecorder:
    """Attach it to a run's tick manager before the run starts; `close()` and `write_summary()`
    once it has ended."""

    def __init__(self, directory: Path, link_id: str, timeframe: str, manager: TickCacheManager) -> None:
        """Creates the directory and the two CSV files (headers only): an OSError is the caller's."""
        self.directory = directory
        self.link_id = link_id
        self.timeframe = timeframe
        self._account = manager.account
        self.starting_equity = self._account.ledger.equity()
        self.performance = PerformanceTracker(self.starting_equity, timeframe_seconds(timeframe))
        self.equity_rows = 0
        self.trades_recorded = 0
        self.first_tick: datetime | None = None
        self.last_tick: datetime | None = None
        self._closed = False
        directory.mkdir(parents=True, exist_ok=True)
        self._trades_file = self._open("trades.csv", TRADE_COLUMNS)
        self._orders_file = self._open("orders.csv", ORDER_COLUMNS)
        self._equity_file = self._open("equity.csv", EQUITY_COLUMNS)
        self._trades = csv.writer(self._trades_file)
        self._orders = csv.writer(self._orders_file)
        self._equity = csv.writer(self._equity_file)
        self._file_of = {id(self._trades): self._trades_file, id(self._orders): self._orders_file,
                         id(self._equity): self._equity_file}
        # A live or paper run's rows reach the files as they come (a candle a minute at most, so
        # `tail -f` shows them and a kill -9 loses none); a backtest's are buffered, for speed.
        self._flush_each_row = self._account.durable
        manager.recorder = self
        self._account.on_fill = self.fill
        self._account.on_order = self.order

    def _open(self, name: str, columns: Iterable[str]) -> TextIO:
        file = open(self.directory / name, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed by close())
        csv.writer(file).writerow(columns)
        return file

    def closed(self, candles: CandleColumns, rows: range, equities: EquityLine | Sequence[float],
               account: StrategyAccount) -> None:
        for epoch, close, equity in zip(candles.open_times[rows.start:rows.stop].tolist(),
                                        candles.close_values[rows.start:rows.stop],
                                        row_equities(equities, candles.closes[rows.start:rows.stop]), strict=True):
            self._close(datetime.fromtimestamp(epoch, UTC), candles.symbol, close, equity, account.ledger)

    def _close(self, time: datetime, symbol: str, close: float, equity: float, ledger: Ledger) -> None:
        """One row of equity.csv: a candle closed with the account at equity."""
        if self._closed:
            return
        drawdown = self.performance.add(time, equity, bool(ledger.positions))
        if self.first_tick is None:
            self.first_tick = time
        self.last_tick = time
        self.equity_rows += 1
        self._write(self._equity, (time.isoformat(), symbol, close, ledger.position(symbol).qty, ledger.cash,
                                   equity, drawdown))

    def fill(self, fill: FillDTO) -> None:
        if self._closed:
            return
        ledger = self._account.ledger
        self.trades_recorded += 1
        self._write(self._trades, (
            fill.timestamp.isoformat(), fill.asset, fill.side.value, fill.quantity, fill.price,
            fill.quantity * fill.price, fill.fee, ledger.position(fill.asset).qty, ledger.cash, ledger.equity(),
            fill.order_id or "",
        ))

    def order(self, order: OrderView, time: datetime) -> None:
        """A state the account booked for order, on the candle opened at time."""
        if self._closed:
            return
        self._write(self._orders, (
            time.isoformat(), order.client_order_id, order.asset, order.side.value, order.order_type.value,
            order.quantity, _blank(order.limit_price), _blank(order.trigger_price), order.status.value,
            order.filled_quantity, _blank(order.average_price or None), order.fee, order.protective, order.reason,
            order.detail or "",
        ))

    def _write(self, writer: Any, row: tuple) -> None:
        try:
            writer.writerow(row)
            if self._flush_each_row:
                self._file_of[id(writer)].flush()
        except (OSError, ValueError) as exc:  # disk full: stop recording, not trading
            if self._closed:  # closed meanwhile by the main thread (a run given up on): nothing lost
                return
            self.close()
            log.error("report_write_failed", path=str(self.directory), error=str(exc))

    def close(self) -> None:
        """Flush and close the CSV files; later calls of the run are ignored."""
        self._closed = True
        for file in (self._trades_file, self._orders_file, self._equity_file):
            try:
                file.close()
            except OSError as exc:
                log.error("report_write_failed", path=file.name, error=str(exc))

    def metrics(self) -> Performance:
        return self.performance.result()

    def write_summary(self, summary: RunSummary) -> dict[str, Any]:
        """summary.json: the run's `strategy_summary` fields as logged, then what the report adds."""
        content: dict[str, Any] = {
            **summary.as_log_fields(),
            "timeframe": self.timeframe,
            "first_tick": self.first_tick.isoformat() if self.first_tick else None,
            "last_tick": self.last_tick.isoformat() if self.last_tick else None,
            "equity_rows": self.equity_rows,
            "trades_recorded": self.trades_recorded,
            "metrics": asdict(self.metrics()),
            "trade_stats": asdict(summary.trade_stats),
        }
        (self.directory / "summary.json").write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        return content


def _blank(value: float | None) -> float | str:
    """An empty cell for a figure that does not exist (None) or is not known (NaN)."""
    return "" if value is None or math.isnan(value) else value
