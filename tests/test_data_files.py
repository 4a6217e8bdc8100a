"""Backtest data at scale: Parquet replays like CSV, every row of a large file is checked where it
lies (file and line, or file and row), spellings only Python reads still pass, and the reader
streams (its memory does not grow with the file)."""

import csv
import gzip
import threading
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from backend.config.schema import BacktestEnvironment
from backend.errors import ConfigError
from backend.market_data import candle_file, candle_readers
from backend.market_data.backtest_source import BacktestSource
from backend.market_data.candle_file import Hole, read_candle_file
from backend.market_data.detail_candles import DetailCandles
from backend.market_data.raw_tick import ticks_of
from backend.market_data.timeframes import utc_from_epoch
from tests.helpers import REPO, START, backtest_environment, source_ticks

KRAKEN_5M = REPO / "data" / "kraken_xbtusd_5m_2023q1.csv"
HEADER = "timestamp,open,high,low,close,volume"
NEW_YORK = timezone(timedelta(hours=-5))  # in winter


def hour(index: int) -> str:
    return (START + timedelta(hours=index)).isoformat()


def environment(data_file: Path, start: str, end: str, timeframe: str = "1h") -> BacktestEnvironment:
    return BacktestEnvironment.model_validate(
        backtest_environment(str(data_file), start=start, end=end, timeframe=timeframe)
    )


def replay(data_file: Path, start: str, end: str, timeframe: str = "1h") -> tuple[list[tuple], list[dict], int]:
    """(ticks as tuples, the gap lines logged, total_ticks announced up front)."""
    source = BacktestSource(environment(data_file, start, end, timeframe))
    with capture_logs() as logs:
        source.prepare()
        ticks = [(t.timestamp, t.open, t.high, t.low, t.close, t.volume, t.missing_before)
                 for t in source_ticks(source)]
    gap_lines = [{k: v for k, v in log.items() if k != "data_file"} for log in logs
                 if log["event"] in ("data_gaps", "data_gap")]
    return ticks, gap_lines, source.total_ticks or 0


