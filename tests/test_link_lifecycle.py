"""One strategy link stopped, started, and the operation file reloaded, while the others run:
real runs and feeds in this process, driven over real HTTP on 127.0.0.1 (the status server)."""

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.config import load_operation
from backend.config.schema import EnvironmentConfig, LiveEnvironment
from backend.errors import ConfigError
from backend.interfaces import IWorker, WorkerCategory, WorkerParams
from backend.market_data import TickSource
from services.execution_environments import ExecutionEnvironments
from services.link_lifecycle import LinkStop, UnknownLinkError
from services.operation_service import OperationService
from services.report import Report
from services.status_server import StatusServer
from services.strategy_run import RunStatus
from services.worker_factory import WorkerFactory
from tests.fake_kraken import refused_url
from tests.helpers import backtest_environment, blueprint, tick, write_config_tree, write_yaml
from tests.probes import PLUGINS_WITH_PROBE, probe_blueprint
from tests.test_status_server import Client, FlipFlop, GatedSource, wait_until

TOKEN = "lifecycle-token"
HOLES: dict[str, list[int]] = defaultdict(list)  # tag -> missing_before of each candle its worker saw


class HoleParams(WorkerParams):
    tag: str

    def history_needed(self) -> int:
        return 3


class HoleRecorder(IWorker):
    """Records, per tick, the hole before the current candle as the run's history shows it."""

    plugin_name = "hole_recorder"
    category = WorkerCategory.CONTEXT
    Params = HoleParams
    params: HoleParams

    def process(self, asset: str) -> None:
        HOLES[self.params.tag].append(self.ohlcv.history(asset, 1)[-1].missing_before)


PLUGINS = {**PLUGINS_WITH_PROBE, "flip_flop": FlipFlop, "hole_recorder": HoleRecorder}


@pytest.fixture(autouse=True)
def clear_holes() -> Iterator[None]:
    HOLES.clear()
    yield
    HOLES.clear()


def flip_blueprint(tag: str, **overrides: object) -> dict:
    """Buys when flat, sells when holding (one fill a tick), its history's holes recorded."""
    return blueprint({}) | {"workforce": {"context": [{"plugin": "hole_recorder", "params": {"tag": tag}}],
                                          "execution": [{"plugin": "flip_flop"}]}} | overrides


class Sources:
    """One GatedSource per backtest environment (a new one each time the environment's feed is
    built); a live environment gets its real source."""

    def __init__(self, live: bool = False) -> None:
        self.live = live
        self.built: dict[str, list[GatedSource]] = defaultdict(list)

    def __call__(self, environment: EnvironmentConfig) -> TickSource:
        if isinstance(environment, LiveEnvironment):  # a real exchange's source, from its settings
            return ExecutionEnvironments(threading.Event()).tick_source(environment)
        source = GatedSource(self.live)
        self.built[environment.display_name].append(source)
        return source

    def put(self, environment: str, index: int) -> None:
        self.built[environment][-1].pending.put(tick(index, 100 + index))


@pytest.fixture
def operation_running(tmp_path: Path) -> Iterator[Callable[..., tuple[OperationService, Client]]]:
    """start(links, blueprints, environments, live=False): the operation running (wait() in a
    thread, as the daemon's main thread does) with a status server on an ephemeral port."""
    running: list[tuple[OperationService, StatusServer, threading.Thread]] = []

    def start(links: list[tuple[str, str]], blueprints: dict, environments: dict, sources: Sources,
              ) -> tuple[OperationService, Client]:
        path = write_config_tree(tmp_path, links, blueprints, environments, [tick(0, 100)])
        service = OperationService(load_operation(path), WorkerFactory(PLUGINS), source_factory=sources)
        server = StatusServer(service, "127.0.0.1", 0, TOKEN)
        server.start()
        service.start()
        waiter = threading.Thread(target=service.wait, daemon=True)
        waiter.start()
        running.append((service, server, waiter))
        return service, Client(server.port)

    yield start
    for service, server, waiter in running:
        service.stop()
        waiter.join(10)
        server.stop()


def environment(name: str) -> dict:
    return backtest_environment(display_name=name)


# --- a link's stop ------------------------------------------------------------------------------


def test_a_link_stop_is_its_own_or_the_operations():
    operation = threading.Event()
    one, other = LinkStop(operation), LinkStop(operation)
    one.set()
    assert one.is_set() and one.wait(0) and not other.is_set() and not operation.is_set()
    assert not other.wait(0.05)
    threading.Timer(0.05, operation.set).start()
    assert other.wait(5) and other.is_set()  # woken by the operation's stop, not only at its own


