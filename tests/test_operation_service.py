"""OperationService: isolated runs in their own threads, complete in-order fan-out, crash
isolation and orderly shutdown."""

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import yaml

from backend.config import ResolvedLink, WorkerSpec, load_operation
from backend.errors import ConfigError, SettingError
from backend.interfaces.candle_columns import CandleColumns
from backend.market_data import RawTick, TickSource
from services.operation_service import OperationService
from services.strategy_run import QUEUE_POLL_SECONDS, RunStatus
from services.worker_factory import WorkerFactory
from tests.helpers import REPO, backtest_environment, one_row, tick, write_config_tree, write_csv
from tests.probes import PLUGINS_WITH_PROBE, RECORDS, probe_blueprint


def wavy_ticks(count: int, start_index: int = 0) -> list[RawTick]:
    """A price path with trends and swings, so regimes change over time."""
    return [
        tick(i, 100 + 10 * math.sin(i / 15) + 3 * math.sin(i / 2.5) + i * 0.02)
        for i in range(start_index, start_index + count)
    ]


def service_for(tmp_path, links, blueprints, environments=None, ticks=(), **kwargs) -> OperationService:
    path = write_config_tree(tmp_path, links, blueprints, environments or {"bt": backtest_environment()}, ticks)
    return OperationService(load_operation(path), WorkerFactory(PLUGINS_WITH_PROBE), **kwargs)


def test_every_run_gets_every_tick_in_order_in_its_own_thread(tmp_path):
    ticks = wavy_ticks(400)
    blueprints = {tag: probe_blueprint(tag, sleep_seconds=0.0002 if tag == "slow" else 0) for tag in ("a", "b", "slow")}
    service = service_for(tmp_path, [(t, "bt") for t in blueprints], blueprints, ticks=ticks, queue_size=3)
    summaries = service.run()
    expected = [t.timestamp for t in ticks]
    for tag in blueprints:
        assert [seen.timestamp for seen in RECORDS[tag]] == expected
    threads = {tag: {seen.thread for seen in RECORDS[tag]} for tag in blueprints}
    assert all(len(names) == 1 for names in threads.values())
    assert len(set.union(*threads.values())) == 3
    assert threading.main_thread().name not in set.union(*threads.values())
    assert [s.status for s in summaries] == [RunStatus.COMPLETED] * 3
    assert [s.ticks_processed for s in summaries] == [400] * 3


def test_runs_only_see_the_environment_they_are_bound_to(tmp_path):
    first, second = wavy_ticks(50), wavy_ticks(30, start_index=1000)
    write_csv(tmp_path / "data" / "other.csv", second)
    environments = {"bt": backtest_environment(), "bt2": backtest_environment("../../data/other.csv")}
    blueprints = {"a": probe_blueprint("a"), "b": probe_blueprint("b")}
    service = service_for(tmp_path, [("a", "bt"), ("b", "bt2")], blueprints, environments, ticks=first)
    service.run()
    assert [s.timestamp for s in RECORDS["a"]] == [t.timestamp for t in first]
    assert [s.timestamp for s in RECORDS["b"]] == [t.timestamp for t in second]


def with_probe(link: ResolvedLink) -> ResolvedLink:
    """The link with a recording probe appended to its blueprint's opportunity workers."""
    workforce = link.blueprint.workforce
    probe = WorkerSpec(plugin="probe", params={"tag": link.link.strategy_blueprint_id})
    workforce = workforce.model_copy(update={"opportunity": [*workforce.opportunity, probe]})
    return replace(link, blueprint=link.blueprint.model_copy(update={"workforce": workforce}))


def test_shipped_blueprints_each_see_only_their_own_market_regime():
    demo = load_operation(REPO / "config/operations/backtest_demo.yaml")
    links = [with_probe(link) for link in demo.links]
    together = OperationService(replace(demo, links=links), WorkerFactory(PLUGINS_WITH_PROBE), queue_size=4).run()
    seen = {tag: list(RECORDS[tag]) for tag in ("ict_smc_strategy", "smart_dca_btc")}
    RECORDS.clear()
    (dca_alone,) = OperationService(replace(demo, links=links[1:]), WorkerFactory(PLUGINS_WITH_PROBE)).run()

    ict, dca = seen["ict_smc_strategy"], seen["smart_dca_btc"]
    assert len(ict) == len(dca) == 2160
    assert {id(s.regime) for s in ict}.isdisjoint({id(s.regime) for s in dca})
    assert len({s.context_id for s in ict}) == len({s.context_id for s in dca}) == 1  # one provider each
    assert {s.context_id for s in ict}.isdisjoint({s.context_id for s in dca})
    # 20/50 EMAs against 24/72: each blueprint classified the same candles its own way ...
    assert [s.regime for s in ict] != [s.regime for s in dca]
    # ... and the DCA run, trades and all, is exactly what it is when it runs alone.
    assert [s.regime for s in dca] == [s.regime for s in RECORDS["smart_dca_btc"]]
    assert together[1].account == dca_alone.account and dca_alone.account.trades > 0