def csv_columns(path: Path) -> dict[str, list[str]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {column: [row[column] for row in rows] for column in HEADER.split(",")}


def write_parquet(path: Path, columns: dict[str, list], types: dict[str, pa.DataType] | None = None) -> Path:
    types = types or {}
    pq.write_table(pa.table({name: pa.array(values, types.get(name)) for name, values in columns.items()}), path)
    return path


def write_lines(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def good_rows(count: int) -> list[str]:
    return [f"{hour(i)},100,101,99,100,1" for i in range(count)]


# --- Parquet --------------------------------------------------------------------------------


def test_parquet_replays_the_same_candles_and_gaps_as_the_csv_of_the_same_data(tmp_path):
    columns = csv_columns(KRAKEN_5M)
    typed = write_parquet(tmp_path / "typed.parquet", {
        "timestamp": [datetime.fromisoformat(value) for value in columns["timestamp"]],
        **{name: [float(value) for value in columns[name]] for name in ("open", "high", "low", "close", "volume")},
    }, {"timestamp": pa.timestamp("ms", "UTC")})
    # Text cells, another column order, capitalised names and an extra column, as a spreadsheet
    # export might have.
    capitalised = {name.title(): cells for name, cells in reversed(columns.items())}
    as_text = write_parquet(tmp_path / "text.pq", {"trades": ["7"] * len(columns["close"]), **capitalised})
    quarter = ("2023-01-01T00:00:00Z", "2023-04-01T00:00:00Z")
    feb_22_hole = ("2023-02-22T00:00:00Z", "2023-02-22T02:00:00Z")
    for start, end in (quarter, feb_22_hole):
        from_csv = replay(KRAKEN_5M, start, end, "5m")
        assert replay(typed, start, end, "5m") == from_csv
        assert replay(as_text, start, end, "5m") == from_csv
    # data/README.md: 25,901 rows, 5 holes (19 bars); 2023-02-22 00:15 through 01:25 (15 bars) missing.
    ticks, gap_lines, total = replay(typed, *quarter, "5m")
    assert total == len(ticks) == 25_901
    assert (gap_lines[0]["gaps"], gap_lines[0]["missing_candles"]) == (5, 19)
    ticks, gap_lines, total = replay(typed, *feb_22_hole, "5m")
    assert total == len(ticks) == 24 - 15
    assert [(t[0].strftime("%H:%M"), t[6]) for t in ticks[2:4]] == [("00:10", 0), ("01:30", 15)]


BAD_ROWS = {
    "low_above_open": ("100", "101", "100.5", "101", "1"),
    "not_finite": ("nan", "101", "99", "100", "1"),
    "zero_price": ("0", "101", "99", "100", "1"),
    "negative_volume": ("100", "101", "99", "100", "-0.5"),
    "not_a_number": ("100", "101", "99", "abc", "1"),
}


@pytest.mark.parametrize("name", list(BAD_ROWS))
def test_a_bad_parquet_row_is_named_by_file_and_row_with_the_csv_reason(tmp_path, name):
    """Row 3 of the data is bad: line 4 of the CSV (after the header), row 3 of the Parquet file."""
    rows = [(hour(i), "100", "101", "99", "100", "1") for i in range(5)]
    rows[2] = (hour(2), *BAD_ROWS[name])
    csv_file = write_lines(tmp_path / "d.csv", [",".join(row) for row in rows])
    parquet_file = write_parquet(tmp_path / "d.parquet", {
        column: [row[index] for row in rows] for index, column in enumerate(HEADER.split(","))
    })
    with pytest.raises(ConfigError) as from_csv:
        read_candle_file(csv_file, "1h")
    with pytest.raises(ConfigError) as from_parquet:
        read_candle_file(parquet_file, "1h")
    assert from_csv.value.key == "line 4"
    assert (from_parquet.value.file, from_parquet.value.key) == (str(parquet_file), "row 3")
    assert from_parquet.value.reason == from_csv.value.reason


@pytest.mark.parametrize(
    ("timestamps", "close", "reason"),
    [
        ([START + timedelta(hours=i) for i in (0, 1, 1)], [100.0] * 3,
         f"timestamp {hour(1)} is not after the previous candle's ({hour(1)})"),
        ([START + timedelta(hours=i, minutes=30 * (i == 2)) for i in range(3)], [100.0] * 3,
         "timestamp 2024-01-01T02:30:00+00:00 is not aligned to the 1h timeframe"),
        ([START + timedelta(hours=i) for i in range(3)], [100.0, 100.0, None], "close is empty"),
        ([START, START + timedelta(hours=1), None], [100.0] * 3, "timestamp is empty"),
    ],
    ids=["duplicate", "misaligned", "null_number", "null_timestamp"],
)
def test_typed_parquet_rows_are_checked_like_text(tmp_path, timestamps, close, reason):
    path = write_parquet(tmp_path / "d.parquet", {
        "timestamp": timestamps, "open": [100.0] * 3, "high": [101.0] * 3, "low": [99.0] * 3, "close": close,
        "volume": [1.0] * 3,
    }, {"timestamp": pa.timestamp("s")})
    with pytest.raises(ConfigError) as error:
        read_candle_file(path, "1h")
    assert (error.value.key, error.value.reason) == ("row 3", reason)


def test_a_parquet_file_without_candles_says_why(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text(HEADER)
    with pytest.raises(ConfigError, match="not a readable Parquet file"):
        read_candle_file(path, "1h")
    write_parquet(path, {"timestamp": [hour(0)], "open": [1.0], "close": [1.0]})
    with pytest.raises(ConfigError) as error:
        read_candle_file(path, "1h")
    assert (error.value.key, error.value.reason) == (None, "missing column(s): high, low, volume; the columns found: "
                                                     "timestamp,open,close; expected columns named "
                                                     f"{HEADER} (any case, extra ones ignored)")
    write_parquet(path, {name: [] for name in HEADER.split(",")}, dict.fromkeys(HEADER.split(","), pa.string()))
    with pytest.raises(ConfigError, match=r": no candles: the file has no rows$"):
        read_candle_file(path, "1h")
    write_parquet(path, {"timestamp": [1704067200], **{name: [1.0] for name in HEADER.split(",")[1:]}})
    with pytest.raises(ConfigError, match="the timestamp column holds int64: expected ISO 8601 text or timestamps"):
        read_candle_file(path, "1h")


# --- CSV: the vectorised path and the row-by-row reference agree ------------------------------


def large_rows(count: int, start: datetime = START) -> list[str]:
    return [f"{(start + timedelta(minutes=i)).isoformat().replace('+00:00', 'Z')},100.5,101.25,99.75,100.125,2.5"
            for i in range(count)]


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ("{time},100,101,100.5,101,1", "low 100.5 / high 101.0 do not contain open 100.0 and close 101.0"),
        ("{time},100,101,99,abc,1", "close 'abc' is not a number"),
        ("{time},100,101", "expected 6 fields: timestamp,open,high,low,close,volume (got 3)"),
        ("{time},100,101,99,100,1,extra", "expected 6 fields: timestamp,open,high,low,close,volume (got 7)"),
    ],
    ids=["vectorised_check", "unreadable_number", "too_few_fields", "too_many_fields"],
)
def test_a_bad_row_deep_in_a_large_file_names_its_line(tmp_path, bad_row, reason):
    rows = large_rows(60_000)
    rows[50_000] = bad_row.format(time=(START + timedelta(minutes=50_000)).isoformat())
    # Blank lines are no rows, but they are lines: 3 before the bad row, one after.
    rows[10_000:10_000] = [""] * 3
    rows.insert(55_000, "")
    path = write_lines(tmp_path / "d.csv", rows)
    with pytest.raises(ConfigError) as error:
        read_candle_file(path, "1m")
    assert (error.value.key, error.value.reason) == (f"line {1 + 3 + 50_001}", reason)


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ("{time},100,101,0,100,1", "prices must be positive"),
        ("{time},-100,101,99,100,1", "prices must be positive"),
        ("{time},100,101,100.5,101,1", "low 100.5 / high 101.0 do not contain open 100.0 and close 101.0"),
        ("{previous},100,101,99,100,1", "timestamp {previous} is not after the previous candle's ({previous})"),
        ("{previous_at_plus_two},100,101,99,100,1",
         "timestamp {previous} is not after the previous candle's ({previous})"),
    ],
    ids=["zero_low", "negative_open", "low_above_close", "duplicate", "duplicate_at_plus_two"],
)
def test_a_bad_row_is_refused_alike_in_a_large_file_a_small_one_and_by_the_reference_loop(tmp_path, bad_row, reason):
    """The vectorised checks (a chunk of a large file, a whole small file) and the row-by-row
    reference loop (the small file with one cell quoted, which the vectorised reader leaves to it)
    refuse the same row, with the same reason, at its line."""
    def spelled(rows: list[str], index: int) -> list[str]:
        previous = START + timedelta(minutes=index - 1)
        row = bad_row.format(time=(previous + timedelta(minutes=1)).isoformat(), previous=previous.isoformat(),
                             previous_at_plus_two=previous.astimezone(timezone(timedelta(hours=2))).isoformat())
        return [*rows[:index], row, *rows[index + 1:]]

    expected = reason.format(previous=(START + timedelta(minutes=2)).isoformat())
    small = spelled(large_rows(6), 3)
    assert outcome(write_lines(tmp_path / "small.csv", small), "1m") == ("line 5", expected)
    quoted = [small[0].replace(",100.5,", ',"100.5",'), *small[1:]]
    assert outcome(write_lines(tmp_path / "quoted.csv", quoted), "1m") == ("line 5", expected)
    expected = reason.format(previous=(START + timedelta(minutes=49_999)).isoformat())
    large = write_lines(tmp_path / "large.csv", spelled(large_rows(60_000), 50_000))
    assert outcome(large, "1m") == ("line 50002", expected)