# --- stop and start over HTTP ---------------------------------------------------------------------


def test_stop_then_start_keeps_account_workforce_and_history_marks_the_hole_and_others_never_notice(
        operation_running):
    sources = Sources()
    service, client = operation_running([("flip", "bt"), ("other", "bt")],
                                        {"flip": flip_blueprint("flip"), "other": probe_blueprint("o")},
                                        {"bt": environment("bt")}, sources)
    flip, other = service.runs
    account = flip.tick_manager.account

    def feed(index: int, *runs_ticks: tuple[str, int]) -> None:
        sources.put("bt", index)
        for link, count in runs_ticks:
            wait_until(lambda link=link, count=count: service.run_of(link).ticks_processed == count)

    feed(1, ("flip@bt", 1), ("other@bt", 1))
    feed(2, ("flip@bt", 2), ("other@bt", 2))
    assert account.ledger.state.trades == 2

    status, body = client.json("/strategies/flip@bt/stop", "POST", TOKEN)
    assert status == 200 and body["status"] == "stopped" and body["account"]["trades"] == 2
    assert not flip.is_alive()
    for index in (3, 4, 5):  # the other link keeps ticking; the stopped one takes nothing
        feed(index, ("other@bt", index))
    assert service.run_of("flip@bt").ticks_processed == 2 and account.ledger.state.trades == 2
    assert client.json("/strategies/flip@bt")[1]["status"] == "stopped"  # type: ignore[index]
    assert client.json("/readyz")[0] == 200  # a stopped link is no reason for not ready
    assert client.json("/strategies/flip@bt/stop", "POST", TOKEN)[0] == 200  # stopping again: no change

    status, body = client.json("/strategies/flip@bt/start", "POST", TOKEN)
    assert status == 200 and body["status"] == "running" and body["ticks_processed"] == 2
    restarted = service.run_of("flip@bt")
    assert restarted is not flip and restarted.tick_manager is flip.tick_manager  # same account, workers, history
    feed(6, ("flip@bt", 3), ("other@bt", 6))
    assert account.ledger.state.trades == 3  # the same account trades on
    # The same workforce saw the candles before the stop, then hours 3-5 as a hole, never papered over.
    assert HOLES["flip"] == [0, 0, 3]
    metrics = client.metrics()
    assert metrics[("opdaemon_ticks_processed_total", (("strategy_link", "flip@bt"),))] == 3
    assert metrics[("opdaemon_run_status", (("status", "running"), ("strategy_link", "flip@bt")))] == 1
    assert other.ticks_processed == 6 and service.run_of("other@bt") is other


def test_a_feed_whose_links_are_all_stopped_keeps_running_and_a_backtest_still_ends_with_its_data(
        operation_running):
    sources = Sources(live=True)
    service, client = operation_running([("flip", "live")], {"flip": flip_blueprint("flip")},
                                        {"live": environment("live")}, sources)
    sources.put("live", 1)
    wait_until(lambda: service.runs[0].ticks_processed == 1)
    assert client.json("/strategies/flip@live/stop", "POST", TOKEN)[0] == 200
    feed = service.feeds[0]
    threading.Event().wait(0.5)  # several watchdog rounds: a feed serving no running link would halt
    assert feed.is_alive()
    assert client.json("/strategies/flip@live/start", "POST", TOKEN)[0] == 200
    sources.put("live", 2)
    wait_until(lambda: service.run_of("flip@live").ticks_processed == 2)
    assert HOLES["flip"] == [0, 0]  # no candle was missed while stopped: no hole

    backtest = Sources()
    done, client = operation_running([("flip", "bt")], {"flip": flip_blueprint("f2")}, {"bt": environment("bt")},
                                     backtest)
    assert client.json("/strategies/flip@bt/stop", "POST", TOKEN)[0] == 200
    backtest.built["bt"][-1].pending.put(None)  # the data ends
    wait_until(lambda: not done.feeds[0].is_alive())
    (summary,) = [run.summary() for run in done.runs]
    assert summary.status is RunStatus.STOPPED and not summary.failed
    status, body = client.json("/strategies/flip@bt/start", "POST", TOKEN)
    assert status == 409 and "feed has ended" in body["error"]  # type: ignore[index]


