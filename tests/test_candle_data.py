"""Backtest data files: every candle checked (exit 2 naming file and line), the wrong timeframe
caught, gaps and partly covered ranges reported, and one parse per file shared by environments."""

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from backend.config.loader import load_environment, load_operation
from backend.config.schema import BacktestEnvironment
from backend.errors import ConfigError
from backend.market_data.backtest_source import BacktestSource
from backend.market_data.candle_file import read_candle_file
from backend.market_data.candle_readers import ACCEPTED
from services.cli import main
from services.execution_environments import ExecutionEnvironments
from services.operation_service import OperationService
from tests.helpers import (
    REPO,
    START,
    backtest_environment,
    blueprint,
    source_ticks,
    tick,
    write_config_tree,
    write_csv,
    write_yaml,
)

HEADER = "timestamp,open,high,low,close,volume"


def hour(index: int) -> str:
    return (START + timedelta(hours=index)).isoformat()


def write_lines(path: Path, rows: list[str], prefix: str = "") -> Path:
    path.write_text(prefix + "\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def operation(tmp_path: Path, rows: list[str], **environment: str) -> tuple[Path, Path]:
    """An operation with one strategy on one backtest environment reading `rows`; returns the
    operation file and the data file (resolved, as error messages name it)."""
    path = write_config_tree(tmp_path, [("s", "bt")], {"s": blueprint({})}, {"bt": backtest_environment(**environment)})
    (tmp_path / "data").mkdir()
    return path, write_lines(tmp_path / "data" / "ticks.csv", rows).resolve()


def events(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def good_rows(count: int) -> list[str]:
    return [f"{hour(i)},100,101,99,100,1" for i in range(count)]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (f"{hour(2)},nan,101,99,100,1", "prices and volume must be finite numbers"),
        (f"{hour(2)},100,inf,99,100,1", "prices and volume must be finite numbers"),
        (f"{hour(2)},100,101,99,100,inf", "prices and volume must be finite numbers"),
        (f"{hour(2)},0,101,99,100,1", "prices must be positive"),
        (f"{hour(2)},100,101,-99,100,1", "prices must be positive"),
        (f"{hour(2)},100,101,0,100,1", "prices must be positive"),  # low 0 still contains open and close
        (f"{hour(2)},100,101,99,100,-0.5", "volume must not be negative"),
        (f"{hour(2)},100,101,100.5,101,1", "low 100.5 / high 101.0 do not contain open 100.0 and close 101.0"),
        (f"{hour(2)},100,101,99,102,1", "low 99.0 / high 101.0 do not contain open 100.0 and close 102.0"),
        ("2024-01-01T02:30:00Z,100,101,99,100,1", "timestamp 2024-01-01T02:30:00+00:00 is not aligned to the 1h"),
        (f"{hour(1)},100,101,99,100,1", f"timestamp {hour(1)} is not after the previous candle's ({hour(1)})"),
        (f"{hour(0)},100,101,99,100,1", f"timestamp {hour(0)} is not after the previous candle's ({hour(1)})"),
    ],
    ids=["nan", "inf_price", "inf_volume", "zero_price", "negative_price", "zero_low", "negative_volume",
         "low_above_open", "high_below_close", "misaligned", "duplicate", "out_of_order"],
)
def test_each_bad_candle_exits_2_naming_file_and_line(tmp_path, capsys, row, reason):
    path, data_file = operation(tmp_path, [*good_rows(2), row, *good_rows(5)[3:]])
    assert main([str(path)]) == 2
    out, err = capsys.readouterr()
    assert f"run-operation: config error: {data_file}: line 4: {reason}" in err
    assert "Traceback" not in err and "Strategy run summaries" not in out