def test_a_large_file_with_holes_counts_rows_and_holes_from_its_index(tmp_path):
    rows = large_rows(100_000)
    del rows[70_000:70_010], rows[30_000:30_003]  # 3 candles missing, then 10
    path = write_lines(tmp_path / "d.csv", rows)
    candles = read_candle_file(path, "1m")
    assert len(candles) == 100_000 - 13
    holes = candles.holes_within(range(len(candles)))
    assert [candles.hole(index) for index in holes] == [Hole(30_000, 3), Hole(70_000 - 3, 10)]
    assert candles.missing_in(holes) == 13
    assert candles.missing_in(candles.holes_within(range(30_000, len(candles)))) == 10
    for row in (0, 29_999, 30_000, 69_996, 69_997, len(candles) - 1):
        timestamp = rows[row][:20]
        assert candles.open_epoch(row) == datetime.fromisoformat(timestamp).timestamp()
    window = candles.rows_between(START + timedelta(minutes=29_990), START + timedelta(minutes=70_005))
    assert (window.start, window.stop) == (29_990, 70_000 - 3)  # 70,000 to 70,004 fall in the hole
    assert sum(len(block) for block in candles.blocks(window)) == len(window)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spell", "why"),
    [
        (lambda time, row: f"{time}, {row}", "spaces after the commas"),
        (lambda time, row: f"{time},{row.replace('100.125', '100.125_0')}", "an underscore in a number"),
        (lambda time, row: f"{time.replace('Z', '+00:00')},{row}", "offsets spelled +00:00"),
        (lambda time, row: f"{time[:-1]},{row}", "naive times, which are UTC"),
        (lambda time, row: f"{datetime.fromisoformat(time).astimezone(NEW_YORK).isoformat()},{row}", "offset -05:00"),
    ],
    ids=["spaces", "underscore", "plus_offset", "naive", "minus_five"],
)
def test_every_spelling_python_reads_gives_the_same_candles(tmp_path, spell, why):
    rows = large_rows(30_000)
    clean = write_lines(tmp_path / "clean.csv", rows)
    spelled = write_lines(tmp_path / "spelled.csv", [spell(*row.split(",", 1)) for row in rows])
    start, end = rows[0][:20], rows[-1][:20]
    assert replay(spelled, start, end, "1m") == replay(clean, start, end, "1m"), why


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (lambda lines: "\r\n".join(lines) + "\r\n", "Windows line ends"),
        (lambda lines: "\n".join('"' + line.replace(",", '","') + '"' for line in lines),
         "every cell quoted, no newline at the end"),
        (lambda lines: "\n".join(line.replace("T", " ") for line in lines) + "\n", "a space for the T"),
        (lambda lines: "\ufeff" + "\n".join(lines[1:]) + "\n", "no header, a BOM before the first row"),
        (lambda lines: "\n".join(lines[:2] + [line.replace("Z", "+00:00") for line in lines[2:]]) + "\n",
         "Z on the first row, +00:00 after"),
    ],
    ids=["crlf", "quoted", "space_separator", "bom_without_header", "mixed_offsets"],
)
def test_line_ends_quotes_and_time_spellings_give_the_same_candles(tmp_path, text, why):
    """Files the vectorised CSV reader leaves (wholly or partly) to the reference loop, over several chunks."""
    rows = large_rows(12_000)
    clean = write_lines(tmp_path / "clean.csv", rows)
    spelled = tmp_path / "spelled.csv"
    spelled.write_bytes(text([HEADER, *rows]).encode())
    start, end = rows[0][:20], rows[-1][:20]
    assert replay(spelled, start, end, "1m") == replay(clean, start, end, "1m"), why


