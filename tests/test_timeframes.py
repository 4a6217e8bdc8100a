"""Several timeframes on one environment: resampling, fan-out, config checks, the shipped demo, live."""

import csv
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from backend.config import load_operation
from backend.market_data import RawTick, TickSource
from backend.market_data.resample import Resampler, resampling_problem
from backend.market_data.timeframes import as_utc
from services.cli import main
from services.environment_feed import EnvironmentFeed
from services.operation_service import OperationService
from services.strategy_run import RunStatus
from tests.fake_kraken import candle
from tests.helpers import REPO, backtest_environment, write_config_tree
from tests.probes import PLUGINS_WITH_PROBE, RECORDS, probe_blueprint

DAY0 = datetime(2024, 1, 1, tzinfo=UTC)
FIVE_MINUTES = timedelta(minutes=5)
DEMO = REPO / "config" / "operations" / "multi_timeframe_demo.yaml"


def at(hours: int = 0, minutes: int = 0) -> datetime:
    return DAY0 + timedelta(hours=hours, minutes=minutes)


def base_tick(moment: datetime, open_: float, high: float, low: float, close: float, volume: float = 1.0,
              missing_before: int = 0, symbol: str = "BTC/USD", warmup: bool = False) -> RawTick:
    return RawTick(symbol=symbol, timestamp=moment, open=open_, high=high, low=low, close=close, volume=volume,
                   missing_before=missing_before, warmup=warmup)


def bar(moment: datetime, open_: float, high: float, low: float, close: float, volume: float,
        missing_before: int = 0, missing_within: int = 0) -> RawTick:
    return RawTick(symbol="BTC/USD", timestamp=moment, open=open_, high=high, low=low, close=close, volume=volume,
                   missing_before=missing_before, missing_within=missing_within)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- resampling ------------------------------------------------------------------------------


def test_15m_bars_from_5m_candles_by_hand_with_partial_first_and_last_periods_and_gaps():
    resampler = Resampler("5m", "15m")
    fed = [  # what each base candle completes, hand-computed
        (base_tick(at(0, 5), 10, 12, 9, 11, 1), []),  # 00:00 is absent: a partial first period
        (base_tick(at(0, 10), 11, 13, 10, 12, 2), [bar(at(0, 0), 10, 13, 9, 12, 3, missing_within=1)]),
        (base_tick(at(0, 15), 12, 14, 11, 13, 1), []),
        (base_tick(at(0, 20), 13, 20, 12, 14, 1), []),
        (base_tick(at(0, 25), 14, 15, 8, 15, 1), [bar(at(0, 15), 12, 20, 8, 15, 3)]),  # its last candle: at once
        (base_tick(at(0, 35), 15, 16, 14, 16, 4, missing_before=1), []),  # 00:30 absent
        # 00:40 and 00:45 absent: the 00:30 bar is over once a later bucket starts
        (base_tick(at(0, 50), 16, 17, 15, 17, 1, missing_before=2), [bar(at(0, 30), 15, 16, 14, 16, 4,
                                                                         missing_within=2)]),
        # 00:55 to 01:30 absent: buckets 01:00 and 01:15 hold nothing and are no bars
        (base_tick(at(1, 35), 20, 21, 19, 20, 1, missing_before=8), [bar(at(0, 45), 16, 17, 15, 17, 1,
                                                                         missing_within=2)]),
    ]
    for base, expected in fed:
        assert resampler.add(base) == expected, base.timestamp
    # Were the data to end here, inside 01:30, that bar would never be emitted, only reported as open.
    assert resampler.open_bars() == {"BTC/USD": (at(1, 30), 1)}
    # Its last candle completes it; it carries the two empty 15m buckets before it as its gap.
    assert resampler.add(base_tick(at(1, 40), 21, 22, 20, 22, 2)) == [
        bar(at(1, 30), 20, 22, 19, 22, 3, missing_before=2, missing_within=1)
    ]
    assert resampler.open_bars() == {}


