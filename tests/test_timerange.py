"""`--timerange START-END` through the real CLI on the bundled Q1 2023 hourly sample (2160 candles,
none missing): the candles replayed are exactly the range's, in one process, over processes, in
the report and in a sweep; a range without candles, or one an environment cannot take, is a
config error naming --timerange; live and paper environments ignore it."""

import csv
import json
import subprocess
import sys

import pytest

from services.cli import main
from tests.helpers import REPO
from tests.test_cli import DEMO, LINKS, json_lines
from tests.test_sweeps import GRID, WALK, rows_of, sweep

MULTI = str(REPO / "config/operations/multi_strategy_operation.yaml")


def summaries(err: str) -> dict[str, dict]:
    return {e["strategy_link"]: e for e in json_lines(err) if e["event"] == "strategy_summary"}


@pytest.mark.parametrize(("timerange", "candles"), [
    ("20230201-20230301", 28 * 24),  # February: END is exclusive
    ("20230315-", 17 * 24),  # an open end keeps the environment's (2023-04-01)
    ("-20230108", 7 * 24),  # from the environment's start (2023-01-01)
    ("2023-02-01-2023-02-02T12:00", 36),  # ISO dates and times, UTC
])
def test_a_backtest_replays_exactly_the_candles_of_the_range(capsys, timerange, candles):
    assert main([DEMO, "--timerange", timerange]) == 0
    _, err = capsys.readouterr()
    found = summaries(err)
    assert set(found) == set(LINKS)
    assert {link: summary["ticks_processed"] for link, summary in found.items()} == dict.fromkeys(LINKS, candles)


def test_over_processes_with_a_report_the_runs_cover_the_range_only(tmp_path, capsys):
    assert main([DEMO, "--timerange", "20230201-20230301", "--processes", "2", "--report", str(tmp_path)]) == 0
    _, err = capsys.readouterr()
    assert {s["ticks_processed"] for s in summaries(err).values()} == {672}
    for link in LINKS:
        with (tmp_path / link / "equity.csv").open() as handle:
            times = [row[0] for row in list(csv.reader(handle))[1:]]
        assert len(times) == 672
        assert times[0].startswith("2023-02-01T00:00") and times[-1].startswith("2023-02-28T23:00")


def test_validate_takes_the_range_and_refuses_one_without_candles(capsys):
    assert main(["validate", DEMO, "--timerange", "20230201-20230301"]) == 0
    out, _ = capsys.readouterr()
    assert "run-operation: OK:" in out
    assert main(["validate", DEMO, "--timerange", "20240101-20240201"]) == 2
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("run-operation:")]
    assert len(lines) == 1 and lines[0].startswith("run-operation: config error: --timerange 20240101-20240201: ")
    assert "no candles between 2024-01-01T00:00:00+00:00 and 2024-02-01T00:00:00+00:00" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("extra", [[], ["--processes", "2"]])
def test_a_run_outside_the_data_exits_2_naming_the_timerange(capsys, extra):
    assert main([DEMO, "--timerange", "20240101-", *extra]) == 2
    out, err = capsys.readouterr()
    assert "run-operation: config error: --timerange 20240101-: " in err
    assert "Strategy run summaries" not in out and "strategy_summary" not in err


@pytest.mark.e2e
@pytest.mark.parametrize(("timerange", "reason"), [
    ("20230501-", "starts at 2023-05-01T00:00:00+00:00, not before environment 'backtest_2023_q1' ends "
                  "(2023-04-01T00:00:00+00:00)"),
    ("-20221201", "ends at 2022-12-01T00:00:00+00:00, not after environment 'backtest_2023_q1' starts "
                  "(2023-01-01T00:00:00+00:00)"),
])
def test_an_open_end_beyond_the_environment_exits_2_naming_both(timerange, reason):
    finished = subprocess.run([sys.executable, "-m", "services.cli", "validate", DEMO, "--timerange", timerange],
                              cwd=REPO, capture_output=True, text=True, timeout=30)
    assert finished.returncode == 2
    assert f"run-operation: config error: --timerange {timerange}: {reason}" in finished.stderr


@pytest.mark.parametrize("text", ["2023-02-01", "20230301-20230201", "20230231-", "-", "yesterday-today"])
def test_a_malformed_timerange_exits_2(capsys, text):
    with pytest.raises(SystemExit) as exit_:
        main([DEMO, "--timerange", text])
    assert exit_.value.code == 2
    _, err = capsys.readouterr()
    assert "--timerange" in err


def test_live_and_paper_environments_ignore_it_with_option_ignored(capsys):
    assert main(["validate", MULTI, "--timerange", "20230201-20230301"]) == 0
    _, err = capsys.readouterr()
    ignored = [e for e in json_lines(err) if e["event"] == "option_ignored"]
    assert len(ignored) == 1 and ignored[0]["option"] == "--timerange"
    assert ignored[0]["environments"] == ["live_kraken_main"]


def test_print_config_shows_the_range_in_effect(capsys):
    assert main([DEMO, "--timerange", "20230201-", "--print-config", "json"]) == 0
    out, _ = capsys.readouterr()
    environments = {link["strategy_link"]: link["environment"] for link in json.loads(out)["strategy_links"]}
    assert set(environments) == set(LINKS)
    for environment in environments.values():
        assert (environment["start"], environment["end"]) == ("2023-02-01T00:00:00Z", "2023-04-01T00:00:00Z")


@pytest.mark.slow
def test_a_sweep_runs_every_combination_on_the_range(tmp_path):
    code, _, daemon = sweep([GRID, "--processes", "2", "--timerange", "20230301-", "--out", tmp_path])
    assert code == 0, daemon.stderr
    rows = rows_of(tmp_path)
    assert len(rows) == 9
    assert {row["per_environment"]["backtest_2023_q1"]["ticks_processed"] for row in rows} == {31 * 24}


@pytest.mark.slow
def test_a_walk_forward_lays_its_windows_over_the_range(tmp_path):
    code, out, daemon = sweep([WALK, "--processes", "2", "--timerange", "20230201-", "--out", tmp_path])
    assert code == 0, daemon.stderr
    assert "window 1  train 2023-02-01..2023-03-03  test ..2023-03-18" in out
    code, out, daemon = sweep([WALK, "--timerange", "20230301-", "--out", tmp_path / "short"])
    assert code == 2
    assert ("run-operation: config error: --timerange 20230301-: environment 'backtest_2023_q1' runs from "
            "2023-03-01T00:00:00+00:00 to 2023-04-01T00:00:00+00:00: shorter than one train window") in daemon.stderr