def test_lifecycle_posts_are_refused_without_the_token_and_answer_409_when_they_do_not_apply(operation_running):
    sources = Sources()
    service, client = operation_running([("bad", "bt"), ("good", "bt")],
                                        {"bad": probe_blueprint("bad", crash_at_tick=1), "good": probe_blueprint("g")},
                                        {"bt": environment("bt")}, sources)
    for path in ("/strategies/good@bt/stop", "/strategies/good@bt/start", "/reload"):
        for token in (None, "wrong"):
            status, body = client.json(path, "POST", token)
            assert status == 401 and "bearer token" in body["error"]  # type: ignore[index]
    assert service.run_of("good@bt").status is RunStatus.RUNNING
    sources.put("bt", 1)
    wait_until(lambda: service.run_of("bad@bt").status is RunStatus.FAILED)
    status, body = client.json("/strategies/bad@bt/start", "POST", TOKEN)
    assert status == 409 and "has failed" in body["error"]  # type: ignore[index]
    assert client.json("/strategies/bad@bt/stop", "POST", TOKEN)[0] == 409
    assert client.json("/strategies/good@bt/start", "POST", TOKEN)[1]["status"] == "running"  # type: ignore[index]
    assert client.json("/strategies/nope@bt/stop", "POST", TOKEN) == (404, {"error": "no strategy link 'nope@bt'"})


# --- reload over HTTP -----------------------------------------------------------------------------


def test_post_reload_adds_removes_restarts_and_keeps_links_and_rejects_a_bad_file(tmp_path, operation_running):
    sources = Sources()
    blueprints = {"keep": probe_blueprint("keep"), "change": probe_blueprint("change"),
                  "drop": probe_blueprint("drop")}
    service, client = operation_running([("keep", "bt"), ("change", "bt"), ("drop", "bt")], blueprints,
                                        {"bt": environment("bt")}, sources)
    keep, change, drop = service.runs
    feed = service.feeds[0]
    sources.put("bt", 1)
    wait_until(lambda: all(run.ticks_processed == 1 for run in (keep, change, drop)))

    # change's blueprint gets another param, "add" joins bt, "fresh" runs on a new environment.
    blueprints = {"change": probe_blueprint("change", sleep_seconds=0.001), "add": probe_blueprint("add"),
                  "fresh": probe_blueprint("fresh")}
    write_config_tree(tmp_path, [("keep", "bt"), ("change", "bt"), ("add", "bt"), ("fresh", "bt2")], blueprints,
                      {"bt2": environment("bt2")})
    status, body = client.json("/reload", "POST", TOKEN)
    assert status == 200, body
    assert body == {"status": "reloaded", "added": ["add@bt", "fresh@bt2"], "removed": ["drop@bt"],
                    "restarted": ["change@bt"], "unchanged": ["keep@bt"], "new_feeds": ["bt2"]}
    assert service.run_of("keep@bt") is keep and keep.is_alive()  # untouched: same run, same thread
    assert keep.ticks_processed == 1
    assert drop.status is RunStatus.STOPPED and not drop.is_alive()
    with pytest.raises(UnknownLinkError):
        service.run_of("drop@bt")
    assert change.status is RunStatus.STOPPED and service.run_of("change@bt") is not change
    assert service.feeds[0] is feed and len(sources.built["bt"]) == 1  # "add" joined the running feed
    assert [f.environment_id for f in service.feeds] == ["bt", "bt2"] and len(sources.built["bt2"]) == 1
    assert [s["strategy_link"] for s in client.json("/strategies")[1]] == [  # type: ignore[union-attr]
        "keep@bt", "change@bt", "add@bt", "fresh@bt2"]

    sources.put("bt", 2)
    sources.put("bt2", 2)
    wait_until(lambda: keep.ticks_processed == 2)
    for link in ("change@bt", "add@bt", "fresh@bt2"):
        wait_until(lambda link=link: service.run_of(link).ticks_processed == 1)

    # A bad blueprint: rejected as file: key: reason, nothing changes.
    running = {run.link_id: run for run in service.runs}
    broken = probe_blueprint("add")
    broken["workforce"]["opportunity"] = [{"plugin": "no_such_plugin"}]
    write_yaml(tmp_path / "config" / "strategies" / "add.yaml", broken)
    status, body = client.json("/reload", "POST", TOKEN)
    assert status == 400
    assert body["file"] == str(tmp_path / "config" / "strategies" / "add.yaml")  # type: ignore[index]
    assert body["key"] == "workforce.opportunity[0].plugin"  # type: ignore[index]
    assert "unknown plugin 'no_such_plugin'" in body["reason"]  # type: ignore[index]
    assert body["error"] == f"{body['file']}: {body['key']}: {body['reason']}"  # type: ignore[index]
    assert {run.link_id: run for run in service.runs} == running
    assert all(run.is_alive() for run in running.values())
    sources.put("bt", 3)
    wait_until(lambda: all(running[link].ticks_processed == n for link, n in
                           (("keep@bt", 3), ("change@bt", 2), ("add@bt", 2))))