def test_buckets_are_aligned_to_utc_4h_at_00_04_08_and_1d_at_midnight():
    hourly = [base_tick(at(hour), 100 + hour, 101 + hour, 99 + hour, 100 + hour) for hour in range(1, 30)]
    four_hours, day = Resampler("1h", "4h"), Resampler("1h", "1d")
    four_hour_bars = [b for t in hourly for b in four_hours.add(t)]
    day_bars = [b for t in hourly for b in day.add(t)]
    assert [(b.timestamp, b.open, b.close, b.missing_within) for b in four_hour_bars] == [
        (at(0), 101, 103, 1),  # 01:00 to 03:00: the first period lacks 00:00
        *[(at(h), 100 + h, 103 + h, 0) for h in (4, 8, 12, 16, 20, 24)],
    ]
    assert four_hours.open_bars() == {"BTC/USD": (at(28), 2)}
    assert [(b.timestamp, b.open, b.high, b.low, b.close, b.volume, b.missing_within) for b in day_bars] == [
        (at(0), 101, 124, 100, 123, 23, 1),
    ]


def test_symbols_are_resampled_apart_and_a_bar_is_warm_up_only_when_all_its_candles_were():
    resampler = Resampler("5m", "15m")
    completed = []
    for minutes in (0, 5, 10, 15, 20, 25):
        for symbol in ("BTC/USD", "ETH/USD"):
            warmup = minutes < (10 if symbol == "BTC/USD" else 15)
            completed += resampler.add(base_tick(at(0, minutes), 1, 2, 1, 2, symbol=symbol, warmup=warmup))
    assert [(b.symbol, b.timestamp, b.warmup) for b in completed] == [
        ("BTC/USD", at(0), False), ("ETH/USD", at(0), True),
        ("BTC/USD", at(0, 15), False), ("ETH/USD", at(0, 15), False),
    ]


def test_a_tick_that_is_not_after_the_previous_one_is_refused():
    resampler = Resampler("5m", "15m")
    resampler.add(base_tick(at(0, 5), 1, 1, 1, 1))
    with pytest.raises(ValueError, match="not after the previous one"):
        resampler.add(base_tick(at(0, 5), 1, 1, 1, 1))
    resampler.add(base_tick(at(0, 10), 1, 1, 1, 1))  # completes the 00:00 bar
    with pytest.raises(ValueError, match="not after the previous one"):  # which must not open again
        resampler.add(base_tick(at(0, 0), 1, 1, 1, 1))


@pytest.mark.parametrize(("base", "timeframe", "problem"), [
    ("5m", "5m", None), ("5m", "15m", None), ("5m", "1h", None), ("1h", "4h", None), ("1h", "1d", None),
    ("1h", "60m", None), ("1d", "1d", None),
    ("5m", "7m", "not a whole multiple"), ("5m", "1m", "not a whole multiple"), ("1h", "90m", "not a whole multiple"),
    ("1h", "7h", "must divide a day"), ("1h", "2d", "must divide a day"),
])
def test_which_timeframes_can_be_built_from_which(base, timeframe, problem):
    found = resampling_problem(base, timeframe)
    assert (found is None) if problem is None else (problem in found)


def read_csv_ticks(path: Path) -> list[RawTick]:
    with path.open(newline="") as handle:
        return [base_tick(as_utc(datetime.fromisoformat(row["timestamp"])), float(row["open"]), float(row["high"]),
                          float(row["low"]), float(row["close"]), float(row["volume"]))
                for row in csv.DictReader(handle)]


def test_kraken_5m_candles_resampled_to_1h_are_krakens_own_hourly_candles_gaps_included():
    """Kraken's export has no row for a 5 minutes without trades, and its hourly candle is made of
    the rest: the emit-what-it-has policy reproduces it, where skipping would lose 6 real hours."""
    resampler = Resampler("5m", "1h")
    resampled = [b for t in read_csv_ticks(REPO / "data" / "kraken_xbtusd_5m_2023q1.csv") for b in resampler.add(t)]
    hourly = read_csv_ticks(REPO / "data" / "kraken_xbtusd_1h_2023q1.csv")
    assert [(b.timestamp, b.open, b.high, b.low, b.close) for b in resampled] == [
        (h.timestamp, h.open, h.high, h.low, h.close) for h in hourly
    ]
    assert [b.volume for b in resampled] == pytest.approx([h.volume for h in hourly], abs=1e-6)
    assert sum(b.missing_within > 0 for b in resampled) == 6  # hours the 5 natural holes fall into