def outcome(path: Path, timeframe: str = "1h") -> tuple:
    """What the readers make of a file: its candles, or the error's line and reason."""
    try:
        candles = read_candle_file(path, timeframe)
    except ConfigError as error:
        return error.key, error.reason
    return tuple(tuple(column.tolist()) for block in candles.blocks(range(len(candles)))
                 for column in (block.open_times, block.opens, block.volumes, block.missing_before))


@pytest.mark.parametrize("cells", [
    *(f"{time},100,101,99,100,1" for time in (
        "2024-02-29T01:00:00Z", "2023-02-29T01:00:00Z", "2024-01-01T24:00:00Z", "0000-01-01T01:00:00Z",
        "2024-01-01T01:00:00+05:00", "2024-01-01T01:00:00-23:00", "2024-01-01T01:00:00+23:59",
        "2024-01-01T01:00:00+24:00", "2024-01-01T01:00:00+01:60", "2024-01-01 01:00:00", "2024-01-01t01:00:00",
        "2024-01-01T01:00:00z", "20240101T010000Z", "2024-01-01T01:00:00.000Z", "2024-01-01T01:00Z",
        " 2024-01-01T01:00:00Z", "2024-01-01T01:00:00Z ", "2024-01-01", "9999-12-31T23:00:00Z", "NaT", "today")),
    *(f"2024-01-01T01:00:00Z,{open_},101,99,100,1" for open_ in (
        " 100", "100 ", "1e2", "+100", "100_0", "\u0661\u0660\u0660", "inf", "nan", "0x10", "", "100.", ".5e3",
        "1e400")),
], ids=str)
def test_the_vectorised_reader_makes_of_a_cell_what_the_reference_makes_of_it(tmp_path, cells):
    """A file of that row once as it is, once with its high quoted, which sends the file to the
    reference loop: the same candle, or the same error."""
    fast = write_lines(tmp_path / "fast.csv", [cells])
    reference = write_lines(tmp_path / "reference.csv", [cells.replace(",101,", ',"101",')])
    assert outcome(fast) == outcome(reference)