def test_a_crashing_strategy_stops_alone(tmp_path):
    ticks = wavy_ticks(300)
    blueprints = {"bad": probe_blueprint("bad", crash_at_tick=100), "good": probe_blueprint("good")}
    service = service_for(tmp_path, [("bad", "bt"), ("good", "bt")], blueprints, ticks=ticks, queue_size=2)
    bad, good = service.run()
    assert bad.status is RunStatus.FAILED
    assert bad.error == "ZeroDivisionError: probe crashed on purpose"
    assert bad.ticks_processed == 99
    assert good.status is RunStatus.COMPLETED and good.ticks_processed == 300
    assert [s.timestamp for s in RECORDS["good"]] == [t.timestamp for t in ticks]


class EndlessSource(TickSource):
    """Yields a tick every few milliseconds until stopped; counts what it yielded."""

    def __init__(self) -> None:
        self.yielded = 0

    def blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        while not stop.is_set():
            self.yielded += 1
            yield one_row(tick(self.yielded - 1, 100 + (self.yielded - 1) % 7))
            time.sleep(0.002)


def test_when_every_run_failed_the_feed_stops_reading(tmp_path):
    source = EndlessSource()
    blueprints = {"bad": probe_blueprint("bad", crash_at_tick=5)}
    service = service_for(
        tmp_path, [("bad", "bt")], blueprints, ticks=wavy_ticks(3), source_factory=lambda env: source
    )
    service.start()
    for feed in service.feeds:
        feed.join(timeout=5)
        assert not feed.is_alive()  # an endless source, yet the feed ended
    (summary,) = service.wait()
    assert summary.status is RunStatus.FAILED and summary.ticks_processed == 4


def test_stop_ends_every_run_after_its_current_tick_and_discards_the_queue(tmp_path):
    source = EndlessSource()
    blueprints = {"a": probe_blueprint("a"), "slow": probe_blueprint("slow", sleep_seconds=0.1)}
    service = service_for(
        tmp_path, [("a", "bt"), ("slow", "bt")], blueprints, ticks=wavy_ticks(3),
        source_factory=lambda env: source, queue_size=50,
    )
    service.start()
    time.sleep(0.3)
    service.stop()
    stopped = time.monotonic()
    fast, slow = service.wait()
    assert time.monotonic() - stopped < 2.5  # one slow tick (0.1 s), not the 50 queued behind it (5 s)
    assert source.yielded > 20
    assert (fast.status, slow.status) == (RunStatus.STOPPED, RunStatus.STOPPED)
    # Each run processed a prefix of the ticks, in order; the slow one lagged and its queued
    # ticks were dropped rather than traded after the stop.
    assert len(RECORDS["slow"]) == slow.ticks_processed < fast.ticks_processed <= source.yielded
    assert [seen.close for seen in RECORDS["slow"]] == [100 + i % 7 for i in range(slow.ticks_processed)]


def test_a_full_queue_makes_the_feed_wait_and_drops_nothing(tmp_path):
    ticks = wavy_ticks(60)
    blueprints = {"slow": probe_blueprint("slow", sleep_seconds=0.002), "fast": probe_blueprint("fast")}
    service = service_for(tmp_path, [("slow", "bt"), ("fast", "bt")], blueprints, ticks=ticks, queue_size=2)
    summaries = service.run()
    assert [(s.status, s.ticks_processed) for s in summaries] == [(RunStatus.COMPLETED, 60)] * 2
    assert [seen.timestamp for seen in RECORDS["slow"]] == [t.timestamp for t in ticks]


def test_a_queue_that_stays_full_longer_than_the_feed_polls_still_drops_nothing(tmp_path):
    # Each tick of "slow" outlasts several of the feed's waits on its full one-tick queue.
    assert QUEUE_POLL_SECONDS < 0.15
    ticks = wavy_ticks(5)
    blueprints = {"slow": probe_blueprint("slow", sleep_seconds=0.15), "fast": probe_blueprint("fast")}
    service = service_for(tmp_path, [("slow", "bt"), ("fast", "bt")], blueprints, ticks=ticks, queue_size=1)
    summaries = service.run()
    assert [(s.status, s.ticks_processed) for s in summaries] == [(RunStatus.COMPLETED, 5)] * 2
    assert [seen.timestamp for seen in RECORDS["slow"]] == [t.timestamp for t in ticks]
    assert [seen.timestamp for seen in RECORDS["fast"]] == [t.timestamp for t in ticks]


def test_the_watchdog_abandons_a_stalled_run_and_its_order_never_happens(tmp_path):
    ticks = wavy_ticks(40)
    hung = probe_blueprint("hung", sleep_seconds=0)
    hung["workforce"]["opportunity"][0]["params"]["hang_at_tick"] = 5
    service = service_for(tmp_path, [("hung", "bt"), ("good", "bt")], {"hung": hung, "good": probe_blueprint("good")},
                          ticks=ticks, queue_size=4)
    service.stall_timeout = 0.2
    hung_summary, good_summary = service.run()
    assert hung_summary.status is RunStatus.STALLED and hung_summary.failed
    assert hung_summary.ticks_processed == 4 and "worker 'probe'" in (hung_summary.error or "")
    assert (good_summary.status, good_summary.ticks_processed) == (RunStatus.COMPLETED, 40)
    run = service.runs[0]
    assert run.tick_manager.current_worker == "probe" and not run.is_alive()