# --- fan-out on one environment --------------------------------------------------------------


def five_minute_file_without(absent: set[int], count: int) -> list[RawTick]:
    """Base candle i opens at i * 5 min and closes at 100 + i; the indices in absent are holes."""
    return [base_tick(DAY0 + i * FIVE_MINUTES, 100 + i, 100.5 + i, 99.5 + i, 100 + i)
            for i in range(count) if i not in absent]


def test_runs_at_different_timeframes_on_one_environment_each_see_exactly_their_bars(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("services.worker_factory.PLUGINS", PLUGINS_WITH_PROBE)
    built: list[Resampler] = []

    class CountedResampler(Resampler):
        def __init__(self, base_timeframe: str, timeframe: str) -> None:
            super().__init__(base_timeframe, timeframe)
            built.append(self)

    monkeypatch.setattr("services.environment_feed.Resampler", CountedResampler)
    # 00:00 to 02:55 in 5m candles, without 00:40 to 00:55 (a hole) and 02:55 (the data ends early).
    ticks = five_minute_file_without({8, 9, 10, 11, 35}, 36)
    blueprints = {tag: {**probe_blueprint(tag), "timeframe": timeframe}
                  for tag, timeframe in (("five", "5m"), ("quarter", "15m"), ("quarter_too", "15m"), ("hour", "60m"))}
    path = write_config_tree(tmp_path, [(tag, "bt") for tag in blueprints], blueprints,
                             {"bt": backtest_environment(timeframe="5m")}, ticks)

    assert main([str(path)]) == 0
    _, err = capsys.readouterr()

    def seen(tag: str) -> list[tuple[datetime, float]]:
        return [(record.timestamp, record.close) for record in RECORDS[tag]]

    assert seen("five") == [(t.timestamp, t.close) for t in ticks]
    quarters = [(at(0, 0), 102), (at(0, 15), 105), (at(0, 30), 107)]  # 00:30 lacks 00:40; 00:45 holds nothing
    quarters += [(at(1, 15 * q), 114 + 3 * q) for q in range(7)]  # 01:00 to 02:30; 02:45 never completed
    assert seen("quarter") == seen("quarter_too") == quarters
    assert seen("hour") == [(at(0), 107), (at(1), 123)]  # 02:00 never completed
    assert len(built) == 2  # one resampler per timeframe for the environment, not one per run

    events = json_lines(err)
    summaries = {e["blueprint"]: e["ticks_processed"] for e in events if e["event"] == "strategy_summary"}
    assert summaries == {"five": 31, "quarter": 10, "quarter_too": 10, "hour": 2}
    gaps = [(e["timeframe"], e["missing_candles"], e["gap_from"], e["gap_to"])
            for e in events if e["event"] == "data_gap"]
    assert gaps == [("5m", 4, at(0, 40).isoformat(), at(1).isoformat()),
                    ("15m", 1, at(0, 45).isoformat(), at(1).isoformat())]
    partial = [(e["timeframe"], e["bar_time"], e["missing_candles"])
               for e in events if e["event"] == "bar_missing_base_candles"]
    assert partial == [("15m", at(0, 30).isoformat(), 1), ("60m", at(0).isoformat(), 4)]
    open_at_end = [(e["timeframe"], e["bar_time"], e["base_candles"])
                   for e in events if e["event"] == "bar_not_completed"]
    assert open_at_end == [("15m", at(2, 45).isoformat(), 2), ("60m", at(2).isoformat(), 11)]
    (finished,) = [e for e in events if e["event"] == "environment_feed_finished"]
    assert (finished["ticks_sent"], finished["bars_sent"]) == (31, {"15m": 10, "60m": 2})
    assert finished["strategy_links"] == [f"{tag}@bt" for tag in blueprints]


class ResumeRecorder(TickSource):
    def __init__(self) -> None:
        self.resumed_after: dict[str, datetime] | None = None

    def resume_after(self, cursors: dict[str, datetime]) -> None:
        self.resumed_after = cursors

    def blocks(self, stop: threading.Event):
        return iter(())


@pytest.mark.parametrize(("five_minute_cursor", "resumed_after"), [
    (at(10, 50), at(10, 50)),  # the 5m run is behind the hourly bar's last candle
    (at(11, 20), at(10, 55)),  # the hourly run needs 11:00 onwards again to build its next bar whole
])
def test_after_a_restart_the_source_replays_from_the_last_base_candle_every_run_has_processed(
    five_minute_cursor, resumed_after
):
    def run(link_id: str, cursor: datetime) -> SimpleNamespace:
        account = SimpleNamespace(cursors={"BTC/USD": cursor})
        return SimpleNamespace(link_id=link_id, tick_manager=SimpleNamespace(account=account))

    source = ResumeRecorder()
    runs = [run("five@live", five_minute_cursor), run("hour@live", at(10))]  # the 10:00 bar holds 10:00-10:55
    feed = EnvironmentFeed("live", source, runs, threading.Event(),  # type: ignore[arg-type]
                           base_timeframe="5m", run_timeframes={"five@live": "5m", "hour@live": "1h"})
    feed.resume_after_restart()
    assert source.resumed_after == {"BTC/USD": resumed_after}


# --- config errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(("environment_timeframe", "blueprint_timeframe", "reason"), [
    ("5m", "7m", "blueprint timeframe 7m is not a whole multiple of the environment's timeframe 5m"),
    ("5m", "1m", "blueprint timeframe 1m is not a whole multiple of the environment's timeframe 5m"),
    ("1h", "7h", "blueprint timeframe 7h cannot be built from the environment's 1h candles"),
])
def test_a_timeframe_the_environment_cannot_give_exits_2_naming_the_link_and_both_timeframes(
    tmp_path, capsys, environment_timeframe, blueprint_timeframe, reason
):
    blueprints = {"fine": probe_blueprint("fine"), "odd": {**probe_blueprint("odd"), "timeframe": blueprint_timeframe}}
    blueprints["fine"]["timeframe"] = environment_timeframe
    path = write_config_tree(tmp_path, [("fine", "bt"), ("odd", "bt")], blueprints,
                             {"bt": backtest_environment(timeframe=environment_timeframe)},
                             five_minute_file_without(set(), 24))
    assert main([str(path)]) == 2
    _, err = capsys.readouterr()
    assert f"run-operation: config error: {path}: strategy_links[1]: {reason}" in err
    assert "Traceback" not in err