def test_reload_of_a_file_that_no_longer_loads_is_a_config_error_and_the_set_stays(tmp_path):
    path = write_config_tree(tmp_path, [("keep", "bt")], {"keep": probe_blueprint("keep")},
                             {"bt": environment("bt")}, [tick(0, 100)])
    service = OperationService(load_operation(path), WorkerFactory(PLUGINS), source_factory=Sources())
    service.start()
    try:
        before = service.runs
        path.write_text("display_name: [unclosed\n")
        with pytest.raises(ConfigError) as rejected:
            service.reload("test")
        assert rejected.value.file == str(path) and rejected.value.key == "line 1"  # where the [ opens
        assert service.runs == before and before[0].is_alive()
    finally:
        service.stop()
        service.wait()


def test_reload_of_a_changed_environment_gives_it_a_new_feed_and_restarts_its_links_only(tmp_path):
    sources = Sources()
    path = write_config_tree(tmp_path, [("a", "bt"), ("b", "bt"), ("c", "other")],
                             {"a": probe_blueprint("a"), "b": probe_blueprint("b"), "c": probe_blueprint("c")},
                             {"bt": environment("bt"), "other": environment("other")}, [tick(0, 100)])
    service = OperationService(load_operation(path), WorkerFactory(PLUGINS), source_factory=sources)
    service.start()
    try:
        a, b, c = service.runs
        old_feed, other_feed = service.feeds
        write_yaml(tmp_path / "config" / "environments" / "bt.yaml", environment("bt") | {"fee_rate": 0.002})
        plan = service.reload("test")
        assert (plan.restarted, plan.unchanged, plan.new_feeds) == (["a@bt", "b@bt"], ["c@other"], ["bt"])
        new_feed, kept_feed = service.feeds
        assert kept_feed is other_feed and new_feed is not old_feed and len(sources.built["bt"]) == 2
        wait_until(lambda: not old_feed.is_alive())  # every link it served left: it ended
        assert service.run_of("c@other") is c and c.is_alive()
        assert a.status is b.status is RunStatus.STOPPED
        sources.put("bt", 1)
        wait_until(lambda: all(service.run_of(link).ticks_processed == 1 for link in ("a@bt", "b@bt")))
        assert service.run_of("a@bt").tick_manager.account.ledger is not a.tick_manager.account.ledger
    finally:
        service.stop()
        service.wait()


def test_an_environment_left_without_links_by_a_reload_ends_and_comes_back_with_a_new_feed(tmp_path):
    sources = Sources()
    blueprints = {"a": probe_blueprint("a"), "b": probe_blueprint("b")}
    environments = {"bt": environment("bt"), "bt2": environment("bt2")}
    path = write_config_tree(tmp_path, [("a", "bt"), ("b", "bt2")], blueprints, environments, [tick(0, 100)])
    service = OperationService(load_operation(path), WorkerFactory(PLUGINS), source_factory=sources)
    service.start()
    waiter = threading.Thread(target=service.wait, daemon=True)
    waiter.start()
    try:
        gone = service.feeds[1]
        write_config_tree(tmp_path, [("a", "bt")], blueprints, environments)
        assert service.reload("test").removed == ["b@bt2"]
        wait_until(lambda: not gone.is_alive())
        assert [feed.environment_id for feed in service.feeds] == ["bt"] and gone.error is None
        write_config_tree(tmp_path, [("a", "bt"), ("b", "bt2")], blueprints, environments)
        plan = service.reload("test")
        assert (plan.added, plan.new_feeds) == (["b@bt2"], ["bt2"])
        sources.put("bt2", 1)
        wait_until(lambda: service.run_of("b@bt2").ticks_processed == 1)
        assert len(sources.built["bt2"]) == 2 and waiter.is_alive()
    finally:
        service.stop()
        waiter.join(10)