def test_times_at_plus_two_hours_are_read_as_their_utc_instants_vectorised_and_by_the_reference(tmp_path):
    """Every row spelled +02:00 (the vectorised reader's offset layout), and the same file with a
    cell quoted (the reference loop): both open two hours earlier than the clock says."""
    plus_two = timezone(timedelta(hours=2))
    rows = [f"{(START + timedelta(hours=i)).astimezone(plus_two).isoformat()},100,101,99,100,1" for i in range(4)]
    assert rows[0].startswith("2024-01-01T02:00:00+02:00")
    expected = [int((START + timedelta(hours=i)).timestamp()) for i in range(4)]
    for path in (write_lines(tmp_path / "fast.csv", rows),
                 write_lines(tmp_path / "reference.csv", [rows[0].replace(",101,", ',"101",'), *rows[1:]])):
        candles = read_candle_file(path, "1h")
        assert [candles.open_epoch(row) for row in range(len(candles))] == expected, path.name


def test_a_field_too_many_on_one_row_and_too_few_on_the_next_is_refused_at_the_first(tmp_path):
    """As many commas in the chunk as its rows should have, but not one row's worth on each row
    (numpy.loadtxt alone reads both: the five numbers are there)."""
    path = tmp_path / "d.csv"
    path.write_text(f"{HEADER},trades\n{hour(0)},100,101,99,100,1,7,8\n{hour(1)},100,101,99,100,1\n")
    assert outcome(path) == ("line 2", "expected 7 fields: timestamp,open,high,low,close,volume,trades (got 8)")


@pytest.mark.parametrize("time", ["1704070800", " 1704070800", "+1704070800", "01704070800", "1704070800.0", "-3600",
                                  "253402300800", "253402304400", "1704070800000", "99999999999999999999", ""])
@pytest.mark.parametrize("unit", [1, 1000], ids=["seconds", "milliseconds"])
def test_unix_times_read_vectorised_as_the_reference_reads_them(tmp_path, time, unit):
    """The second row's time; the first row's says the unit (253402300800 s: after 9999, aligned)."""
    rows = [f"{1704067200 * unit},100,101,99,100,1", f"{time}{'000' if unit > 1 and time else ''},100,101,99,100,1"]
    fast = write_lines(tmp_path / "fast.csv", rows)
    reference = write_lines(tmp_path / "reference.csv", [rows[0].replace(",101,", ',"101",'), rows[1]])
    assert outcome(fast) == outcome(reference)


# --- streaming --------------------------------------------------------------------------------


@pytest.fixture
def streamed(monkeypatch):
    """Every file is replayed from the file, as one longer than candle_file.KEEP_ROWS is."""
    monkeypatch.setattr(candle_file, "KEEP_ROWS", 0)