class ExplodingSource(TickSource):
    def blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        yield one_row(tick(0, 100))
        yield one_row(tick(1, 101))
        raise RuntimeError("socket went away")


def test_an_unexpected_source_error_stops_its_runs_and_is_reported(tmp_path):
    service = service_for(tmp_path, [("a", "bt")], {"a": probe_blueprint("a")}, ticks=wavy_ticks(3),
                          source_factory=lambda env: ExplodingSource())
    (summary,) = service.run()
    assert (summary.status, summary.ticks_processed) == (RunStatus.STOPPED, 2)
    assert service.feed_errors == ["bt: RuntimeError: socket went away"]


def test_summary_reports_the_account(tmp_path):
    dca = {
        "display_name": "dca", "assets": ["BTC/USD"], "timeframe": "1h",
        "workforce": {
            "context": [{"plugin": "ema_detector"}, {"plugin": "market_regime_classifier"}],
            "opportunity": [{"plugin": "dca_schedule_opportunity", "params": {"interval_bars": 10}}],
            "planning": [{"plugin": "dca_planner", "params": {"quote_amount": 100, "take_profit_pct": 50}}],
            "execution": [{"plugin": "market_order_executor"}],
        },
    }
    ticks = [tick(i, 100.0) for i in range(100)]
    (summary,) = service_for(tmp_path, [("dca", "bt")], {"dca": dca}, ticks=ticks).run()
    account = summary.account
    assert summary.ticks_processed == 100 and account.trades == 10
    assert account.fees_paid == pytest.approx(10 * 100 * 0.001)  # fee_rate 0.1 %
    assert account.final_equity == pytest.approx(10_000 - account.fees_paid)
    assert account.pnl == pytest.approx(-account.fees_paid)


class BrokenSource(TickSource):
    def blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        yield one_row(tick(0, 100))
        raise SettingError("symbols", "kraken has no market DOGE/EUR")  # a source knows no config file


def test_a_failing_source_ends_its_runs_after_their_queued_ticks_and_is_reported(tmp_path):
    service = service_for(
        tmp_path, [("a", "bt")], {"a": probe_blueprint("a")}, ticks=wavy_ticks(3),
        source_factory=lambda env: BrokenSource(),
    )
    (summary,) = service.run()
    assert summary.status is RunStatus.STOPPED and summary.ticks_processed == 1
    assert service.feed_errors == ["bt: symbols: kraken has no market DOGE/EUR"]


class RefusingSource(TickSource):
    def prepare(self) -> None:
        raise SettingError("symbols", "kraken has no market DOGE/EUR")

    def blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        yield from ()


def refuse_to_build(environment: object) -> TickSource:
    raise SettingError("timeframe", "kraken has no 2h candles")


@pytest.mark.parametrize(
    ("source_factory", "expected"),
    [
        (refuse_to_build, "timeframe: kraken has no 2h candles"),
        (lambda env: RefusingSource(), "symbols: kraken has no market DOGE/EUR"),
    ],
    ids=["building", "prepare"],
)
def test_a_setting_error_of_a_source_becomes_a_config_error_naming_the_environment_file(
    tmp_path, source_factory, expected
):
    with pytest.raises(ConfigError) as raised:
        service_for(tmp_path, [("a", "bt")], {"a": probe_blueprint("a")}, ticks=wavy_ticks(3),
                    source_factory=source_factory)
    assert str(raised.value) == f"{tmp_path / 'config' / 'environments' / 'bt.yaml'}: {expected}"


class OneRowSource(TickSource):
    """The candles as a live source hands them on: each a block of one row, as soon as it comes."""

    def __init__(self, ticks: list[RawTick]) -> None:
        self._ticks = ticks
        self.total_ticks = len(ticks)

    def blocks(self, stop: threading.Event) -> Iterator[CandleColumns]:
        for candle in self._ticks:
            if stop.is_set():
                return
            yield one_row(candle)


def test_candles_one_at_a_time_take_the_path_of_a_backtests_blocks_to_the_same_trades(tmp_path):
    """One path from source to run: the same candles as a backtest's blocks or as one-row blocks
    (how a live source hands them on) give the same trades, account and counts."""
    ticks = wavy_ticks(600)
    ema_cross = yaml.safe_load((REPO / "config" / "strategies" / "ema_cross.yaml").read_text())
    summaries = []
    for name, source_factory in (("blocks", None), ("one_row", lambda env: OneRowSource(ticks))):
        extra = {} if source_factory is None else {"source_factory": source_factory}
        (summary,) = service_for(tmp_path / name, [("ema", "bt")], {"ema": ema_cross}, ticks=ticks, **extra).run()
        summaries.append(summary)
    by_blocks, one_by_one = summaries
    assert by_blocks.status is one_by_one.status is RunStatus.COMPLETED
    assert by_blocks.ticks_processed == one_by_one.ticks_processed == 600
    assert by_blocks.account.trades > 0
    assert by_blocks.account == one_by_one.account