# --- the shipped example ---------------------------------------------------------------------


def expected_bar_count(data_file: Path, start: datetime, end: datetime, bar_seconds: int, base_seconds: int) -> int:
    """Buckets holding at least one candle of [start, end), less the last one if its last candle is absent."""
    with data_file.open(newline="") as handle:
        opens = [int(as_utc(datetime.fromisoformat(row["timestamp"])).timestamp()) for row in csv.DictReader(handle)]
    opens = [t for t in opens if start.timestamp() <= t < end.timestamp()]
    buckets = {t - t % bar_seconds for t in opens}
    last_complete = (opens[-1] + base_seconds) % bar_seconds == 0
    return len(buckets) - (0 if last_complete else 1)


def test_the_multi_timeframe_demo_runs_each_strategy_on_every_bar_of_its_timeframe(capsys):
    operation = load_operation(DEMO)
    environments = {link.environment.timeframe for link in operation.links}
    timeframes = {link.link_id: link.blueprint.timeframe for link in operation.links}
    assert environments == {"5m"} and len(set(timeframes.values())) >= 2  # several timeframes, one environment

    assert main([str(DEMO)]) == 0
    _, err = capsys.readouterr()
    events = json_lines(err)
    environment = operation.links[0].environment
    seconds = {"5m": 300, "15m": 900, "1h": 3600}
    for summary in (e for e in events if e["event"] == "strategy_summary"):
        assert summary["status"] == "completed" and summary["trades"] > 0
        assert summary["ticks_processed"] == expected_bar_count(
            environment.data_file, as_utc(environment.start), as_utc(environment.end),
            seconds[timeframes[summary["strategy_link"]]], 300,
        ), summary["strategy_link"]
    base_gaps = [(e["gap_from"], e["missing_candles"]) for e in events
                 if e["event"] == "data_gap" and e["timeframe"] == "5m"]
    assert base_gaps == [  # the sample's natural holes (data/README.md), reported, not filled
        ("2023-01-05T22:05:00+00:00", 1), ("2023-01-30T22:05:00+00:00", 1), ("2023-02-02T22:05:00+00:00", 1),
        ("2023-02-22T00:15:00+00:00", 15), ("2023-03-16T22:05:00+00:00", 1),
    ]
    assert sum(e["event"] == "backtest_progress" for e in events) == 10  # per environment, on base ticks