def peak_traced_bytes(path: Path) -> int:
    """Peak Python-level allocation (numpy arrays included) of checking the file and replaying it."""
    tracemalloc.start()
    try:
        source = BacktestSource(environment(path, "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "1m"))
        for block in source.blocks(threading.Event()):
            for _ in ticks_of(block):  # as a run replays it row by row
                pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_checking_and_replaying_a_file_take_the_same_memory_at_eight_times_the_size(tmp_path, streamed):
    peak_traced_bytes(write_lines(tmp_path / "warm_up.csv", large_rows(10)))  # imports are no rows
    small = write_lines(tmp_path / "small.csv", large_rows(25_000))
    large = write_lines(tmp_path / "large.csv", large_rows(200_000))
    small_peak, large_peak = peak_traced_bytes(small), peak_traced_bytes(large)
    # Held in memory, 200,000 rows would be 11 MB as arrays of 8-byte values alone (the file: 10 MB).
    assert large_peak < 1.5 * small_peak
    assert large_peak < large.stat().st_size / 2


def test_a_file_changed_after_its_check_is_refused_at_replay(tmp_path, streamed):
    path = write_lines(tmp_path / "d.csv", good_rows(4))
    source = BacktestSource(environment(path, hour(0), hour(4)))
    write_lines(path, [*good_rows(4), f"{hour(4)},100,101,99,100,1"])
    with pytest.raises(ConfigError, match="the data file changed after it was checked"):
        next(source.blocks(threading.Event()))


def test_a_short_file_is_replayed_from_its_checked_rows_the_same_as_from_the_file(tmp_path, monkeypatch):
    # Prices that differ row to row, and a hole every 97 minutes.
    rows = [f"{(START + timedelta(minutes=i)).isoformat().replace('+00:00', 'Z')},{100 + i % 89},"
            f"{101 + i % 89},{99 + i % 89},{100.5 + i % 89},{1 + i % 7}" for i in range(6_000) if i % 97 != 50]
    path = write_lines(tmp_path / "d.csv", rows)
    monkeypatch.setattr(candle_readers, "BLOCK_BYTES", 4096)  # many blocks, so ranges cut some
    start, end = (START + timedelta(minutes=187)).isoformat(), (START + timedelta(minutes=5_011)).isoformat()
    kept = BacktestSource(environment(path, start, end, "1m"))
    assert kept._ranges[0]._candles.kept is not None and len(kept._ranges[0]._candles.kept) > 10
    write_lines(path, rows[:100])  # replayed from the checked rows: the file is not read again
    from_memory = source_ticks(kept)
    write_lines(path, rows)
    monkeypatch.setattr(candle_file, "KEEP_ROWS", 0)
    streamed = BacktestSource(environment(path, start, end, "1m"))
    assert streamed._ranges[0]._candles.kept is None
    assert from_memory == source_ticks(streamed) and len(from_memory) > 4_000
    assert sum(tick.missing_before > 0 for tick in from_memory) > 40


# --- block boundaries -------------------------------------------------------------------------


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of a few rows: every check and every hole then also spans a block boundary."""
    monkeypatch.setattr(candle_readers, "BLOCK_BYTES", 128)
    monkeypatch.setattr(candle_readers, "BLOCK_ROWS", 3)


def test_block_boundaries_change_no_candle_and_no_gap(tmp_path, monkeypatch):
    """The day around the 15-candle hole of 2023-02-22, read in blocks of a few rows."""
    day = {name: values[14_829:15_102] for name, values in csv_columns(KRAKEN_5M).items()}  # 12:00 to 12:00
    csv_file = write_lines(tmp_path / "d.csv", [",".join(row) for row in zip(*day.values(), strict=True)])
    parquet_file = write_parquet(tmp_path / "d.parquet", day)
    hole = ("2023-02-21T20:00:00Z", "2023-02-22T04:00:00Z")
    expected = replay(csv_file, *hole, "5m")
    assert (len(expected[0]), expected[1][0]["missing_candles"]) == (8 * 12 - 15, 15)
    monkeypatch.setattr(candle_readers, "BLOCK_BYTES", 128)
    monkeypatch.setattr(candle_readers, "BLOCK_ROWS", 3)
    assert replay(csv_file, *hole, "5m") == expected
    assert replay(parquet_file, *hole, "5m") == expected


@pytest.mark.parametrize("bad_at", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("{time},100,101,99,100,1", "is not after the previous candle's"),
        ("{time},100,101,100.5,101,1", "low 100.5 / high 101.0 do not contain open 100.0 and close 101.0"),
        ("{time},100,101,99,100,-1", "volume must not be negative"),
    ],
    ids=["duplicate", "low_above_open", "negative_volume"],
)
def test_a_bad_row_at_any_block_boundary_is_found_at_its_line_and_row(tmp_path, tiny_blocks, bad_at, row, reason):
    rows = [(START + timedelta(hours=index)).isoformat() for index in range(8)]
    cells = [f"{time},100,101,99,100,1" for time in rows]
    duplicate_time = rows[bad_at - 1] if "after" in reason else rows[bad_at]
    cells[bad_at] = row.format(time=duplicate_time)
    csv_file = write_lines(tmp_path / "d.csv", cells)
    parquet_file = write_parquet(tmp_path / "d.parquet", {
        column: [line.split(",")[index] for line in cells] for index, column in enumerate(HEADER.split(","))
    })
    for path, where in ((csv_file, f"line {bad_at + 2}"), (parquet_file, f"row {bad_at + 1}")):
        with pytest.raises(ConfigError) as error:
            read_candle_file(path, "1h")
        assert error.value.key == where and reason in error.value.reason


# --- common formats: Kraken's OHLCVT export, Unix times, any-case headers, gzip --------------


def epoch_lines(path: Path, header: str | None, unit: int, trades: bool) -> list[str]:
    """The rows of a data file with Unix times (unit: per second) and, with trades, Kraken's trade
    count as a 7th column; header None: no header line (Kraken's own export has none)."""
    columns = csv_columns(path)
    times = [int(datetime.fromisoformat(value).timestamp()) * unit for value in columns["timestamp"]]
    rows = [",".join([str(time), *(columns[name][index] for name in HEADER.split(",")[1:]),
                      *([str(index % 97 + 1)] if trades else [])]) for index, time in enumerate(times)]
    return rows if header is None else [header, *rows]


def write_text(path: Path, lines: list[str]) -> Path:
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


FORMATS = {
    "kraken_ohlcvt_export": ("XBTUSD_5.csv", None, 1, True),
    "unix_ms_ccxt": ("btc.csv", "timestamp,open,high,low,close,volume", 1000, False),
    "capitalised_header": ("btc.csv", "Timestamp,Open,High,Low,Close,Volume", 1, False),
    "kraken_export_gzipped": ("XBTUSD_5.csv.gz", None, 1, True),
    "unix_ms_headerless_gzipped": ("btc.csv.gz", None, 1000, False),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", FORMATS)
def test_common_formats_replay_the_same_candles_and_gaps_as_the_iso_file(tmp_path, name):
    file_name, header, unit, trades = FORMATS[name]
    path = write_text(tmp_path / file_name, epoch_lines(KRAKEN_5M, header, unit, trades))
    window = ("2023-01-01T00:00:00Z", "2023-04-01T00:00:00Z", "5m")
    expected = replay(KRAKEN_5M, *window)
    assert replay(path, *window) == expected
    assert len(expected[0]) == 25_901 and expected[1]  # every candle, and the gaps were announced


def test_an_iso_file_gzipped_reads_the_same(tmp_path):
    path = tmp_path / "btc.csv.gz"
    path.write_bytes(gzip.compress(KRAKEN_5M.read_bytes()))
    window = ("2023-01-01T00:00:00Z", "2023-01-08T00:00:00Z", "5m")
    assert replay(path, *window) == replay(KRAKEN_5M, *window)


@pytest.mark.parametrize(("file_name", "header", "unit", "line", "reason"), [
    ("k.csv", None, 1, 5, "timestamp '1672531x00' is not a Unix time in seconds"),
    ("k.csv.gz", None, 1, 5, "timestamp '1672531x00' is not a Unix time in seconds"),
    ("m.csv", "TIMESTAMP,OPEN,HIGH,LOW,CLOSE,VOLUME", 1000, 6, "timestamp '1672531x00000' is not a Unix time in "
                                                                 "milliseconds"),
])
def test_a_bad_unix_time_is_named_by_its_line(tmp_path, file_name, header, unit, line, reason):
    lines = epoch_lines(KRAKEN_5M, header, unit, header is None)
    bad = line - 1
    lines[bad] = lines[bad].replace(str(1672531200 + 4 * 300), "1672531x00", 1)  # the 5th candle's time
    path = write_text(tmp_path / file_name, lines)
    with pytest.raises(ConfigError) as error:
        read_candle_file(path, "5m")
    assert (error.value.key, error.value.reason) == (f"line {line}", reason)


@pytest.mark.parametrize(("first_line", "found"), [
    ("date,o,h,l,c,v", "the header found: date,o,h,l,c,v"),
    ("1672531200,16528.7,16530.0,16520.1,16520.4", "no header, and 5 columns"),
])
def test_a_file_in_no_format_read_says_what_it_found_and_what_is_accepted(tmp_path, first_line, found):
    path = write_text(tmp_path / "x.csv", [first_line, "1672531500,1,1,1,1,1"])
    with pytest.raises(ConfigError) as error:
        read_candle_file(path, "5m")
    assert error.value.key == "line 1"
    assert found in error.value.reason
    for accepted in ("timestamp,open,high,low,close,volume", "Kraken's OHLCVT export", "Unix"):
        assert accepted in error.value.reason


# --- detail candles (detail_data_file) ---------------------------------------------------------


def write_minutes(path: Path, minutes: list[int]) -> Path:
    """5m candles opening `minutes` after START, priced after their minute (close: minute + 1.5)."""
    rows = [f"{(START + timedelta(minutes=m)).isoformat()},{m + 1},{m + 2},{m + 0.5},{m + 1.5},1" for m in minutes]
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_detail_candles_within_a_window_at_its_edges_and_across_holes(tmp_path, monkeypatch):
    monkeypatch.setattr(candle_readers, "BLOCK_BYTES", 128)  # read in many blocks, each a few rows
    monkeypatch.setattr(candle_file, "KEEP_ROWS", 0)
    minutes = [*range(0, 65, 5), *range(85, 120, 5), 180, 185]  # a hole of 4 candles, then a missing hour
    detail = DetailCandles(write_minutes(tmp_path / "detail_5m.csv", minutes))
    window = lambda start_minute, seconds: detail.within(START + timedelta(minutes=start_minute), seconds)  # noqa: E731

    first_hour = window(0, 3600)
    assert first_hour is not None
    assert [column.tolist() for column in first_hour] == [
        [m + 1 for m in range(0, 60, 5)], [m + 2 for m in range(0, 60, 5)],
        [m + 0.5 for m in range(0, 60, 5)], [m + 1.5 for m in range(0, 60, 5)]]
    assert window(60, 3600)[3].tolist() == [61.5, 86.5, 91.5, 96.5, 101.5, 106.5, 111.5, 116.5]  # type: ignore[index]
    assert window(120, 3600) is None  # the file has no candle in that hour
    assert window(180, 3600)[3].tolist() == [181.5, 186.5]  # type: ignore[index]
    assert window(5, 600)[3].tolist() == [6.5, 11.5]  # type: ignore[index]  # the candle at the end is not in it
    assert window(-60, 3600) is None and window(240, 3600) is None  # before and after the file


def test_detail_candles_of_the_shipped_5m_file_roll_up_to_every_shipped_hourly_candle():
    detail = DetailCandles(KRAKEN_5M)
    hourly = read_candle_file(REPO / "data" / "kraken_xbtusd_1h_2023q1.csv", "1h")
    shortest = 12
    for block in hourly.blocks(range(len(hourly))):
        for row in range(len(block)):
            inside = detail.within(utc_from_epoch(int(block.open_times[row])), 3600)
            assert inside is not None
            opens, highs, lows, closes = inside
            assert (opens[0], highs.max(), lows.min(), closes[-1]) == (
                block.opens[row], block.highs[row], block.lows[row], block.closes[row])
            shortest = min(shortest, len(closes))
    assert shortest == 3  # 2023-02-22 00:00Z: its candles from 00:15 on are missing (data/README.md)
