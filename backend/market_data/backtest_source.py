"""Replays a historical OHLCV CSV file as RAW_TICKs."""

import csv
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from backend.config.schema import BacktestEnvironment
from backend.errors import ConfigError
from backend.market_data.raw_tick import RawTick
from backend.market_data.tick_source import TickSource

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
Row = tuple[datetime, float, float, float, float, float]


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_row(record: dict[str, str | None]) -> Row:
    if any(record[column] is None for column in COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} fields: {','.join(COLUMNS)}")
    timestamp_text, *number_texts = (str(record[column]) for column in COLUMNS)
    try:
        timestamp = _as_utc(datetime.fromisoformat(timestamp_text))
    except ValueError:
        raise ValueError(f"timestamp {timestamp_text!r} is not an ISO 8601 date-time") from None
    values = []
    for column, text in zip(COLUMNS[1:], number_texts, strict=True):
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"{column} {text!r} is not a number") from None
    open_, high, low, close, volume = values
    if min(open_, high, low, close) <= 0 or volume < 0:
        raise ValueError("prices must be positive and volume not negative")
    if high < max(open_, close, low) or low > min(open_, close):
        raise ValueError(f"high {high} / low {low} do not contain open {open_} and close {close}")
    return timestamp, open_, high, low, close, volume


def load_candles(path: Path, start: datetime, end: datetime) -> list[Row]:
    """Rows with start <= timestamp < end; any malformed row is a ConfigError naming its line."""
    start, end = _as_utc(start), _as_utc(end)
    rows: list[Row] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(path, f"missing column(s): {', '.join(missing)}", "line 1")
            previous: datetime | None = None
            for record in reader:
                where = f"line {reader.line_num}"
                try:
                    row = _parse_row(record)
                except ValueError as exc:
                    raise ConfigError(path, str(exc), where) from None
                if previous is not None and row[0] <= previous:
                    raise ConfigError(path, f"timestamp {row[0].isoformat()} is not after the previous row's", where)
                previous = row[0]
                if start <= row[0] < end:
                    rows.append(row)
    except OSError as exc:
        raise ConfigError(path, f"cannot read data file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "not a UTF-8 text file") from None
    if not rows:
        raise ConfigError(path, f"no candles between {start.isoformat()} and {end.isoformat()}")
    return rows


class BacktestSource(TickSource):
    def __init__(self, environment: BacktestEnvironment) -> None:
        self._symbol = environment.symbol
        self._rows = load_candles(environment.data_file, environment.start, environment.end)
        self.total_ticks = len(self._rows)

    def ticks(self, stop: threading.Event) -> Iterator[RawTick]:
        for timestamp, open_, high, low, close, volume in self._rows:
            if stop.is_set():
                return
            yield RawTick(
                symbol=self._symbol, timestamp=timestamp,
                open=open_, high=high, low=low, close=close, volume=volume,
            )