def test_a_restarted_link_keeps_what_the_operator_asked_of_it(tmp_path, operation_running):
    sources = Sources()
    blueprints = {"paused": probe_blueprint("p"), "stopped": probe_blueprint("s")}
    service, client = operation_running([("paused", "bt"), ("stopped", "bt")], blueprints,
                                        {"bt": environment("bt")}, sources)
    client.json("/strategies/paused@bt/pause", "POST", TOKEN)
    client.json("/strategies/stopped@bt/stop", "POST", TOKEN)
    changed = {name: probe_blueprint(name[0], sleep_seconds=0.001) for name in blueprints}
    write_config_tree(tmp_path, [("paused", "bt"), ("stopped", "bt")], changed, {"bt": environment("bt")})
    status, body = client.json("/reload", "POST", TOKEN)
    assert status == 200 and body["restarted"] == ["paused@bt", "stopped@bt"]  # type: ignore[index]
    paused, stopped = (client.json(f"/strategies/{link}")[1] for link in ("paused@bt", "stopped@bt"))
    assert (paused["status"], paused["paused"]) == ("running", "paused by the operator (status server)")  # type: ignore[index]
    assert stopped["status"] == "stopped"  # type: ignore[index]
    sources.put("bt", 1)
    wait_until(lambda: service.run_of("paused@bt").ticks_processed == 1)
    assert service.run_of("stopped@bt").ticks_processed == 0
    assert client.json("/strategies/stopped@bt/start", "POST", TOKEN)[1]["status"] == "running"  # type: ignore[index]
    sources.put("bt", 2)
    wait_until(lambda: service.run_of("stopped@bt").ticks_processed == 1)


def test_a_link_a_reload_adds_is_in_the_backtest_report(tmp_path):
    sources = Sources()
    blueprints = {"a": probe_blueprint("a"), "b": probe_blueprint("b")}
    path = write_config_tree(tmp_path, [("a", "bt")], blueprints, {"bt": environment("bt")}, [tick(0, 100)])
    service = OperationService(load_operation(path), WorkerFactory(PLUGINS), source_factory=sources)
    report = Report.for_operation(tmp_path / "report", service)
    service.when_link_built(report.record)
    service.start()
    waiter = threading.Thread(target=service.wait, daemon=True)
    waiter.start()
    try:
        sources.put("bt", 1)
        wait_until(lambda: service.run_of("a@bt").ticks_processed == 1)
        write_config_tree(tmp_path, [("a", "bt"), ("b", "bt")], blueprints, {"bt": environment("bt")})
        assert service.reload("test").added == ["b@bt"]
        sources.put("bt", 2)
        wait_until(lambda: service.run_of("b@bt").ticks_processed == 1)
    finally:
        service.stop()
        waiter.join(10)
    page = report.finish([run.summary() for run in service.runs])
    assert page is not None and "b@bt" in page.read_text()
    equity = (tmp_path / "report" / "b@bt" / "equity.csv").read_text().splitlines()
    assert len(equity) == 2 and equity[1].startswith(tick(2, 0).timestamp.isoformat()[:19])  # header + hour 2


@pytest.mark.slow
def test_a_reload_whose_new_environment_cannot_reach_its_exchange_is_refused_and_changes_nothing(
        tmp_path, operation_running):
    sources = Sources()
    blueprints = {"keep": probe_blueprint("keep"), "drop": probe_blueprint("drop")}
    service, client = operation_running([("keep", "bt"), ("drop", "bt")], blueprints, {"bt": environment("bt")},
                                        sources)
    running = service.runs
    unreachable = {"type": "live", "display_name": "nowhere", "exchange": "kraken", "symbols": ["BTC/USD"],
                   "timeframe": "1h", "market_data": "rest", "api_url": refused_url(),
                   "startup_timeout_seconds": 0.5, "starting_capital": 10_000, "fee_rate": 0.0026}
    write_config_tree(tmp_path, [("keep", "bt"), ("far", "nowhere")], {"far": probe_blueprint("far")},
                      {"nowhere": unreachable})
    status, body = client.json("/reload", "POST", TOKEN)
    assert status == 502 and "127.0.0.1" in body["error"]  # type: ignore[index]
    assert service.runs == running and all(run.is_alive() for run in running)  # drop@bt was not stopped
    assert [feed.environment_id for feed in service.feeds] == ["bt"]