@pytest.mark.e2e
def test_a_duplicate_timestamp_spelled_with_another_offset_exits_2_through_the_command(tmp_path):
    """run-operation as a process: 03:00+02:00 is 01:00 UTC, the row before's instant: one line
    naming file, line and reason on stderr, exit 2, no run started."""
    path, data_file = operation(tmp_path, [*good_rows(2), "2024-01-01T03:00:00+02:00,100,101,99,100,1"])
    done = subprocess.run([sys.executable, "-m", "services.cli", str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    reason = f"timestamp {hour(1)} is not after the previous candle's ({hour(1)})"
    assert done.stderr.splitlines()[-1] == f"run-operation: config error: {data_file}: line 4: {reason}"
    assert "Traceback" not in done.stderr and "strategy_run_started" not in done.stderr


def test_daily_rows_in_an_hourly_environment_exit_2_naming_both_spacings(tmp_path, capsys):
    days = [(START + timedelta(days=i)).isoformat() for i in range(5)]
    path, data_file = operation(tmp_path, [f"{day},100,101,99,100,1" for day in days])
    assert main([str(path)]) == 2
    _, err = capsys.readouterr()
    assert f"{data_file}: rows are mostly 1d apart, but the environment's timeframe is 1h" in err


def test_hourly_rows_with_holes_are_still_hourly(tmp_path):
    # Two 1h steps, two 3h steps: a tie goes to the timeframe; one more hole and it would not.
    rows = [f"{hour(i)},100,101,99,100,1" for i in (0, 1, 2, 5, 8)]
    data_file = write_lines(tmp_path / "d.csv", rows)
    assert len(read_candle_file(data_file, "1h")) == 5
    write_lines(data_file, [*rows, f"{hour(11)},100,101,99,100,1"])
    with pytest.raises(ConfigError, match="rows are mostly 3h apart"):
        read_candle_file(data_file, "1h")


@pytest.mark.parametrize(
    ("content", "where", "reason"),
    [
        (b"", None, f"the file is empty: expected {ACCEPTED}"),
        (HEADER.encode() + b"\n", None, "no candles: the file has a header but no rows"),
        (b"timestamp,open,high,low,close\n", "line 1",
         f"missing column(s): volume; the header found: timestamp,open,high,low,close; expected {ACCEPTED}"),
        (HEADER.encode() + b"\n\xff\xfe,1,1,1,1,1\n", None, "not a UTF-8 text file"),
    ],
    ids=["empty", "header_only", "missing_column", "not_utf8"],
)
def test_a_file_without_candles_says_why(tmp_path, content, where, reason):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        read_candle_file(path, "1h")
    assert (error.value.file, error.value.key, error.value.reason) == (str(path), where, reason)


def test_a_file_with_a_utf8_bom_runs(tmp_path, capsys):
    path, data_file = operation(tmp_path, [])
    write_lines(data_file, good_rows(4), prefix="\ufeff")
    assert main([str(path)]) == 0
    _, err = capsys.readouterr()
    (summary,) = [e for e in events(err) if e["event"] == "strategy_summary"]
    assert summary["ticks_processed"] == 4


def test_a_directory_as_data_file_is_reported_as_a_directory(tmp_path, capsys):
    path, data_file = operation(tmp_path, good_rows(2), data_file="../../data")
    assert main([str(path)]) == 2
    _, err = capsys.readouterr()
    environment_file = tmp_path / "config" / "environments" / "bt.yaml"
    assert f"{environment_file}: data_file: data file is a directory, not a CSV file: {data_file.parent}" in err


def test_a_range_outside_the_file_exits_2_with_the_covered_range(tmp_path, capsys):
    path, data_file = operation(tmp_path, good_rows(3), start="2030-01-01T00:00:00Z", end="2031-01-01T00:00:00Z")
    assert main([str(path)]) == 2
    _, err = capsys.readouterr()
    assert (
        f"{data_file}: no candles between 2030-01-01T00:00:00+00:00 and 2031-01-01T00:00:00+00:00: "
        f"the file covers {hour(0)} to {hour(2)}"
    ) in err


@pytest.mark.parametrize(
    ("start", "end", "missing_at_start", "missing_at_end"),
    [(hour(-2), hour(10), 2, 0), (hour(-1), hour(10), 1, 0), (hour(0), hour(13), 0, 3),
     (hour(0), hour(11), 0, 1), (hour(0), hour(10), None, None), (hour(0), "2024-01-01T09:30:00+00:00", None, None)],
    ids=["starts_late", "one_candle_late", "ends_early", "one_candle_early", "fully_covered", "end_inside_last_candle"],
)
def test_a_partly_covered_range_warns_once(tmp_path, capsys, start, end, missing_at_start, missing_at_end):
    path, data_file = operation(tmp_path, good_rows(10), start=start, end=end)
    assert main([str(path)]) == 0
    _, err = capsys.readouterr()
    partial = [e for e in events(err) if e["event"] == "data_range_partial"]
    if missing_at_start is None:
        assert partial == []
        return
    (warning,) = partial
    assert warning == warning | {
        "data_file": str(data_file), "environment": "bt", "requested_start": start, "requested_end": end,
        "first_candle": hour(0), "last_candle": hour(9),
        "missing_at_start": missing_at_start, "missing_at_end": missing_at_end,
    }


def hole_file(tmp_path: Path) -> Path:
    """Hourly candles 0..4 and 8..10: candles 5, 6 and 7 are missing."""
    return write_csv(tmp_path / "data" / "ticks.csv", [tick(i, 100 + i) for i in (*range(5), *range(8, 11))])


def environment(data_file: Path, start: str, end: str) -> BacktestEnvironment:
    return BacktestEnvironment.model_validate(backtest_environment(str(data_file), start=start, end=end))


def test_a_hole_is_carried_by_the_next_tick_and_summarized(tmp_path):
    source = BacktestSource(environment(hole_file(tmp_path), hour(0), hour(11)))
    with capture_logs() as logs:
        source.prepare()
        ticks = source_ticks(source)
    assert [(t.timestamp, t.missing_before) for t in ticks] == [
        (START + timedelta(hours=i), 3 if i == 8 else 0) for i in (*range(5), *range(8, 11))
    ]
    assert [log for log in logs if log["event"] in ("data_gaps", "data_gap")] == [
        {"event": "data_gaps", "log_level": "warning", "data_file": str(tmp_path / "data" / "ticks.csv"),
         "symbol": "BTC/USD", "gaps": 1, "missing_candles": 3,
         "first_gaps": [{"gap_from": hour(5), "gap_to": hour(8)}]},
        {"event": "data_gap", "log_level": "warning", "symbol": "BTC/USD", "timeframe": "1h",
         "missing_candles": 3, "gap_from": hour(5), "gap_to": hour(8)},
    ]


def test_the_first_tick_of_a_range_carries_no_gap(tmp_path):
    """A range starting inside the hole: the hole is at the range's edge, a partial range."""
    source = BacktestSource(environment(hole_file(tmp_path), hour(6), hour(11)))
    with capture_logs() as logs:
        source.prepare()
        ticks = source_ticks(source)
    assert [(t.timestamp, t.missing_before) for t in ticks] == [(START + timedelta(hours=i), 0) for i in (8, 9, 10)]
    assert [log["event"] for log in logs] == ["data_range_partial"]
    assert logs[0]["missing_at_start"] == 2


def test_gaps_are_logged_with_the_environment_bound(tmp_path, capsys):
    path = write_config_tree(tmp_path, [("s", "bt")], {"s": blueprint({})},
                             {"bt": backtest_environment(start=hour(0), end=hour(11))})
    hole_file(tmp_path)
    assert main([str(path)]) == 0
    _, err = capsys.readouterr()
    logged = {e["event"]: e for e in events(err) if e["event"] in ("data_gaps", "data_gap")}
    assert logged["data_gaps"]["environment"] == logged["data_gap"]["environment"] == "bt"
    assert (logged["data_gap"]["gap_from"], logged["data_gap"]["gap_to"]) == (hour(5), hour(8))


def test_time_offsets_are_converted_to_utc_and_naive_times_are_utc(tmp_path):
    rows = [f"{hour(0)},100,101,99,100,1", "2024-01-01T03:00:00+02:00,100,101,99,101,1",
            "2024-01-01T02:00:00,100,103,99,102,1"]
    data_file = write_lines(tmp_path / "d.csv", rows)
    ticks = source_ticks(BacktestSource(environment(data_file, hour(0), hour(3))))
    assert [(t.timestamp, t.close) for t in ticks] == [
        (START, 100), (START + timedelta(hours=1), 101), (START + timedelta(hours=2), 102),
    ]


def test_environments_on_one_file_parse_it_once_and_each_sees_its_range(tmp_path, monkeypatch):
    write_csv(tmp_path / "data" / "ticks.csv", [tick(i, 100 + i) for i in range(10)])
    environment_files = [
        write_yaml(tmp_path / "config" / "environments" / "early.yaml", backtest_environment(end=hour(4))),
        # Another spelling of the same file: the cache goes by the resolved path.
        write_yaml(tmp_path / "config" / "environments" / "late.yaml",
                   backtest_environment("../environments/../../data/ticks.csv", start=hour(4), end=hour(8))),
    ]
    parsed: list[Path] = []

    def counting_read(path: Path, timeframe: str):
        parsed.append(path)
        return read_candle_file(path, timeframe)

    monkeypatch.setattr("services.execution_environments.read_candle_file", counting_read)
    environments = ExecutionEnvironments(threading.Event())
    early, late = (environments.tick_source(load_environment(file)) for file in environment_files)
    assert parsed == [(tmp_path / "data" / "ticks.csv").resolve()]
    assert [t.close for t in source_ticks(early)] == [100, 101, 102, 103]
    assert [t.close for t in source_ticks(late)] == [104, 105, 106, 107]
    assert (early.total_ticks, late.total_ticks) == (4, 4)
    # A second factory (another operation) parses for itself.
    first_file = environment_files[0]
    ExecutionEnvironments(threading.Event()).tick_source(load_environment(first_file))
    assert len(parsed) == 2


def test_a_malformed_row_still_names_its_line(tmp_path, capsys):
    path, data_file = operation(tmp_path, [*good_rows(2), f"{hour(2)},100,101,99,abc,1"])
    assert main([str(path)]) == 2
    _, err = capsys.readouterr()
    assert f"{data_file}: line 4: close 'abc' is not a number" in err


def test_an_operation_parses_a_file_once_for_all_its_environments(tmp_path, monkeypatch):
    environments = {f"bt{i}": backtest_environment(start=hour(i), end=hour(i + 5)) for i in range(3)}
    path = write_config_tree(tmp_path, [("s", name) for name in environments], {"s": blueprint({})}, environments,
                             [tick(i, 100 + i) for i in range(10)])
    parsed: list[Path] = []

    def counting_read(data_file: Path, timeframe: str):
        parsed.append(data_file)
        return read_candle_file(data_file, timeframe)

    monkeypatch.setattr("services.execution_environments.read_candle_file", counting_read)
    summaries = OperationService(load_operation(path)).run()
    assert len(parsed) == 1
    assert [s.ticks_processed for s in summaries] == [5, 5, 5]