def test_hourly_dca_on_bars_built_from_5m_candles_trades_as_on_krakens_hourly_file(capsys):
    assert main([str(DEMO)]) == 0
    resampled = {e["blueprint"]: e for e in json_lines(capsys.readouterr().err) if e["event"] == "strategy_summary"}
    assert main([str(REPO / "config" / "operations" / "backtest_demo.yaml")]) == 0
    native = {e["blueprint"]: e for e in json_lines(capsys.readouterr().err) if e["event"] == "strategy_summary"}
    figures = ("ticks_processed", "trades", "fees_paid", "final_equity", "max_drawdown_pct")
    assert [resampled["smart_dca_btc_1h"][f] for f in figures] == [native["smart_dca_btc"][f] for f in figures]


# --- live ------------------------------------------------------------------------------------


def wait_until(condition, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.mark.slow
def test_live_1m_kraken_candles_become_5m_bars_for_a_5m_run(tmp_path, fake, monkeypatch):
    monkeypatch.setattr("services.worker_factory.PLUGINS", PLUGINS_WITH_PROBE)
    # Minute candles from the start of a 5-minute bucket at least 20 minutes ago, so all are closed.
    first = int(time.time()) // 300 * 300 - 1200

    def minutes(count: int) -> list[list]:
        return [candle(first + i * 60, 60_000 + i * 10) for i in range(count)]

    def moment(minute: int) -> datetime:
        return datetime.fromtimestamp(first + minute * 60, tz=UTC)

    fake.set_candles("XXBTZUSD", minutes(11))  # minutes 0 to 9 closed, 10 forming
    live = {
        "type": "live", "display_name": "fake kraken", "exchange": "kraken", "symbols": ["BTC/USD"],
        "timeframe": "1m", "market_data": "rest", "poll_interval_seconds": 0.05, "api_url": fake.url,
        "warmup_candles": 9,
        "starting_capital": 10_000, "fee_rate": 0.0026,
    }
    blueprints = {"one": {**probe_blueprint("one"), "timeframe": "1m"},
                  "five": {**probe_blueprint("five"), "timeframe": "5m"}}
    service = OperationService(load_operation(
        write_config_tree(tmp_path, [("one", "live"), ("five", "live")], blueprints, {"live": live})
    ))
    one, five = service.runs
    service.start()
    try:
        # Minutes 0-4 were all warm-up: their bar is warm-up too. Minutes 5-9 end with the first
        # live one, so their bar is traded, as soon as minute 9 (its last) has closed.
        assert wait_until(lambda: five.ticks_processed == 2 and one.ticks_processed == 10)
        assert [(s.timestamp, s.close) for s in RECORDS["five"]] == [(moment(5), 60_090)]
        fake.set_candles("XXBTZUSD", minutes(16))  # minutes 10 to 14 close, 15 forms
        assert wait_until(lambda: five.ticks_processed == 3 and one.ticks_processed == 15)
    finally:
        service.stop()
        summaries = service.wait()

    assert [(s.timestamp, s.close) for s in RECORDS["five"]] == [(moment(5), 60_090), (moment(10), 60_140)]
    assert [(s.timestamp, s.close) for s in RECORDS["one"]] == [(moment(m), 60_000 + m * 10) for m in range(9, 15)]
    assert [s.status for s in summaries] == [RunStatus.STOPPED, RunStatus.STOPPED]
    assert [s.ticks_processed for s in summaries] == [15, 3]
